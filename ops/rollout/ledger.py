"""The ledger: every release appended to `/var/lib/superapp/releases.jsonl` on the hosts.

A release line holds what a rollback needs to be exact: who, when, the git commit, each
service's image and its registry digest, the KV version of every secret path read (never a
value) and the result per host. Writing is `record_ledger`; reading is the host snapshot
(`ops.host.state`); choosing a release from the lines is `last_release`/`previous_release`.
"""

from __future__ import annotations

import getpass
import secrets as pysecrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ops.host import commands as cmd
from ops.host.state import LEDGER_PATH

if TYPE_CHECKING:
    from ops.host.remote import Remote
    from ops.rollout.engine import HostResult


def operator() -> str:
    """`user@controller`: who made a release or holds the lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Release:
    """What goes into the ledger: who, when, what (never a secret value)."""

    env: str
    commit: str
    user: str = field(default_factory=operator)
    started: str = field(default_factory=now_iso)
    id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                    + "-" + pysecrets.token_hex(3))
    secret_versions: dict[str, int] = field(default_factory=dict)
    kind: str = "deploy"  # deploy | rollback | rotate
    rolled_back_to: str | None = None


def release_entry(results: Sequence[HostResult], release: Release, outcome: str) -> dict:
    """The ledger line of a release (pure): images of every host that did not fail."""
    images: dict[str, str] = {}
    for r in results:
        if r.result != "FAILED":
            images.update(r.images)
    entry = {
        "kind": release.kind, "release": release.id, "env": release.env,
        "commit": release.commit, "user": release.user, "started": release.started,
        "finished": now_iso(), "result": outcome,
        "images": images, "secret_versions": release.secret_versions,
        "hosts": {r.host: {"result": r.result, "changed": r.changed, "digests": r.digests,
                           "seconds": round(r.seconds, 1)} for r in results},
    }
    if release.rolled_back_to:
        entry["rolled_back_to"] = release.rolled_back_to
    return entry


def record_ledger(remotes: Sequence[Remote], results: Sequence[HostResult], release: Release,
                  outcome: str) -> list[str]:
    """Append the release to the ledger of every host it touched (append-only JSON lines);
    the hosts where that failed, with why (empty: recorded everywhere)."""
    touched = {r.host for r in results}
    entry = release_entry(results, release, outcome)
    return append_to_ledgers([r for r in remotes if r.name in touched], entry)


def append_to_ledgers(remotes: Sequence[Remote], entry: dict) -> list[str]:
    """Append `entry` to each host's ledger; "host: why" for every host where it failed."""
    failed = []
    for remote in remotes:
        ok, out, err = remote.run(cmd.write_json_file(LEDGER_PATH, entry, append=True))
        if not ok:
            failed.append(f"{remote.name}: appending to {LEDGER_PATH} failed: "
                          f"{(err or out).strip()[-200:] or 'no output'}")
    return failed


def successful_releases(entries: Sequence[dict]) -> list[dict]:
    """Successful releases with images (deploys and rollbacks; rotation lines have none),
    oldest first, each once although several hosts' ledgers repeat it."""
    releases: dict[str, dict] = {}
    for e in entries:
        if e.get("release") and e.get("result") == "success" and e.get("images"):
            releases.setdefault(e["release"], e)
    return sorted(releases.values(), key=lambda e: (e.get("finished", ""), e["release"]))


def last_release(entries: Sequence[dict]) -> dict | None:
    """The newest successful release recorded in (any host's) ledger, or None."""
    done = [e for e in entries if e.get("release") and e.get("result") == "success"]
    if not done:
        return None
    return max(done, key=lambda e: (e.get("finished", ""), e["release"]))


def previous_release(entries: Sequence[dict], wanted: str | None = None) -> dict:
    """The successful release before the current one (the newest successful release).

    Entries come from every host's ledger (the same release appears on several hosts).
    Rollbacks count as releases too, so two rollbacks in a row go back two releases only if
    the operator asks twice: the "current" release is the newest success of any kind.
    """
    ordered = successful_releases(entries)
    if wanted:
        match = [e for e in ordered if e["release"] == wanted]
        if not match:
            raise LookupError(f"no successful release {wanted!r} in the ledger")
        return match[0]
    if len(ordered) < 2:
        raise LookupError("the ledger holds no successful release before the current one")
    current = ordered[-1]
    for e in reversed(ordered[:-1]):
        if e["images"] != current["images"] or e.get("secret_versions") != current.get(
                "secret_versions"):
            return e
    raise LookupError("every earlier successful release is identical to the current one")
