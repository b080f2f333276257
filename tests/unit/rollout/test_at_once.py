"""One host's independent per-service work at once (ops/rollout/steps.py `at_once`): its
migrations overlap, bounded by what one SSH connection (and the host's CPU) allows; a failure
starts nothing more but lets what runs finish; Ctrl-C stops them all."""

from __future__ import annotations

import dataclasses
import json
import shlex
import time

import gevent
import pytest

from ops.rollout.engine import rollout
from ops.rollout.interrupt import Interrupted
from ops.rollout.ledger import Release
from ops.rollout.steps import AT_ONCE_PER_HOST, RolloutError, at_once
from tests.unit.rollout.test_engine import ENV, FakeRemote, changed_fleet


class Counter:
    """Jobs that sleep (yielding, as an SSH command does) and count how many run together."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.started: list[str] = []
        self.finished: list[str] = []

    def job(self, name: str, seconds: float = 0.05, fail: bool = False):
        def work() -> str:
            self.started.append(name)
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                gevent.sleep(seconds)
                if fail:
                    raise RolloutError(f"host1: migration of {name} failed:\nboom")
            finally:
                self.running -= 1
            self.finished.append(name)
            return name.upper()
        return name, work


def test_jobs_overlap_up_to_the_width_and_return_every_result() -> None:
    c = Counter()
    t0 = time.monotonic()
    results = at_once([c.job(f"s{i}") for i in range(9)], width=3)
    assert results == {f"s{i}": f"S{i}" for i in range(9)}
    assert c.most == 3
    assert time.monotonic() - t0 < 9 * 0.05 * 0.6  # three rounds, not nine
    assert c.started == [f"s{i}" for i in range(9)]  # started in the given order


def test_width_one_is_one_after_another() -> None:
    c = Counter()
    at_once([c.job("a"), c.job("b"), c.job("c")], width=1)
    assert c.most == 1


def test_a_failure_starts_nothing_more_lets_the_running_finish_and_names_each_failure() -> None:
    c = Counter()
    jobs = [c.job("slow", 0.2), c.job("bad", 0.01, fail=True), c.job("worse", 0.02, fail=True),
            c.job("later"), c.job("last")]
    with pytest.raises(RolloutError) as info:
        at_once(jobs, width=3)
    assert c.started == ["slow", "bad", "worse"]  # nothing started after the first failure
    assert "slow" in c.finished  # the one running went to its end
    msg = str(info.value)
    assert "migration of bad failed" in msg and "migration of worse failed" in msg
    assert msg.index("of bad") < msg.index("of worse")  # in job order


def test_ctrl_c_stops_every_job_and_propagates() -> None:
    c = Counter()

    def outer() -> None:
        at_once([c.job(f"s{i}", 5) for i in range(4)], width=4)

    g = gevent.spawn(outer)
    gevent.sleep(0.05)
    g.kill(Interrupted, block=True)
    assert isinstance(g.exception, Interrupted)
    assert len(c.started) == 4 and not c.finished and c.running == 0


def test_a_bug_in_a_job_is_raised_whole() -> None:
    def broken() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        at_once([("x", broken)])


class SlowCommands(FakeRemote):
    """Migrations and `compose up` take 50 ms each (yielding); counts how many overlap."""

    def __init__(self, name: str, failing_migration: str = ""):
        super().__init__(name)
        self.failing_migration = failing_migration
        self.running = self.most_migrations = self.most_ups = 0
        self.log: list[tuple[str, str]] = []  # ("start" | "end", command)

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        migrate = "standin.py migrate" in command
        up = " up -d " in command
        if not (migrate or up):
            return super().run(command, timeout)
        self.commands.append(command)
        self.running += 1
        if migrate:
            self.most_migrations = max(self.most_migrations, self.running)
        else:
            self.most_ups = max(self.most_ups, self.running)
        self.log.append(("start", command))
        gevent.sleep(0.05)
        self.log.append(("end", command))
        self.running -= 1
        if migrate and self.failing_migration and f"/{self.failing_migration}.yml" in command:
            return False, "migrate: it broke", ""
        return True, "migrate: applied 1 migration(s), now at version 7\n", ""


def test_a_hosts_migrations_overlap_bounded_and_its_starts_stay_one_at_a_time() -> None:
    plans, _ = changed_fleet()
    remotes = [SlowCommands(p.host) for p in plans]
    results = rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    host1 = remotes[0]
    assert host1.most_migrations == AT_ONCE_PER_HOST < len(ENV.services)
    assert host1.most_ups == 1  # CPU-bound: see ops/rollout/swap.py start_new_slots
    assert results[0].migrations == dict.fromkeys(ENV.services, "7")  # every head recorded
    assert remotes[1].most_migrations == 0  # once per release, on the first host


def test_a_failed_migration_starts_no_new_slot_and_keeps_the_heads_of_those_that_ran() -> None:
    plans, _ = changed_fleet()
    remotes = [SlowCommands(plans[0].host, failing_migration="payments"),
               *(FakeRemote(p.host) for p in plans[1:])]
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert "host1: migration of payments failed" in str(info.value)
    host1 = remotes[0]
    assert host1.most_ups == 0 and not any(" up -d " in c for c in host1.commands)
    ran = [c for c in host1.commands if "standin.py migrate" in c]
    assert len(ran) < len(ENV.services)  # nothing started after the failure
    entry = json.loads(shlex.split(next(c for c in host1.commands if "releases.jsonl" in c))[2])
    heads = entry["migrations"]
    assert "payments" not in heads and heads  # those that ran are in the ledger
    assert set(heads) == {s for s in ENV.services if any(f"/{s}.yml" in c for c in ran)} - {
        "payments"}


def test_services_sharing_a_database_migrate_one_after_the_other() -> None:
    taxi = dataclasses.replace(ENV.services["taxi"], database="payments")
    shared = dataclasses.replace(ENV, catalog=dataclasses.replace(
        ENV.catalog, services={**ENV.services, "taxi": taxi}))
    plans, _ = changed_fleet()
    remotes = [SlowCommands(p.host) for p in plans]
    rollout(shared, plans, remotes, Release(env="local", commit="abc"))
    log = [(what, c.split(" -f ")[1].split()[0]) for what, c in remotes[0].log
           if "standin.py migrate" in c]
    payments, taxi = "/opt/superapp/compose/payments.yml", "/opt/superapp/compose/taxi.yml"
    assert log.index(("end", payments)) < log.index(("start", taxi))
    assert remotes[0].most_migrations == AT_ONCE_PER_HOST  # the others still overlap
