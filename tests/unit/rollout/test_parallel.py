"""Hosts rolled at once (ops/rollout/pool.py, `rollout.parallel_hosts`): the first changed host
alone, then the others overlapping in time, never two of one placement group; a failure starts
no other host, Ctrl-C interrupts every host in progress."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import gevent
import pytest

from ops.rollout.engine import rollout
from ops.rollout.interrupt import Interrupted
from ops.rollout.ledger import Release
from ops.rollout.pool import next_startable, run_pool
from ops.rollout.steps import RolloutError
from tests.unit.rollout.test_engine import ENV, FakeRemote, changed_fleet, prestaging


class SlowHost(FakeRemote):
    """Every command but pre-staging's takes 20 ms (a gevent sleep, as an SSH round trip
    yields), and is logged with its time."""

    def __init__(self, name: str, unhealthy: set[str] = frozenset()):
        super().__init__(name, unhealthy)
        self.times: list[float] = []

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        if not prestaging(command) and "releases.jsonl" not in command:
            gevent.sleep(0.02)
            self.times.append(time.monotonic())
        return super().run(command, timeout)

    @property
    def span(self) -> tuple[float, float]:
        return self.times[0], self.times[-1]


def fleet(unhealthy_on: str = ""):
    plans, _ = changed_fleet()
    return plans, [SlowHost(p.host, {"payments-b"} if p.host == unhealthy_on else set())
                   for p in plans]


def overlap(a: SlowHost, b: SlowHost) -> bool:
    return a.span[0] < b.span[1] and b.span[0] < a.span[1]


def test_after_the_first_host_the_others_roll_at_once() -> None:
    plans, remotes = fleet()
    results = rollout(ENV, plans, remotes, Release(env="local", commit="abc"), parallel_hosts=2)
    host1, host2, host3 = remotes
    assert [r.result for r in results] == ["changed"] * 3
    assert host1.span[1] < min(host2.span[0], host3.span[0])  # the first host alone
    assert overlap(host2, host3)


def test_width_one_is_one_host_after_the_other() -> None:
    plans, remotes = fleet()
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"), parallel_hosts=1)
    host1, host2, host3 = remotes
    assert host1.span[1] < host2.span[0] and host2.span[1] < host3.span[0]


def test_two_hosts_of_one_placement_group_never_roll_at_once() -> None:
    racked = dataclasses.replace(ENV, hosts=tuple(
        dataclasses.replace(h, placement_group="rack-1" if h.name != "host1" else "")
        for h in ENV.hosts))
    plans, remotes = fleet()
    rollout(racked, plans, remotes, Release(env="local", commit="abc"), parallel_hosts=3)
    _, host2, host3 = remotes
    assert not overlap(host2, host3)


def test_a_failed_host_lets_the_one_in_progress_finish_and_names_both() -> None:
    plans, remotes = fleet(unhealthy_on="host2")
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"), parallel_hosts=2)
    msg = str(info.value)
    assert "host2: payments did not become healthy" in msg
    assert "Rollout stopped at host2. Already on the new release: host1, host3." in msg


def test_the_pool_starts_nothing_after_a_failure() -> None:
    started = []

    def work(n: int) -> int:
        started.append(n)
        gevent.sleep(0.01 * n)
        return n

    run = run_pool([1, 2, 3, 4, 5], 2, str, work, lambda n: n != 2)
    assert started == [1, 2, 3]  # 3 started when 1 finished; 2 failed before 3 finished
    assert run.outcomes == [1, 2, 3] and run.not_started == [4, 5]


def test_ctrl_c_interrupts_every_host_in_progress_and_starts_none() -> None:
    def work(n: int) -> str:
        try:
            gevent.sleep(5)
            return f"{n} finished"
        except Interrupted:
            return f"{n} undone"

    gevent.spawn_later(0.1, os.kill, os.getpid(), signal.SIGINT)
    began = time.monotonic()
    run = run_pool([1, 2, 3], 2, str, work, lambda _: True)
    assert time.monotonic() - began < 2
    assert sorted(run.outcomes) == ["1 undone", "2 undone"]
    assert run.interrupted and run.not_started == [3]


def test_the_next_host_is_the_first_whose_group_is_free() -> None:
    group = {"a": "r1", "b": "r1", "c": "r2"}.get
    assert next_startable(["b", "c"], {"r1"}, group) == "c"
    assert next_startable(["b"], {"r1"}, group) is None


def test_work_that_raises_stops_the_pool_with_its_exception() -> None:
    def work(n: int) -> int:
        gevent.sleep(0.01 * n)
        if n == 1:
            raise ValueError("a bug")
        return n

    with pytest.raises(ValueError, match="a bug"):
        run_pool([1, 2, 3], 2, str, work, lambda _: True)
