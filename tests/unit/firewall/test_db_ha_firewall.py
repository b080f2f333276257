"""ops/firewall/policy.py with group_data `db_ha`: each host opens the Patroni cluster's ports
to the cluster's own nodes only (and the metrics to the monitoring host), derived from the
`Cluster`; without `db_ha` nothing of it opens.

The cluster is prod's real hosts: Patroni on db-1 (the db host) and backup-1, etcd on db-1,
backup-1 and mon-1, a router on each app host (what the loader passes: the app hosts).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops.catalog import load_environment
from ops.catalog.model import Environment, Host
from ops.dbha.model import cluster_from_settings
from ops.dbha.render import (
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    PATRONI_PORT,
    POSTGRES_PORT,
    ROUTER_METRICS_PORT,
)
from ops.firewall import check_ruleset, openings, render_ruleset
from ops.firewall.policy import cluster_openings

ADMIN = ["10.231.0.1"]
CLUSTER_PORTS = {ETCD_CLIENT_PORT, ETCD_PEER_PORT, POSTGRES_PORT, PATRONI_PORT,
                 ROUTER_METRICS_PORT}

# prod's addresses (group_data/prod.py)
APPS = ("10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.14")
DB_1, MON_1, BACKUP_1 = "10.10.1.11", "10.10.2.11", "10.10.3.11"

DB_HA = {"scope": "superapp", "members": ["db-1", "backup-1"],
         "etcd": ["db-1", "backup-1", "mon-1"], "replication": "synchronous"}


def with_db_ha(raw: dict = DB_HA, routers: list[str] | None = None) -> Environment:
    env = load_environment("prod")
    addresses = {h.name: h.address for h in env.hosts}
    if routers is None:
        routers = [h.name for h in env.hosts_with_role("app")]
    return replace(env, db_ha=cluster_from_settings(raw, addresses, routers=routers))


def by_name(env: Environment, host: str) -> dict:
    return {o.name: (o.port, o.sources) for o in openings(env, env.host(host), ADMIN)}


def by_port(env: Environment, host: str) -> dict[int, list]:
    """Every opening's sources on each port (more than one opening on a port shows up)."""
    found: dict[int, list] = {}
    for o in openings(env, env.host(host), ADMIN):
        found.setdefault(o.port, []).append(o.sources)
    return found


def cluster_ports(env: Environment, host: str) -> dict[int, list]:
    return {port: sources for port, sources in by_port(env, host).items()
            if port in CLUSTER_PORTS}


def test_the_db_host_as_a_member_opens_exactly_the_cluster_ports_beside_its_role() -> None:
    """Every opening, in order: the db role's own PostgreSQL rule (every app host) is gone,
    the member's takes its place."""
    env = with_db_ha()
    assert [(o.name, o.port, o.sources) for o in openings(env, env.host("db-1"), ADMIN)] == [
        ("ssh", 22, ("10.231.0.1",)),
        ("node-exporter", 9100, (MON_1,)),
        ("redis", 6379, APPS),
        ("postgres-exporter", 9187, (MON_1,)),
        ("redis-exporter", 9121, (MON_1,)),
        ("etcd-client", ETCD_CLIENT_PORT, (DB_1, BACKUP_1, MON_1)),
        ("etcd-peer", ETCD_PEER_PORT, (BACKUP_1, MON_1)),
        ("postgres", POSTGRES_PORT, (BACKUP_1, *APPS)),
        ("patroni-rest", PATRONI_PORT, (BACKUP_1, *APPS, MON_1)),
    ]


def test_the_other_member_opens_postgres_and_patroni_to_the_db_host_and_the_routers() -> None:
    assert cluster_ports(with_db_ha(), "backup-1") == {
        ETCD_CLIENT_PORT: [(DB_1, BACKUP_1, MON_1)],
        ETCD_PEER_PORT: [(DB_1, MON_1)],
        POSTGRES_PORT: [(DB_1, *APPS)],
        PATRONI_PORT: [(DB_1, *APPS, MON_1)],
    }
    # its own role's opening is unchanged
    assert by_name(with_db_ha(), "backup-1")["pitr-repository"] == (8333, (DB_1, BACKUP_1))


