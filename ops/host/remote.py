"""Talking to one host during the execution phase: the `Remote` protocol and its pyinfra form.

The rollout, the rotation and the restore drill drive hosts one at a time from a single
callback, so they need a host handle they can call in order; `Remote` is that handle, small
enough that unit tests script it (tests/unit/rollout) and the real one wraps pyinfra's
already-open SSH connection. Never puts a secret in a command: secrets travel in `put` content.
"""

from __future__ import annotations

import io
from typing import Protocol

from paramiko import SSHException
from pyinfra.api.exceptions import ConnectError

# What a lost or refused connection raises (TimeoutError, socket errors: OSError). Anything
# else is a bug in this tool and must surface as one, with its traceback.
CONNECTION_ERRORS = (OSError, EOFError, SSHException, ConnectError)


class Remote(Protocol):
    """One host: run a shell command (ok, stdout, stderr), or upload bytes to a path."""

    name: str

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]: ...

    def put(self, content: bytes, path: str) -> bool: ...


class PyinfraRemote:
    """A `Remote` over a pyinfra host's (already open) SSH connection."""

    def __init__(self, host) -> None:
        self.host = host
        self.name = host.name

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        kwargs = {"_timeout": timeout} if timeout else {}
        try:
            ok, out = self.host.run_shell_command(command, **kwargs)
        except CONNECTION_ERRORS as e:
            return False, "", f"connection to {self.name} failed: {type(e).__name__}: {e}"
        return ok, out.stdout, out.stderr

    def put(self, content: bytes, path: str) -> bool:
        return self.host.put_file(io.BytesIO(content), path)
