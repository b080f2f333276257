"""The cluster stage (ops.dbha.converge) on the testbed's hosts, through SSH as a deploy reaches
them: a first start of etcd on host1-3, Patroni on host2 and host3 and a router on every app
host, from the files ops/render/dbha.py renders; a second run changes nothing; a change to
both members' files recreates them one at a time under writes through host1's router, the
leader last after a switchover, and counts what failed and what was lost.

The environment is the testbed's own with `db_ha` (host2 and host3 the db hosts, a pgBackRest
stanza of its own, so nothing it archives could mix with the single PostgreSQL's). Only the
cluster is started: the services keep the single PostgreSQL on host1, which is untouched
(Patroni publishes on host2's and host3's addresses). The host firewalls of the deployed
release do not open the cluster's ports (the environment's own rules for them are tested in
tests/unit/firewall): the test opens them between the testbed's hosts and from each host's
containers, and removes those rules, the containers, their files and data afterwards,
whatever the outcome.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from bench.dbha_cluster import WRITER_SCRIPT, Writes
from ops import yamlio
from ops.dbha import commands
from ops.dbha.converge import converge
from ops.dbha.hosts import HostMembers
from ops.dbha.stage import cluster_stage
from ops.host.state import STATE_SCRIPT, parse_host_state
from ops.render.databases import PROVISION_DIR, database_logins
from ops.rollout.plan import plan_host
from tests.integration.clustered import LOCAL, SshRemote, clustered
from tests.integration.conftest import Testbed
from tests.unit.dbha.cluster_data import ClusterSecrets

pytestmark = pytest.mark.integration

PORTS = "{ 2379, 2380, 5432, 8008 }"
HOLE = "it-dbha-stage"
# (Docker makes the member's pgBackRest directory, its mount's source, where none was: empty)
REMOVE = ("docker rm -f etcd patroni db-router it-dbha-writer >/dev/null 2>&1; "
          "rm -rf /var/lib/superapp/etcd /var/lib/superapp/patroni /opt/superapp/dbha "
          "/opt/superapp/compose/dbha.yml /tmp/it-dbha; "
          "rmdir /etc/superapp/pgbackrest 2>/dev/null; true")
# the provisioning files the stage writes on the members (host2 and host3 only: host1 holds the
# single PostgreSQL's own)
REMOVE_PROVISIONING = f"rm -rf {PROVISION_DIR}"
MEMBERS = ("host2", "host3")


def nft_hole(add: bool) -> str:
    """The cluster's ports between the testbed's hosts (forwarded to the containers, chain
    `published`) and from this host's own containers to its address (docker-proxy, `input`),
    as the environment's own ruleset opens them; or every such rule removed."""
    if add:
        rule = f"meta l4proto tcp ct original proto-dst {PORTS} accept comment {HOLE}"
        return ("nft list chain inet superapp published >/dev/null 2>&1 || exit 0; "
                f"nft insert rule inet superapp published ip saddr 10.231.0.0/24 {rule} && "
                f"nft insert rule inet superapp input ip saddr 172.30.0.0/24 tcp dport {PORTS} "
                f"accept comment {HOLE}")
    return ("for c in published input; do "
            f"for h in $(nft -a list chain inet superapp $c 2>/dev/null | grep {HOLE} | "
            "sed 's/.*# handle //'); do nft delete rule inet superapp $c handle $h; done; "
            "done; true")


@pytest.fixture(scope="module")
def hosts(testbed: Testbed, deployed):
    names = [h.name for h in testbed.hosts][:3]
    def remove(name: str) -> str:
        return REMOVE + (f"; {REMOVE_PROVISIONING}" if name in MEMBERS else "")

    for name in names:
        testbed.ssh(testbed.host(name), remove(name) + "; " + nft_hole(False) + "; "
                    + nft_hole(True))
    yield {name: SshRemote(testbed, name) for name in names}
    for name in names:
        testbed.ssh(testbed.host(name), remove(name) + "; " + nft_hole(False), check=False)


