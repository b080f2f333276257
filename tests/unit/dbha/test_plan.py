"""ops.dbha.plan: the cluster stage's order from what each host runs (first start together,
changes one container at a time, the leader last and after a switchover, an etcd membership
change refused), and the observation it reads, from the real command's output format."""

from __future__ import annotations

import pytest

from ops.dbha import commands
from ops.dbha.model import DbHaError, cluster_from_settings
from ops.dbha.plan import Observed, Step, cluster_plan, parse_observed, parts_of
from tests.unit.dbha.cluster_data import ADDRESSES, SETTINGS

CLUSTER = cluster_from_settings(SETTINGS, ADDRESSES, routers=["app-1", "app-2"])
ETCD, MEMBERS, ROUTERS = ("db-1", "db-2", "db-3"), ("db-1", "db-2"), ("app-1", "app-2")
SETTLED = Observed(present=True, running=True, current=True)


def everything(**overrides: Observed) -> dict[tuple[str, str], Observed]:
    """Every part running current, but `host__part=Observed(...)`."""
    seen = {(h, p): SETTLED for p, hosts in (("etcd", ETCD), ("patroni", MEMBERS),
                                             ("router", ROUTERS)) for h in hosts}
    for key, value in overrides.items():
        host, part = key.replace("_", "-", 1).split("__")
        seen[(host, part)] = value
    return seen


def test_a_first_start_starts_etcd_then_patroni_together_then_each_router() -> None:
    assert cluster_plan(CLUSTER, {}) == [
        Step("etcd", ETCD, "first start of every member together (a quorum needs a majority "
                           "at once)"),
        Step("patroni", MEMBERS, "first start of every member together (one bootstraps, the "
                                 "others join it)"),
        Step("router", ("app-1",), "not there yet"),
        Step("router", ("app-2",), "not there yet"),
    ]


def test_a_settled_cluster_needs_nothing() -> None:
    assert cluster_plan(CLUSTER, everything(), leader="db-1") == []


def test_changed_members_go_one_at_a_time_replicas_first_the_leader_last_after_a_switchover():
    changed = Observed(present=True, running=True, current=False)
    steps = cluster_plan(CLUSTER, everything(db_1__patroni=changed, db_2__patroni=changed),
                         leader="db-1")
    assert [(s.hosts, s.switchover_first) for s in steps] == [(("db-2",), False),
                                                             (("db-1",), True)]
    # the other way round when db-2 leads
    steps = cluster_plan(CLUSTER, everything(db_1__patroni=changed, db_2__patroni=changed),
                         leader="db-2")
    assert [(s.hosts, s.switchover_first) for s in steps] == [(("db-1",), False),
                                                             (("db-2",), True)]


def test_a_stopped_member_starts_before_any_change_and_etcd_goes_one_at_a_time() -> None:
    stopped = Observed(present=True, running=False, current=True)
    changed = Observed(present=True, running=True, current=False)
    steps = cluster_plan(CLUSTER, everything(db_2__etcd=changed, db_3__etcd=changed,
                                             db_2__patroni=stopped, db_1__patroni=changed,
                                             app_2__router=changed), leader="db-1")
    assert [s.line() for s in steps] == [
        "etcd on db-2: its files changed: recreated",
        "etcd on db-3: its files changed: recreated",
        "patroni on db-2: stopped: started again",
        "patroni on db-1: its files changed: recreated",
        "router on app-2: its files changed: recreated",
    ]
    assert steps[3].switchover_first


def test_every_etcd_member_stopped_is_a_first_start_again() -> None:
    stopped = Observed(present=True, running=False, current=True)
    steps = cluster_plan(CLUSTER, everything(db_1__etcd=stopped, db_2__etcd=stopped,
                                             db_3__etcd=stopped), leader="db-1")
    assert [(s.part, s.hosts) for s in steps] == [("etcd", ETCD)]


def test_an_etcd_member_the_running_cluster_lacks_is_refused_before_anything() -> None:
    seen = everything()
    del seen[("db-3", "etcd")]
    with pytest.raises(DbHaError) as err:
        cluster_plan(CLUSTER, seen, leader="db-1")
    assert str(err.value).startswith("superapp: etcd runs without db-3: adding an etcd member "
                                     "to a running cluster is a membership change")
    assert "the deploy changed nothing" in str(err.value)


def test_parse_observed_reads_docker_ps_lines_against_the_rendered_digests() -> None:
    out = ("etcd running aaa\n"
           "patroni exited bbb\n"
           "db-router running old\n"
           "unrelated running x\n")
    seen = parse_observed(out, "db-1", {"etcd": "aaa", "patroni": "bbb", "router": "new"})
    assert seen == {("db-1", "etcd"): SETTLED,
                    ("db-1", "patroni"): Observed(present=True, running=False, current=True),
                    ("db-1", "router"): Observed(present=True, running=True, current=False)}
    # a container without the label (made by hand, or before it existed) is never current
    assert parse_observed("etcd running \n", "db-1", {"etcd": "aaa"})[("db-1", "etcd")] == \
        Observed(present=True, running=True, current=False)
    assert parse_observed("", "db-1", {"etcd": "aaa"}) == {}


def test_observe_parts_is_the_format_parse_observed_reads() -> None:
    text = commands.observe_parts()
    assert "label=com.docker.compose.project=sa-dbha" in text
    assert '{{.Label "com.docker.compose.service"}} {{.State}} ' \
           '{{.Label "superapp.dbha-files-sha256"}}' in text


def test_parts_of_each_host() -> None:
    assert parts_of(CLUSTER, "db-1") == ["etcd", "patroni"]
    assert parts_of(CLUSTER, "db-3") == ["etcd"]
    assert parts_of(CLUSTER, "app-2") == ["router"]
    assert parts_of(CLUSTER, "nope") == []
