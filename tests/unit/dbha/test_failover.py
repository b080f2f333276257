"""ops.dbha.failover: which switchovers are refused before anything changes, and the
switchover itself against a scripted cluster (the real one: tests/integration/test_db_ha.py)."""

from __future__ import annotations

import json

import pytest

from ops.dbha import commands
from ops.dbha.failover import switchover, switchover_refusal
from ops.dbha.model import DbHaError, cluster_from_settings
from ops.dbha.status import ClusterState, parse_cluster
from tests.unit.dbha.cluster_data import ADDRESSES, SETTINGS

SYNC = cluster_from_settings(SETTINGS, ADDRESSES, routers=["app-1"])
ASYNC = cluster_from_settings({**SETTINGS, "replication": "asynchronous"}, ADDRESSES,
                              routers=["app-1"])


def cluster_doc(leader: str = "db-1", other_role: str = "sync_standby", lag: object = 0,
                other_state: str = "streaming", timeline: int = 4, **extra) -> str:
    other = "db-2" if leader == "db-1" else "db-1"
    return json.dumps({"members": [
        {"name": leader, "role": "leader", "state": "running", "timeline": timeline},
        {"name": other, "role": other_role, "state": other_state, "timeline": timeline,
         "lag": lag}], **extra})


def state(**kw) -> ClusterState:
    return parse_cluster(cluster_doc(**kw))


@pytest.mark.parametrize(("cluster", "doc", "to", "expected"), [
    (SYNC, {}, "db-9", "--data to=db-9: not a member of the database cluster superapp "
                       "(members: db-1, db-2)"),
    (SYNC, {"other_state": "starting"}, "db-2", "member db-2 is starting"),
    (SYNC, {"pause": True}, "db-2", "is paused"),
    (SYNC, {"lag": 2_000_000}, "db-2", "db-2 is 2000000 B behind the leader "
                                       "(db_ha.maximum_lag_on_failover_bytes: 1048576)"),
    (SYNC, {"lag": "unknown"}, "db-2", "db-2 is an unknown amount behind"),
    (SYNC, {"other_role": "replica"}, "db-2", "db-2 is not the synchronous standby (none)"),
])
def test_refused_before_anything_changes(cluster, doc, to, expected) -> None:
    assert expected in (switchover_refusal(state(**doc), cluster, to) or "")


@pytest.mark.parametrize(("cluster", "doc"), [
    (SYNC, {}), (ASYNC, {"other_role": "replica", "lag": 4096}),
])
def test_a_caught_up_standby_may_take_over(cluster, doc) -> None:
    assert switchover_refusal(state(**doc), cluster, "db-2") is None


def test_the_leader_itself_is_no_refusal() -> None:
    assert switchover_refusal(state(), SYNC, "db-1") is None


class Scripted:
    """A cluster that hands over `after` reads once patronictl switchover ran."""

    def __init__(self, code: int = 0, after: int = 2, rejoins: bool = True):
        self.code, self.after, self.rejoins = code, after, rejoins
        self.ran: list[tuple[str, list[str]]] = []
        self.reads = 0
        self.switched_at: int | None = None

    def run(self, member: str, argv: list[str], stdin: str = "") -> tuple[int, str]:
        self.ran.append((member, argv))
        self.switched_at = self.reads
        return self.code, "" if self.code == 0 else "Error: candidate db-2 is not healthy\n"

    def state(self) -> ClusterState:
        self.reads += 1
        if self.switched_at is None or self.reads - self.switched_at <= self.after:
            return state()
        if not self.rejoins:
            return state(leader="db-2", other_role="replica", other_state="stopped",
                         timeline=5)
        return state(leader="db-2", timeline=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_switchover_asks_the_leader_and_waits_for_the_old_one_to_follow() -> None:
    members, clock = Scripted(), Clock()
    result = switchover(members, SYNC, "db-2", clock=clock, sleep=clock.sleep)
    assert members.ran == [("db-1", commands.switchover("db-1", "db-2"))]
    assert (result.old, result.new, result.timeline_before, result.timeline_after) == \
        ("db-1", "db-2", 4, 5)
    assert result.ended - result.started == 2  # two polls of a second until handed over
    assert result.lines() == ["leader db-1 -> db-2 in 2.0 s (timeline 4 -> 5); db-1 follows "
                              "as a replica"]


def test_a_refused_switchover_runs_nothing() -> None:
    members = Scripted()
    with pytest.raises(DbHaError, match="not a member"):
        switchover(members, SYNC, "db-3")
    assert members.ran == []


def test_the_current_leader_changes_nothing() -> None:
    members = Scripted()
    result = switchover(members, SYNC, "db-1")
    assert members.ran == [] and not result.changed
    assert result.lines() == ["db-1 already leads: nothing changed"]


def test_patronictl_failing_is_said_with_its_words() -> None:
    with pytest.raises(DbHaError, match="patronictl switchover db-1 -> db-2 failed: Error: "
                                        "candidate db-2 is not healthy"):
        switchover(Scripted(code=1), SYNC, "db-2")


def test_an_old_leader_that_does_not_rejoin_stops_with_the_state_seen() -> None:
    clock = Clock()
    with pytest.raises(DbHaError) as err:
        switchover(Scripted(rejoins=False), SYNC, "db-2", timeout=10, clock=clock,
                   sleep=clock.sleep)
    message = str(err.value)
    assert "db-2 leading with every member running: not after 10 s" in message
    assert "db-1: replica, stopped" in message and "ops/runbooks/db-failover.md" in message
