"""The environment's deploy lock: one deploy, rollback or rotation at a time, whatever `--limit`.

Where: one KV v2 entry in the environment's own Vault, `<path_prefix>/locks/deploy`. Every run
that changes a host already needs Vault, so no `--limit` can route around the lock, and KV v2's
check-and-set makes taking it atomic: two runs that read the same version cannot both write.

A lease, not a TTL: the holder writes a heartbeat every `lease / 4` seconds; a lock whose last
heartbeat is older than the lease (group_data `deploy_lock_lease_seconds`, 120 s in prod) was
left by a run that died (SIGKILL, a closed laptop, a lost CI runner), and the next run takes it
by itself. A live holder never loses its lock to time: if it cannot renew for a whole lease it
stops at its next step boundary instead of acting unlocked.

Breaking a live holder's lock is possible for an operator who means it:
`--data break_lock=<the token prefix the refusal shows>`; a stale script's prefix matches no
other holder. The break is written to the ledger of every host the breaking run reaches.

Pure part: `Holder` (the record), `lease_expired`, `refusal`; effects: `LockStore` (Vault or a
test double) and `EnvironmentLock` (take, renew, release, and the heartbeat greenlet).
"""

from __future__ import annotations

import os
import secrets as pysecrets
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import gevent

from ops.rollout.ledger import operator
from ops.rollout.steps import RolloutError
from ops.secrets.bootstrap import lock_path  # noqa: F401 - where the lock lives, one place
from ops.secrets.vault import (
    CasMismatch,
    VaultError,
    VaultSettings,
    open_session,
    read_kv,
    write_kv_cas,
)

SHOWN_TOKEN = 12  # characters of the holder's token a refusal shows (and break_lock needs)
MIN_BREAK_PREFIX = 8


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_time(text: object) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LockHeld(RolloutError):
    """Another live run holds the lock; the message says who and how to break it."""


class LockLost(RolloutError):
    """This run's lock was broken or could not be renewed: it must stop acting."""


@dataclass(frozen=True)
class Holder:
    """The lock record (KV values are strings). `token` identifies one run."""

    token: str
    user: str
    pid: str
    kind: str
    release: str
    started: str
    heartbeat: str
    lease_seconds: str

    @classmethod
    def new(cls, kind: str, release: str, lease_seconds: int, now: datetime) -> Holder:
        stamp = now.isoformat()
        # a letter first: `--data break_lock=<prefix>` must stay a string, never a number
        return cls("k" + pysecrets.token_hex(16), operator(), str(os.getpid()), kind, release,
                   stamp, stamp, str(int(lease_seconds)))

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Holder | None:
        """The holder in a KV entry; None when the lock is free (released or never taken)."""
        if not data or not data.get("token"):
            return None
        fields = {k: str(data.get(k, "")) for k in cls.__dataclass_fields__}
        return cls(**fields)

    def data(self) -> dict[str, str]:
        return asdict(self)

    def renewed(self, now: datetime) -> Holder:
        return replace(self, heartbeat=now.isoformat())

    @property
    def shown_token(self) -> str:
        return self.token[:SHOWN_TOKEN]

    def expires(self) -> datetime | None:
        beat = parse_time(self.heartbeat)
        try:
            lease = int(self.lease_seconds)
        except ValueError:
            return None
        return beat + timedelta(seconds=lease) if beat else None


def lease_expired(holder: Holder, now: datetime) -> bool:
    """Whether the holder stopped renewing for a whole lease (a record nobody can date counts as
    expired: it must not block the environment forever)."""
    expires = holder.expires()
    return expires is None or expires <= now


def break_command(prefix: str, argv: Sequence[str] | None = None) -> str:
    """The command line of this run again, with `--data break_lock=<prefix>` (any earlier
    break_lock dropped)."""
    args = list(sys.argv if argv is None else argv)[1:]
    kept: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--data" and i + 1 < len(args) and args[i + 1].startswith("break_lock="):
            i += 2
            continue
        kept.append(args[i])
        i += 1
    return shlex.join(["pyinfra", *kept, "--data", f"break_lock={prefix}"])


def refusal(env: str, holder: Holder, now: datetime, argv: Sequence[str] | None = None) -> str:
    """Why this run may not go on, whose lock it is, and the exact command to break it."""
    beat = parse_time(holder.heartbeat)
    age = f"{int((now - beat).total_seconds())} s ago" if beat else "never"
    expires = holder.expires()
    until = (f"if that run is gone, the lock frees itself at {expires.isoformat()} "
             f"(lease {holder.lease_seconds} s)" if expires else "")
    return (f"the {env} deploy lock is held by {holder.user} (pid {holder.pid}): a "
            f"{holder.kind or 'run'} of release {holder.release or '?'} since {holder.started}; "
            f"last heartbeat {holder.heartbeat} ({age}); {until}.\n"
            f"Nothing was changed. If you are sure that run is dead or must be stopped, break "
            f"its lock with:\n    {break_command(holder.shown_token, argv)}")


class LockStore(Protocol):
    """Where the lock record lives: read (version, data) and write with check-and-set."""

    where: str

    def read(self) -> tuple[int, dict[str, Any] | None]: ...

    def write(self, data: dict[str, str], cas: int) -> int: ...


