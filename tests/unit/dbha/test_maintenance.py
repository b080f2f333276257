"""ops.dbha.maintenance without a cluster: what differs, the patch patronictl merges, the
restart order, and the rolling restart driven against a scripted cluster (the real one:
tests/integration/test_db_ha.py)."""

from __future__ import annotations

import json

import pytest

from ops import yamlio
from ops.dbha import commands, maintenance
from ops.dbha.model import DbHaError, cluster_from_settings
from ops.dbha.render import dcs_config
from ops.dbha.status import parse_cluster
from tests.unit.dbha.cluster_data import ADDRESSES

CLUSTER = cluster_from_settings(
    {"scope": "superapp", "members": ["db-1", "db-2", "db-3"], "etcd": ["db-1", "db-2", "db-3"],
     "replication": "synchronous", "loop_wait_seconds": 2, "retry_timeout_seconds": 4,
     "ttl_seconds": 10}, ADDRESSES, routers=["app-1"])


def test_only_what_differs_is_changed_and_unmanaged_settings_stay() -> None:
    current = dcs_config(CLUSTER)
    current["postgresql"]["parameters"]["work_mem"] = "64MB"  # an operator's own setting
    current["postgresql"]["parameters"]["max_connections"] = "200"  # written as text
    desired = dcs_config(CLUSTER, parameters={"max_connections": 250})
    assert maintenance.config_changes(current, desired) == {
        "postgresql.parameters.max_connections": 250}
    assert maintenance.config_changes(dcs_config(CLUSTER), dcs_config(CLUSTER)) == {}
    desired["synchronous_mode"] = False
    assert maintenance.config_changes(current, desired)["synchronous_mode"] is False
    # a boolean is not the text "True", nor 1
    assert maintenance.config_changes({"failsafe_mode": 1}, {"failsafe_mode": True}) == {
        "failsafe_mode": True}
    assert maintenance.patch({"postgresql.parameters.max_connections": 250, "ttl": 20}) == {
        "postgresql": {"parameters": {"max_connections": 250}}, "ttl": 20}


def member(name, role, state="streaming", pending=False, timeline=4):
    return {"name": name, "role": role, "state": state, "timeline": timeline,
            **({"pending_restart": True} if pending else {})}


def test_replicas_restart_first_and_the_leader_last() -> None:
    state = parse_cluster(json.dumps({"members": [
        member("db-1", "leader", "running", pending=True), member("db-3", "replica", pending=True),
        member("db-2", "sync_standby", pending=True)]}))
    assert maintenance.restart_order(state) == ["db-2", "db-3", "db-1"]
    assert state.lines()[0] == "db-1: leader, running, timeline 4, restart pending"
    none = parse_cluster(json.dumps({"members": [member("db-1", "leader", "running")]}))
    assert maintenance.restart_order(none) == []


class Scripted:
    """A three-member cluster whose states follow the restarts it is asked for: a restarted
    member reads `stopped` once, then comes back without its pending restart."""

    def __init__(self, pending=("db-1", "db-2", "db-3"), stuck: str | None = None):
        self.roles = {"db-1": "leader", "db-2": "sync_standby", "db-3": "replica"}
        self.pending = set(pending)
        self.down: set[str] = set()
        self.stuck = stuck
        self.calls: list[tuple[str, list[str], str]] = []
        self.config = dcs_config(CLUSTER)

    def run(self, name, argv, stdin=""):
        self.calls.append((name, argv, stdin))
        if argv == commands.show_config():
            return 0, yamlio.dump(self.config)
        if argv == commands.edit_config():
            self.config["postgresql"]["parameters"].update(
                yamlio.load(stdin)["postgresql"]["parameters"])
            return 0, ""
        assert argv == commands.restart("superapp", name)
        assert not self.down, f"{name} restarted while {self.down} is down"
        self.down.add(name)
        return 0, "Success: restart on member " + name

    def state(self):
        members = []
        for name, role in self.roles.items():
            if name in self.down and name != self.stuck:
                self.down.discard(name)
                self.pending.discard(name)
                members.append(member(name, "replica" if role != "leader" else role, "stopped"))
                continue
            members.append(member(name, role, "running" if role == "leader" else "streaming",
                                  pending=name in self.pending))
        return parse_cluster(json.dumps({"members": members}))


def fake_clock():
    now = [1000.0]

    def clock():
        return now[0]

    def sleep(seconds):
        now[0] += seconds
    return clock, sleep


def test_the_rolling_restart_takes_one_member_at_a_time_leader_last() -> None:
    cluster = Scripted()
    clock, sleep = fake_clock()
    done = maintenance.rolling_restart(cluster, CLUSTER, clock=clock, sleep=sleep)
    assert [r.member for r in done] == ["db-2", "db-3", "db-1"]
    assert all(set(r.others.values()) <= {"running", "streaming"} for r in done)
    assert all(a.ended <= b.started for a, b in zip(done, done[1:], strict=False))
    assert maintenance.rolling_restart(cluster, CLUSTER, clock=clock, sleep=sleep) == []


def test_a_member_that_does_not_come_back_stops_the_roll_naming_it() -> None:
    cluster = Scripted(stuck="db-2")
    clock, sleep = fake_clock()
    with pytest.raises(DbHaError) as err:
        maintenance.rolling_restart(cluster, CLUSTER, timeout=30, clock=clock, sleep=sleep)
    assert "db-2 back after its restart: not after 30 s" in str(err.value)
    assert "the next member was not restarted" in str(err.value)
    assert [c[0] for c in cluster.calls if "restart" in c[1]] == ["db-2"]


def test_an_unhealthy_cluster_is_not_touched() -> None:
    cluster = Scripted()
    cluster.roles["db-1"] = "replica"  # no leader: a failover in progress
    clock, sleep = fake_clock()
    with pytest.raises(DbHaError, match="has no leader: a failover is in progress"):
        maintenance.rolling_restart(cluster, CLUSTER, clock=clock, sleep=sleep)
    with pytest.raises(DbHaError, match="has no leader"):
        maintenance.apply_config(cluster, CLUSTER, dcs_config(CLUSTER))
    assert cluster.calls == []


def test_apply_config_writes_one_patch_through_the_leader() -> None:
    cluster = Scripted(pending=())
    desired = dcs_config(CLUSTER, parameters={"max_connections": 250})
    assert maintenance.apply_config(cluster, CLUSTER, desired) == {
        "postgresql.parameters.max_connections": 250}
    (_, show, _), (via, edit, stdin) = cluster.calls
    assert show == commands.show_config() and edit == commands.edit_config() and via == "db-1"
    assert yamlio.load(stdin) == {"postgresql": {"parameters": {"max_connections": 250}}}
    assert maintenance.apply_config(cluster, CLUSTER, desired) == {}
