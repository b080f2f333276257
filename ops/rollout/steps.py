"""The helpers every rollout step uses: run a command that must succeed, upload files, report.

Kept apart from the steps themselves so the swap, the engine and the lock share one way of
failing (`RolloutError`, naming the host and what failed) and one way of uploading.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Sequence

from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.render.files import RenderedFile


class RolloutError(Exception):
    """A failure that stops the rollout; the message names host, service and why."""


def say(host: str, message: str) -> None:
    print(f"    [{host}] {message}", flush=True)


def must(remote: Remote, command: str, what: str, timeout: int | None = None) -> str:
    """Run `command`; its stdout, or `RolloutError` naming the host and `what` failed."""
    if not command:
        return ""
    ok, out, err = remote.run(command, timeout=timeout)
    if not ok:
        detail = "\n".join(x for x in (out.strip(), err.strip()) if x)
        raise RolloutError(f"{remote.name}: {what} failed:\n{detail}")
    return out


def upload(remote: Remote, files: Sequence[RenderedFile]) -> None:
    """SFTP each file to a temp name beside its target, then chmod/chown/mv in one command."""
    parents = sorted({f.path.rsplit("/", 1)[0] for f in files})
    must(remote, cmd.sh("mkdir", "-p", *parents), "creating directories")
    moves = []
    for f in files:
        tmp = f"{f.path}.tmp-{pysecrets.token_hex(4)}"
        try:
            ok = remote.put(f.content.encode(), tmp)
        except OSError as e:  # SFTP errors carry paths only, never the content
            raise RolloutError(f"{remote.name}: upload of {f.path} failed: {e}") from None
        if not ok:
            raise RolloutError(f"{remote.name}: upload of {f.path} failed")
        moves.append(cmd.install_uploaded(tmp, f.path, f.mode, f.owner))
    must(remote, cmd.chain(*moves), f"installing {len(files)} file(s)")