class VaultLockStore:
    """The lock record in KV v2; each call logs in and out (a run may outlive a token's TTL)."""

    def __init__(self, settings: VaultSettings, path: str):
        self.settings, self.path = settings, path
        self.where = f"Vault {settings.addr} {settings.mount}/{path}"

    def read(self) -> tuple[int, dict[str, Any] | None]:
        with open_session(self.settings) as session:
            kv = read_kv(session, self.path)
        return int(kv.version or 0), kv.data

    def write(self, data: dict[str, str], cas: int) -> int:
        with open_session(self.settings) as session:
            return write_kv_cas(session, self.path, data, cas)


class EnvironmentLock:
    """A taken lock: renewed by a heartbeat greenlet until released."""

    def __init__(self, store: LockStore, env: str, holder: Holder, version: int,
                 clock: Callable[[], datetime] = now_utc):
        self.store, self.env, self.holder, self.version = store, env, holder, version
        self.clock = clock
        self.last_renewal = clock()
        self.lost: str | None = None
        self.broke: Holder | None = None  # the holder whose lock this run broke, if any
        self._beat: gevent.Greenlet | None = None

    @classmethod
    def take(cls, store: LockStore, env: str, kind: str, release: str, lease_seconds: int,
             break_prefix: str | None = None, clock: Callable[[], datetime] = now_utc,
             argv: Sequence[str] | None = None) -> EnvironmentLock:
        """Take the lock, or raise `LockHeld` naming the live holder (nothing changed)."""
        now = clock()
        try:
            version, data = store.read()
        except VaultError as e:
            raise RolloutError(f"cannot read the {env} deploy lock ({store.where}): {e}") \
                from None
        current = Holder.from_data(data)
        broke = None
        if current is not None and not lease_expired(current, now):
            prefix = (break_prefix or "").strip()
            if not prefix:
                raise LockHeld(refusal(env, current, now, argv))
            if len(prefix) < MIN_BREAK_PREFIX or not current.token.startswith(prefix):
                raise LockHeld(f"--data break_lock={prefix} does not match the holder's token "
                               f"(it starts {current.shown_token}): the lock changed hands "
                               f"or the prefix is wrong.\n" + refusal(env, current, now, argv))
            broke = current
        me = Holder.new(kind, release, lease_seconds, now)
        try:
            version = store.write(me.data(), cas=version)
        except CasMismatch:
            _, data = store.read()
            other = Holder.from_data(data)
            raise LockHeld(refusal(env, other, now, argv) if other else
                           f"another run took the {env} deploy lock at the same moment; "
                           "nothing was changed; re-run") from None
        except VaultError as e:
            raise RolloutError(f"cannot take the {env} deploy lock ({store.where}): {e}") \
                from None
        lock = cls(store, env, me, version, clock)
        lock.broke = broke
        return lock

    # --- renewal ---------------------------------------------------------------------------

    @property
    def lease(self) -> int:
        return int(self.holder.lease_seconds)

    def renew(self) -> None:
        """One heartbeat: write a fresh timestamp if the lock is still ours."""
        if self.lost:
            return
        now = self.clock()
        try:
            version, data = self.store.read()
            current = Holder.from_data(data)
            if current is None or current.token != self.holder.token:
                who = f"{current.user} (pid {current.pid})" if current else "nobody"
                self.lost = f"the lock was broken: it is now held by {who}"
                return
            renewed = self.holder.renewed(now)
            self.version = self.store.write(renewed.data(), cas=version)
            self.holder, self.last_renewal = renewed, now
        except VaultError as e:  # CasMismatch included: someone wrote in between
            if (now - self.last_renewal).total_seconds() >= self.lease * 0.75:
                self.lost = (f"the lock could not be renewed for "
                             f"{int((now - self.last_renewal).total_seconds())} s ({e})")

    def check(self) -> None:
        """Raise `LockLost` when this run may no longer act (called at every step boundary)."""
        if not self.lost and (self.clock() - self.last_renewal).total_seconds() >= self.lease:
            self.lost = f"no heartbeat could be written for a whole lease ({self.lease} s)"
        if self.lost:
            raise LockLost(f"stopped: {self.lost}; this run no longer holds the {self.env} "
                           "deploy lock and changes nothing more")

    def start_heartbeat(self) -> None:
        interval = max(1.0, self.lease / 4)

        def beat() -> None:
            while not self.lost:
                gevent.sleep(interval)
                self.renew()

        self._beat = gevent.spawn(beat)

    # --- release ---------------------------------------------------------------------------

    def release(self) -> str | None:
        """Free the lock if it is still ours; a warning to print when that failed (the lease
        then frees it within `lease` seconds), None when done."""
        if self._beat is not None:
            self._beat.kill(block=False)
        try:
            version, data = self.store.read()
            current = Holder.from_data(data)
            if current is None or current.token != self.holder.token:
                return None  # broken by another run: not ours to free
            self.store.write({"released_by": self.holder.user,
                              "released": self.clock().isoformat(),
                              "release": self.holder.release}, cas=version)
        except VaultError as e:
            return (f"WARNING: could not release the {self.env} deploy lock "
                    f"({self.store.where}): {e}; it frees itself within {self.lease} s")
        return None
