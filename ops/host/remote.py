"""Talking to one host during the execution phase: the `Remote` protocol and its pyinfra form.

The rollout, the rotation and the restore drill drive hosts one at a time from a single
callback, so they need a host handle they can call in order; `Remote` is that handle, small
enough that unit tests script it (tests/unit/rollout) and the real one wraps pyinfra's
already-open SSH connection. Never puts a secret in a command: secrets travel in `put` content.
"""

from __future__ import annotations

import io
import subprocess
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

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        """Run `command` over a NEW connection (proves the host still lets one in)."""
        ...


def ssh_argv(address: str, command: str, user: str | None = None, key: str | None = None,
             known_hosts: str | None = None, port: int | None = None,
             connect_timeout: int = 10) -> list[str]:
    """`ssh` for one command on a new connection, with the deploy's identity and its pinned
    host keys (never trusting a new key, never prompting)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "ControlPath=none"]
    if known_hosts:
        argv += ["-o", f"UserKnownHostsFile={known_hosts}"]
    if key:
        argv += ["-i", key, "-o", "IdentitiesOnly=yes"]
    if port:
        argv += ["-p", str(port)]
    return [*argv, f"{user}@{address}" if user else address, "--", command]


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

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        data = self.host.data
        argv = ssh_argv(data.get("ssh_hostname") or self.host.name, command,
                        user=data.get("ssh_user"), key=data.get("ssh_key"),
                        known_hosts=data.get("ssh_known_hosts_file"),
                        port=data.get("ssh_port"), connect_timeout=timeout)
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False, "", f"a new SSH connection to {self.name} timed out"
        return res.returncode == 0, res.stdout, res.stderr
