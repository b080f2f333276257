"""The environment's deploy lock: one deploy, rollback or rotation at a time.

The lock is a JSON file on the environment's first host in rollout order (the primary, as
Kamal does): every run connects to it first, and an unreachable later host cannot strand it.
It names its owner, a random token (so a run removes only its own lock) and an expiry;
`--data break_lock=true` breaks an expired lock and records the break in the ledger.
"""

from __future__ import annotations

import getpass
import json
import secrets as pysecrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.host.state import LEDGER_PATH, LOCK_PATH
from ops.rollout.steps import RolloutError, must, say


@dataclass
class Lock:
    owner: str
    token: str
    expires: str


def operator() -> str:
    """`user@controller`: who holds a lock or made a release."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def lock_holder(text: str) -> dict:
    """The lock file's record (its first line), {} when there is none or it is unreadable."""
    try:
        value = json.loads(text.strip().splitlines()[0]) if text.strip() else {}
    except (ValueError, IndexError):
        return {}
    return value if isinstance(value, dict) else {}


def lock_expired(holder: dict, now: datetime) -> bool:
    """Whether a holder's lock has expired at `now`; a missing or unreadable expiry counts as
    expired (a lock nobody can date must not block the environment forever)."""
    try:
        expires = datetime.fromisoformat(str(holder.get("expires", "")))
    except ValueError:
        return True
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires < now


def acquire_locks(remotes: Sequence[Remote], env: str, ttl_minutes: int,
                  break_lock: bool) -> Lock:
    now = datetime.now(UTC).replace(microsecond=0)
    lock = Lock(owner=operator(), token=pysecrets.token_hex(8),
                expires=(now + timedelta(minutes=ttl_minutes)).isoformat(timespec="seconds"))
    record = {"env": env, "owner": lock.owner, "token": lock.token,
              "started": now.isoformat(timespec="seconds"), "expires": lock.expires}
    taken: list[Remote] = []
    for remote in remotes:
        out = must(remote, cmd.acquire_lock(LOCK_PATH, record), "taking the deploy lock")
        if out.startswith("acquired"):
            taken.append(remote)
            continue
        holder = lock_holder(out.partition("\n")[2])
        expired = lock_expired(holder, now)
        if break_lock and expired:
            say(remote.name, f"breaking expired lock of {holder.get('owner')} "
                             f"(expired {holder.get('expires')})")
            must(remote, cmd.write_json_file(LEDGER_PATH, {
                "kind": "lock-broken", "by": lock.owner, "holder": holder.get("owner"),
                "at": now.isoformat(timespec="seconds")}, append=True), "recording the break")
            must(remote, cmd.chain(cmd.sh("rm", "-f", LOCK_PATH),
                                   cmd.acquire_lock(LOCK_PATH, record)), "taking the lock")
            taken.append(remote)
            continue
        release_locks(taken, lock)
        hint = (" It has expired: pass --data break_lock=true to break it." if expired
                else f" It expires at {holder.get('expires')}.")
        raise RolloutError(
            f"{remote.name}: another deploy holds the {env} lock: {holder.get('owner', '?')} "
            f"since {holder.get('started', '?')}.{hint}")
    return lock


def release_locks(remotes: Sequence[Remote], lock: Lock) -> None:
    for remote in remotes:
        remote.run(cmd.release_lock(LOCK_PATH, lock.token))


def refuse_if_locked(primary: Remote, env: str) -> None:
    """Raise `RolloutError` while another run holds an unexpired lock (a rotation checks this
    before writing Vault: the rollout would refuse anyway, leaving new versions no host runs).
    An expired lock is the rollout's business (`--data break_lock=true`)."""
    _, out, _ = primary.run(cmd.read_file(LOCK_PATH))
    holder = lock_holder(out)
    if holder and not lock_expired(holder, datetime.now(UTC)):
        raise RolloutError(f"{primary.name}: another deploy holds the {env} lock: "
                           f"{holder.get('owner', '?')} since {holder.get('started', '?')}; "
                           f"it expires at {holder.get('expires')}")