def test_an_etcd_host_that_is_no_member_opens_etcd_only() -> None:
    assert cluster_ports(with_db_ha(), "mon-1") == {
        ETCD_CLIENT_PORT: [(DB_1, BACKUP_1, MON_1)],
        ETCD_PEER_PORT: [(DB_1, BACKUP_1)],
    }


@pytest.mark.parametrize("host", ["app-1", "app-2", "app-3", "app-4"])
def test_a_router_host_opens_only_the_router_metrics_to_the_monitoring_host(host: str) -> None:
    assert cluster_ports(with_db_ha(), host) == {ROUTER_METRICS_PORT: [(MON_1,)]}


@pytest.mark.parametrize("host", ["app-1", "mon-1"])
def test_a_host_that_is_no_member_gets_neither_postgres_nor_patroni(host: str) -> None:
    opened = by_port(with_db_ha(), host)
    assert POSTGRES_PORT not in opened and PATRONI_PORT not in opened
    text = render_ruleset(with_db_ha(), with_db_ha().host(host), ADMIN)
    assert f" {POSTGRES_PORT}" not in text and f" {PATRONI_PORT}" not in text


@pytest.mark.parametrize("member", ["db-1", "backup-1"])
def test_postgres_on_a_member_is_open_neither_to_the_monitoring_host_nor_to_the_world(
        member: str) -> None:
    [sources] = by_port(with_db_ha(), member)[POSTGRES_PORT]  # one opening, not two
    assert sources is not None
    assert MON_1 not in sources
    own = with_db_ha().host(member).address
    assert own not in sources  # "the other members"


def test_a_member_never_gets_a_wider_postgres_rule_than_the_cluster_names() -> None:
    """The db role alone opens 5432 to every app host; with db_ha the member's rule replaces
    it, so a cluster routed from app-1 only leaves app-2..4 out."""
    env = with_db_ha(routers=["app-1"])
    assert by_port(env, "db-1")[POSTGRES_PORT] == [(BACKUP_1, "10.10.0.11")]
    assert by_port(env, "db-1")[PATRONI_PORT] == [(BACKUP_1, "10.10.0.11", MON_1)]
    assert cluster_ports(env, "app-2") == {}


def test_a_patroni_member_outside_etcd_reaches_the_etcd_client_port_only() -> None:
    env = with_db_ha({**DB_HA, "etcd": ["backup-1", "mon-1", "app-4"]})
    assert cluster_ports(env, "mon-1") == {
        ETCD_CLIENT_PORT: [(BACKUP_1, MON_1, "10.10.0.14", DB_1)],
        ETCD_PEER_PORT: [(BACKUP_1, "10.10.0.14")],
    }
    assert ETCD_CLIENT_PORT not in by_port(env, "db-1")
    assert ETCD_PEER_PORT not in by_port(env, "db-1")
    assert cluster_ports(env, "app-4") == {
        ETCD_CLIENT_PORT: [(BACKUP_1, MON_1, "10.10.0.14", DB_1)],
        ETCD_PEER_PORT: [(BACKUP_1, MON_1)],
        ROUTER_METRICS_PORT: [(MON_1,)],
    }


