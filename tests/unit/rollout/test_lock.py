"""ops.rollout.lock against an in-memory store with KV v2's check-and-set and a clock the test
moves: taking, refusing with the break command, leases, renewal, breaking, losing, releasing.
(tests/integration/test_crash.py does the same against the testbed's OpenBao.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.rollout.lock import (
    EnvironmentLock,
    Holder,
    LockHeld,
    LockLost,
    break_command,
    lease_expired,
)
from ops.secrets.vault import CasMismatch, VaultError

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ARGV = ["/venv/bin/pyinfra", "-y", "inventories/prod.py", "deploy.py", "--limit", "app-2"]


class Store:
    """The lock's KV entry: versions and check-and-set as Vault does them."""

    where = "memory"

    def __init__(self) -> None:
        self.version, self.data, self.fail = 0, None, False

    def read(self):
        if self.fail:
            raise VaultError("Vault unreachable at http://vault: connection refused")
        return self.version, self.data

    def write(self, data, cas):
        if self.fail:
            raise VaultError("Vault unreachable at http://vault: connection refused")
        if cas != self.version:
            raise CasMismatch("moved")
        self.version, self.data = self.version + 1, dict(data)
        return self.version


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def take(store, clock, kind="deploy", release="r1", lease=120, prefix=None):
    return EnvironmentLock.take(store, "prod", kind, release, lease, break_prefix=prefix,
                                clock=clock, argv=ARGV)


def test_a_free_lock_is_taken_and_a_second_run_is_refused_with_the_break_command(store, clock):
    first = take(store, clock)
    assert Holder.from_data(store.data).token == first.holder.token
    clock.advance(50)
    with pytest.raises(LockHeld) as refused:
        take(store, clock, release="r2")
    text = str(refused.value)
    h = first.holder
    assert f"held by {h.user} (pid {h.pid})" in text
    assert "a deploy of release r1 since 2026-12-02T09:00:00+00:00" in text
    assert "last heartbeat 2026-12-02T09:00:00+00:00 (50 s ago)" in text
    assert "frees itself at 2026-12-02T09:02:00+00:00 (lease 120 s)" in text
    assert ("pyinfra -y inventories/prod.py deploy.py --limit app-2 --data "
            f"break_lock={h.token[:12]}") in text
    assert Holder.from_data(store.data).token == h.token  # untouched


def test_a_dead_runs_lock_frees_itself_after_the_lease(store, clock):
    dead = take(store, clock)  # never renewed, never released: SIGKILL
    clock.advance(119)
    with pytest.raises(LockHeld):
        take(store, clock)
    clock.advance(1)
    fresh = take(store, clock, release="r2")
    assert fresh.holder.token != dead.holder.token and fresh.broke is None


def test_a_live_holder_is_never_lost_to_time(store, clock):
    live = take(store, clock, lease=120)
    for _ in range(10):  # 10 minutes, far past any lease, renewed every 30 s
        for _ in range(2):
            clock.advance(30)
            live.renew()
        with pytest.raises(LockHeld):
            take(store, clock, release="other")
        live.check()
    assert live.lost is None


def test_breaking_needs_the_holders_token_prefix_and_is_reported(store, clock):
    holder = take(store, clock).holder
    for wrong in ("true", holder.token[:7], "0" * 12):
        with pytest.raises(LockHeld, match="does not match the holder's token"):
            take(store, clock, prefix=wrong)
    breaker = take(store, clock, release="hotfix", prefix=holder.token[:12])
    assert breaker.broke == holder
    assert Holder.from_data(store.data).release == "hotfix"


def test_the_broken_holder_notices_at_its_next_heartbeat_and_stops(store, clock):
    victim = take(store, clock)
    take(store, clock, prefix=victim.holder.token[:12])
    clock.advance(30)
    victim.renew()
    with pytest.raises(LockLost, match="the lock was broken"):
        victim.check()
    assert victim.release() is None  # not ours any more: the breaker's lock stays
    assert Holder.from_data(store.data).token != victim.holder.token


def test_a_run_that_cannot_renew_for_a_lease_stops_before_it_could_act_unlocked(store, clock):
    lock = take(store, clock, lease=120)
    store.fail = True
    clock.advance(30)
    lock.renew()
    lock.check()  # one missed heartbeat: still safely inside the lease
    clock.advance(60)
    lock.renew()
    with pytest.raises(LockLost, match="could not be renewed for 90 s"):
        lock.check()


def test_two_runs_racing_for_a_free_lock_cannot_both_win(store, clock):
    class Racing(Store):
        def write(self, data, cas):  # another run writes between our read and our write
            if self.data is None:
                Store.write(self, {**data, "token": "f" * 32, "user": "bob@ci"}, cas)
            return Store.write(self, data, cas)

    racing = Racing()
    with pytest.raises(LockHeld, match="held by bob@ci"):
        take(racing, clock)


def test_release_frees_the_lock_for_the_next_run(store, clock):
    take(store, clock).release()
    assert Holder.from_data(store.data) is None and store.data["released_by"]
    assert take(store, clock, release="next").holder.release == "next"


def test_a_failed_release_is_a_warning_naming_the_lease(store, clock):
    lock = take(store, clock)
    store.fail = True
    assert "could not release the prod deploy lock (memory)" in lock.release()
    assert "frees itself within 120 s" in lock.release()


@pytest.mark.parametrize(("heartbeat", "expired"), [
    ("2026-12-02T08:59:00+00:00", False),
    ("2026-12-02T08:57:59+00:00", True),
    # 10:58 in UTC+02:00 is 08:58 UTC: expired at 09:00, although "10:58" sorts after as text
    ("2026-12-02T10:58:00+02:00", True),
    # 03:59:30 in UTC-05:00 is 08:59:30 UTC: live, although it sorts before as text
    ("2026-12-02T03:59:30-05:00", False),
    ("2026-12-02T08:59:00", False),  # no offset: read as UTC
    ("", True), ("yesterday", True),  # a record nobody can date must not block forever
])
def test_lease_expiry_compares_times_not_text(heartbeat, expired):
    holder = Holder("t" * 32, "a@b", "1", "deploy", "r", heartbeat, heartbeat, "120")
    assert lease_expired(holder, T0) is expired


def test_the_break_command_replaces_an_earlier_break_lock():
    argv = [*ARGV, "--data", "break_lock=abc", "--data", "release=r7"]
    assert break_command("0123456789ab", argv) == (
        "pyinfra -y inventories/prod.py deploy.py --limit app-2 --data release=r7 "
        "--data break_lock=0123456789ab")
