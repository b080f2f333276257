"""The ledger: every release appended to `/var/lib/superapp/releases.jsonl` on the hosts.

A release line holds what a rollback needs to be exact: who, when, the git commit, each
service's image tag and the registry digest it was deployed by (`image_digests`), the KV
version of every secret path read (never a value) and the result per host. Writing is
`record_ledger`; reading is the host snapshot (`ops.host.state`); choosing the release a
rollback restores is `ops.rollout.history`.
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
    digests: dict[str, str] = {}
    migrations: dict[str, str] = {}
    for r in results:
        if r.result != "FAILED":
            images.update(r.images)
            digests.update(r.image_digests)
        # applied even when the host failed later; "" (head not named) is not recorded
        migrations.update({k: v for k, v in r.migrations.items() if v})
    entry = {
        "kind": release.kind, "release": release.id, "env": release.env,
        "commit": release.commit, "user": release.user, "started": release.started,
        "finished": now_iso(), "result": outcome,
        "images": images, "image_digests": digests,
        "secret_versions": release.secret_versions,
        "migrations": migrations,
        "hosts": {r.host: {"result": r.result, "changed": r.changed, "slots": r.slots,
                           "digests": r.digests,
                           "images": r.images, "image_digests": r.image_digests,
                           "seconds": round(r.seconds, 1), "began": r.began,
                           # [step, seconds since the host began], in order (a list: the
                           # ledger's JSON sorts object keys)
                           "timeline": [[step, t] for step, t in r.timeline.items()]}
                  for r in results},
    }
    if release.rolled_back_to:
        entry["rolled_back_to"] = release.rolled_back_to
    return entry


def record_ledger(remotes: Sequence[Remote], results: Sequence[HostResult], release: Release,
                  outcome: str) -> list[str]:
    """Append the release to the ledger of every host of the run, touched or not (a rollback
    merges all hosts' ledgers, and any one host must be enough to know the history); the
    hosts where that failed, with why (empty: recorded everywhere)."""
    return append_to_ledgers(remotes, release_entry(results, release, outcome))


def append_to_ledgers(remotes: Sequence[Remote], entry: dict) -> list[str]:
    """Append `entry` to each host's ledger; "host: why" for every host where it failed."""
    failed = []
    for remote in remotes:
        ok, out, err = remote.run(cmd.append_json_line(LEDGER_PATH, entry))
        if not ok:
            failed.append(f"{remote.name}: appending to {LEDGER_PATH} failed: "
                          f"{(err or out).strip()[-200:] or 'no output'}")
    return failed


def last_release(entries: Sequence[dict]) -> dict | None:
    """The newest successful release recorded in (any host's) ledger, or None."""
    done = [e for e in entries if e.get("release") and e.get("result") == "success"]
    if not done:
        return None
    return max(done, key=lambda e: (e.get("finished", ""), e["release"]))