def test_two_db_hosts_as_the_members_as_the_loader_requires_them() -> None:
    """The loader wants the members to be exactly the db hosts: each gets the member's rules,
    to the other one and the routers, and neither keeps the db role's PostgreSQL rule."""
    prod = load_environment("prod")
    db_2 = Host("db-2", "10.10.1.12", ("db",), "10.10.1.12")
    env = replace(prod, hosts=(*prod.hosts, db_2))
    addresses = {h.name: h.address for h in env.hosts}
    raw = {**DB_HA, "members": ["db-1", "db-2"], "etcd": ["db-1", "db-2", "mon-1"]}
    env = replace(env, db_ha=cluster_from_settings(
        raw, addresses, routers=[h.name for h in env.hosts_with_role("app")]))
    assert cluster_ports(env, "db-1") == {
        ETCD_CLIENT_PORT: [(DB_1, "10.10.1.12", MON_1)],
        ETCD_PEER_PORT: [("10.10.1.12", MON_1)],
        POSTGRES_PORT: [("10.10.1.12", *APPS)],
        PATRONI_PORT: [("10.10.1.12", *APPS, MON_1)],
    }
    assert cluster_ports(env, "db-2") == {
        ETCD_CLIENT_PORT: [(DB_1, "10.10.1.12", MON_1)],
        ETCD_PEER_PORT: [(DB_1, MON_1)],
        POSTGRES_PORT: [(DB_1, *APPS)],
        PATRONI_PORT: [(DB_1, *APPS, MON_1)],
    }
    assert cluster_ports(env, "backup-1") == {}
    # Redis stays on the first db host: the second opens only its member's exporter beside
    names = {h: [o.name for o in openings(env, env.host(h), ADMIN)] for h in ("db-1", "db-2")}
    assert {"redis", "redis-exporter", "postgres-exporter"} <= set(names["db-1"])
    assert "postgres-exporter" in names["db-2"]
    assert not {"redis", "redis-exporter"} & set(names["db-2"])
    # whichever member leads archives WAL: the repository takes both (and the backup host)
    [repository] = [o for o in openings(env, env.host("backup-1"), ADMIN)
                    if o.name == "pitr-repository"]
    assert repository.sources == (DB_1, "10.10.1.12", env.host("backup-1").address)


@pytest.mark.parametrize("env_name", ["prod", "staging", "local"])
def test_without_db_ha_no_cluster_port_opens(env_name: str) -> None:
    env = load_environment(env_name)
    assert env.db_ha is None
    for host in env.hosts:
        assert cluster_openings(env, host) == []
        ports = by_port(env, host.name)
        assert not (CLUSTER_PORTS - {POSTGRES_PORT}) & set(ports)
        # the single db host keeps its own rule: every app host
        if host.has_role("db") and env_name == "prod":
            assert ports[POSTGRES_PORT] == [APPS]


@pytest.mark.parametrize("host", ["app-1", "db-1", "mon-1", "backup-1"])
def test_every_host_with_db_ha_renders_a_ruleset_nft_accepts(host: str) -> None:
    env = with_db_ha()
    text = render_ruleset(env, env.host(host), ADMIN)
    check_ruleset(text, f"prod+db_ha/{host}")
    assert text.count("policy drop;") == 1


def test_the_member_rules_as_rendered_in_input_and_for_published_ports() -> None:
    env = with_db_ha()
    text = render_ruleset(env, env.host("db-1"), ADMIN)
    postgres = "ip saddr { 10.10.3.11, 10.10.0.11, 10.10.0.12, 10.10.0.13, 10.10.0.14 }"
    lines = [line.strip() for line in text.splitlines()]
    assert [line for line in lines if f"dport {POSTGRES_PORT} " in line] == [
        f"{postgres} tcp dport {POSTGRES_PORT} accept comment \"postgres: the other Patroni "
        "members (replication, pg_rewind); the routers on the app hosts\""]
    assert [line for line in lines if f"proto-dst {POSTGRES_PORT} " in line] == [
        f"{postgres} meta l4proto tcp ct original proto-dst {POSTGRES_PORT} accept "
        "comment \"postgres\""]
    peer = f"ip saddr {{ {BACKUP_1}, {MON_1} }} tcp dport {ETCD_PEER_PORT} accept"
    assert sum(line.startswith(peer) for line in lines) == 1
    app = render_ruleset(env, env.host("app-1"), ADMIN)
    assert (f"ip saddr {{ {MON_1} }} meta l4proto tcp ct original proto-dst "
            f"{ROUTER_METRICS_PORT} accept") in app
