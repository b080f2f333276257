"""The helpers every rollout step uses: run a command that must succeed, upload files, report.

Kept apart from the steps themselves so the swap, the engine and the lock share one way of
failing (`RolloutError`, naming the host and what failed) and one way of uploading.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable, Sequence
from typing import TypeVar

import gevent
import gevent.lock

from ops.host import commands as cmd
from ops.host.remote import CONNECTION_ERRORS, Remote
from ops.render.files import RenderedFile


class RolloutError(Exception):
    """A failure that stops the rollout; the message names host, service and why."""


R = TypeVar("R")

# Commands one host runs at once over its one SSH connection (each is a channel): OpenSSH's
# sshd refuses more than MaxSessions (10 by default) per connection, and the lock's heartbeat
# and the fault hooks need one too. Three, not more: each is CPU work on the host (a container
# started) beside the live slots, which must keep answering within their clients' timeouts.
AT_ONCE_PER_HOST = 3


def at_once(jobs: Sequence[tuple[str, Callable[[], R]]],
            width: int = AT_ONCE_PER_HOST) -> dict[str, R]:
    """Run `jobs` (name, work) at most `width` at once, in the given order, each in its own
    greenlet; name -> result when all succeeded.

    Why: a host's migrations are independent per service (each owns its database), and one
    after another they were a third of the first host's swap. After a job fails
    (RolloutError) no other starts; those running finish (killing a migration half-way is
    worse than letting it end), then one RolloutError names every failure in job order.
    Anything else (Ctrl-C, a bug) stops the others and propagates."""
    gate = gevent.lock.BoundedSemaphore(max(1, width))
    failures: dict[str, RolloutError] = {}
    results: dict[str, R] = {}

    def run(name: str, work: Callable[[], R]) -> None:
        with gate:
            if failures:
                return
            try:
                results[name] = work()
            except RolloutError as e:
                failures[name] = e

    greenlets = [gevent.spawn(run, name, work) for name, work in jobs]
    try:
        gevent.joinall(greenlets, raise_error=True)
    except BaseException:
        gevent.killall(greenlets)
        raise
    if failures:
        raise RolloutError("\n".join(str(failures[n]) for n, _ in jobs if n in failures))
    return results


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


STAGING_ROOTS = ("/etc/superapp", "/opt/superapp")  # each holds its own staging directory
STAGING_DIR = ".staging"  # root-only (0700), on the same filesystem as what it stages


def staging_path(path: str, token: str) -> str:
    """Where `path` is uploaded before it is moved into place: a root-only 0700 directory on
    the same filesystem (so the move is an atomic rename and a secret is never readable by
    another user on the way, whatever mode SFTP gives the new file). Files outside the managed
    roots (cron) hold no secret and are staged beside their target."""
    for root in STAGING_ROOTS:
        if path.startswith(root + "/"):
            return f"{root}/{STAGING_DIR}/{path[len(root) + 1:].replace('/', '%')}.{token}"
    return f"{path}.tmp-{token}"


def private_parents(files: Sequence[RenderedFile]) -> dict[str, int]:
    """The directory of every secret-bearing file -> the one uid that reads it (0700, theirs)."""
    out: dict[str, int] = {}
    for f in files:
        if f.secret:
            parent = f.path.rsplit("/", 1)[0]
            if out.setdefault(parent, f.owner) != f.owner:
                raise RolloutError(f"secret files of two owners in {parent}: a directory "
                                   "can be private to one reader only (a rendering bug)")
    return out


def upload(remote: Remote, files: Sequence[RenderedFile],
           checkpoint: Callable[[str], None] | None = None) -> None:
    """Upload each file into a staging directory, then give it its mode and owner and move it
    into place, all in one command. A failed upload removes what it staged."""
    private = private_parents(files)
    parents = sorted({f.path.rsplit("/", 1)[0] for f in files} - set(private))
    staging = [f"{root}/{STAGING_DIR}" for root in STAGING_ROOTS
               if any(f.path.startswith(root + "/") for f in files)]
    must(remote, cmd.chain(cmd.sh("mkdir", "-p", *parents) if parents else "",
                           *(cmd.private_dir(d, uid) for d, uid in sorted(private.items())),
                           *(cmd.private_dir(d, 0) for d in staging)), "creating directories")
    staged: list[str] = []
    moves = []
    try:
        for f in files:
            tmp = staging_path(f.path, pysecrets.token_hex(4))
            staged.append(tmp)
            try:
                ok = remote.put(f.content.encode(), tmp)
            except CONNECTION_ERRORS as e:  # SFTP errors carry paths only, never the content
                raise RolloutError(f"{remote.name}: upload of {f.path} failed: {e}") from None
            if not ok:
                raise RolloutError(f"{remote.name}: upload of {f.path} failed")
            moves.append(cmd.install_uploaded(tmp, f.path, f.mode, f.owner))
            if checkpoint is not None and len(staged) == 1:
                checkpoint("uploading")
        must(remote, cmd.chain(*moves), f"installing {len(files)} file(s)")
    except BaseException:
        remote.run(cmd.remove_files(staged))  # best effort; the next run removes the rest
        raise