def sh(testbed: Testbed, host: str, command: str, stdin: str = "") -> str:
    res = subprocess.run(testbed.ssh_argv(testbed.host(host), command), input=stdin,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{host}: {command}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def through_router(testbed: Testbed, environment, secrets, sql: str) -> str:
    """SQL as the cluster's superuser through host1's router, its password in a 0600 file."""
    password = secrets.get(environment.dbha_refs()["superuser"])
    sh(testbed, "host1", "mkdir -p /tmp/it-dbha && umask 077 && cat > /tmp/it-dbha/pg.env",
       stdin=f"PGPASSWORD={password}\n")
    return sh(testbed, "host1", f"docker run --rm --network superapp --env-file "
                                f"/tmp/it-dbha/pg.env {environment.infra_image('patroni')} "
                                f"psql -h db-router -U postgres -d postgres -Atc "
                                f"{shlex.quote(sql)}").strip()


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    """The cluster's logins, made once: both tests run the same cluster (a member's password
    is set when it bootstraps; new ones would lock its replicas out)."""
    return ClusterSecrets(clustered(tmp_path_factory.mktemp("secrets")))


def test_the_stage_starts_the_cluster_then_recreates_members_one_at_a_time_under_writes(
        testbed: Testbed, hosts, secrets, tmp_path: Path) -> None:
    environment = clustered(tmp_path / "first")
    cluster = environment.db_ha
    t0 = time.monotonic()
    steps = converge(environment, hosts, secrets)
    print(f"\n[dbha stage] first start in {time.monotonic() - t0:.1f} s: "
          + "; ".join(s.line() for s in steps), flush=True)
    assert [(s.part, s.hosts) for s in steps] == [
        ("etcd", ("host1", "host2", "host3")), ("patroni", ("host2", "host3")),
        ("router", ("host1",)), ("router", ("host2",)), ("router", ("host3",))]
    members = HostMembers(cluster, {n: hosts[n] for n in ("host2", "host3")})
    state = members.state()
    assert state.deploy_refusal(cluster.scope, ["host2", "host3"]) is None
    assert {m.role for m in state.members} == {"leader", "sync_standby"}
    # each part as its image's user; the services' single PostgreSQL untouched on host1
    uids = LOCAL.settings["data_uids"]
    assert sh(testbed, "host1", "docker inspect -f '{{.Config.User}}' etcd").strip() == \
        f"{uids['etcd']}:{uids['etcd']}"
    assert sh(testbed, "host2", "docker inspect -f '{{.Config.User}}' db-router").strip() == \
        f"{uids['haproxy']}:{uids['haproxy']}"
    assert "running" in sh(testbed, "host1", "docker inspect -f '{{.State.Status}}' postgres")

    # through every host's router, to the leader
    through_router(testbed, environment, secrets,
                   "CREATE TABLE ha_probe (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    for host in ("host2", "host3"):
        assert sh(testbed, host, "docker exec db-router busybox wget -q -O - "
                                 "http://127.0.0.1:8404/metrics | grep -c "
                                 "'haproxy_backend_active_servers{proxy=\"primary\"} 1'"
                  ).strip() == "1"

    # a second run with the same files changes nothing
    ids = {h: sh(testbed, h, "docker ps -q --no-trunc --filter "
                             "label=com.docker.compose.project=sa-dbha | sort") for h in hosts}
    assert converge(environment, hosts, secrets) == []
    assert ids == {h: sh(testbed, h, "docker ps -q --no-trunc --filter "
                                     "label=com.docker.compose.project=sa-dbha | sort")
                   for h in hosts}

    # both members' files change (the bootstrap settings in patroni.yml): one at a time,
    # the replica first, the leader last after a switchover, under writes through host1
    leader = state.leader.name
    sh(testbed, "host1", "cat > /tmp/it-dbha/w.py && chmod 644 /tmp/it-dbha/w.py",
       stdin=WRITER_SCRIPT)
    sh(testbed, "host1", "docker run -d --name it-dbha-writer --network superapp --env-file "
                         "/tmp/it-dbha/pg.env -e ROUTER=db-router -v /tmp/it-dbha/w.py:/w.py:ro "
                         f"{environment.infra_image('patroni')} python3 /w.py 75 >/dev/null")
    time.sleep(3)
    changed = clustered(tmp_path / "changed", ttl_seconds=21)
    t0 = time.monotonic()
    steps = converge(changed, hosts, secrets, timeout=240)
    took = time.monotonic() - t0
    assert [(s.hosts, s.switchover_first) for s in steps] == [
        ((next(h for h in ("host2", "host3") if h != leader),), False), ((leader,), True)]
    sh(testbed, "host1", "docker wait it-dbha-writer >/dev/null")
    doc = json.loads(sh(testbed, "host1", "docker logs it-dbha-writer 2>/dev/null")
                     .strip().splitlines()[-1])
    writes = Writes(acked=[(i, t) for i, t in doc["acked"]], failed=doc["failed"])
    have = {int(x) for x in through_router(testbed, environment, secrets,
                                           "SELECT id FROM ha_probe").split()}
    lost = sum(1 for i, _ in writes.acked if i not in have)
    after = members.state()
    print(f"[dbha stage] members recreated in {took:.1f} s: {len(writes.acked)} writes "
          f"acknowledged, {len(writes.failed)} failed attempts, RTO "
          f"{writes.outage_seconds:.1f} s, RPO {lost} rows; leader {leader} -> "
          f"{after.leader.name if after.leader else None}", flush=True)
    assert lost == 0
    assert after.deploy_refusal(cluster.scope, ["host2", "host3"]) is None
    assert after.leader is not None and after.leader.name != leader
    assert len(writes.acked) > 500


def test_the_deploys_cluster_stage_provisions_on_the_leader_for_services_behind_routers(
        testbed: Testbed, hosts, secrets, tmp_path: Path) -> None:
    """What deploy.py runs before any host rolls (ops/dbha/stage.py), from the plans of the
    hosts as they are: the cluster as the test above left it (its files, so nothing is
    recreated; a first start if this test runs alone), then the release's roles and
    databases on whichever member leads. A service's login then reaches its database through
    host1's router, and the next plans hold no cluster file: nothing to do again."""
    environment = clustered(tmp_path / "stage", ttl_seconds=21)

    def plans():
        """(Without their firewall: the hosts keep the deployed release's, with this test's
        openings; the stage's own firewall step is test_dbha_deploy.py's.)"""
        states = {h: parse_host_state(sh(testbed, h, STATE_SCRIPT).splitlines()) for h in hosts}
        out = [plan_host(environment, h, secrets, states[h]) for h in hosts]
        for p in out:
            p.infra_files = [f for f in p.infra_files if f.unit != "firewall"]
            p.infra_units = [u for u in p.infra_units if u != "firewall"]
        return out

    before = plans()
    assert {p.host for p in before if any(f.unit == "databases" for f in p.cluster_files)} \
        == set(MEMBERS)
    t0 = time.monotonic()
    assert cluster_stage(environment, before, hosts, secrets)
    took = time.monotonic() - t0
    members = HostMembers(environment.db_ha, {n: hosts[n] for n in MEMBERS})
    leader = members.state().leader.name
    # the lease's new TTL (the test above recreated the members with it in their files,
    # which Patroni reads only when a cluster is created) went through patronictl edit-config
    code, shown = members.run(leader, commands.show_config())
    assert code == 0 and yamlio.load(shown)["ttl"] == 21, shown
    login = next(x for x in database_logins(environment, secrets) if x.database == "payments")
    sh(testbed, "host1", "mkdir -p /tmp/it-dbha && umask 077 && cat > /tmp/it-dbha/svc.env",
       stdin=f"PGPASSWORD={login.password}\n")
    sql = ("CREATE TABLE IF NOT EXISTS it_stage (n int); INSERT INTO it_stage VALUES (1); "
           "SELECT current_user || ' ' || current_database() || ' ' || pg_is_in_recovery()")
    out = sh(testbed, "host1", f"docker run --rm --network superapp --env-file "
                               f"/tmp/it-dbha/svc.env {environment.infra_image('patroni')} "
                               f"psql -X -h db-router -U {shlex.quote(login.login)} -d payments "
                               f"-Atq -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}").strip()
    print(f"\n[dbha stage] provisioned on {leader} in {took:.1f} s (stage included); "
          f"payments' login through host1's router: {out}", flush=True)
    assert out == f"{login.login} payments false"
    after = plans()
    assert [p.cluster_files for p in after] == [[] for _ in after], \
        [(p.host, [f.path for f in p.cluster_files]) for p in after]
    assert cluster_stage(environment, after, hosts, secrets) is False
