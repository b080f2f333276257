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
from ops.catalog import load_environment
from ops.dbha.converge import converge
from ops.dbha.hosts import HostMembers
from tests.integration.conftest import Testbed
from tests.integration.release import release_copy
from tests.unit.dbha.cluster_data import ClusterSecrets

pytestmark = pytest.mark.integration

LOCAL = load_environment("local")
PORTS = "{ 2379, 2380, 5432, 8008 }"
HOLE = "it-dbha-stage"
# (Docker makes the member's pgBackRest directory, its mount's source, where none was: empty)
REMOVE = ("docker rm -f etcd patroni db-router it-dbha-writer >/dev/null 2>&1; "
          "rm -rf /var/lib/superapp/etcd /var/lib/superapp/patroni /opt/superapp/dbha "
          "/opt/superapp/compose/dbha.yml /tmp/it-dbha; "
          "rmdir /etc/superapp/pgbackrest 2>/dev/null; true")


class SshRemote:
    """ops.host.remote's `Remote` over the testbed's SSH (as pyinfra's connection would be)."""

    def __init__(self, testbed: Testbed, name: str):
        self.testbed, self.name, self.host = testbed, name, testbed.host(name)

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        res = subprocess.run(self.testbed.ssh_argv(self.host, command), capture_output=True,
                             text=True, timeout=timeout or 300)
        return res.returncode == 0, res.stdout, res.stderr

    def put(self, content: bytes, path: str) -> bool:
        res = subprocess.run(self.testbed.ssh_argv(
            self.host, f"umask 077 && cat > {shlex.quote(path)}"), input=content,
            capture_output=True, timeout=60)
        return res.returncode == 0

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        return self.run(command, timeout)


def clustered(tmp_path: Path, **changes):
    hosts = [{**h, "roles": [r for r in h["roles"] if r != "db"]
              + (["db"] if h["name"] in ("host2", "host3") else [])}
             for h in LOCAL.settings["hosts"][:3]]
    # a stanza of its own: whatever this cluster archives never mixes with the single
    # PostgreSQL's (the stage writes no pgbackrest.conf here anyway: that is the pitr unit's)
    pitr = {**LOCAL.settings["pitr"], "stanza": "itstage"}
    cluster = {"scope": "itstage", "members": ["host2", "host3"],
               "etcd": ["host1", "host2", "host3"], "replication": "synchronous",
               "ttl_seconds": 20, "loop_wait_seconds": 2, "retry_timeout_seconds": 4, **changes}
    tree = release_copy(tmp_path, {"hosts": repr(hosts), "db_ha": repr(cluster),
                                   "pitr": repr(pitr)})
    return load_environment("local", root=tree)


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
    for name in names:
        testbed.ssh(testbed.host(name), REMOVE + "; " + nft_hole(False) + "; " + nft_hole(True))
    yield {name: SshRemote(testbed, name) for name in names}
    for name in names:
        testbed.ssh(testbed.host(name), REMOVE + "; " + nft_hole(False), check=False)


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


def test_the_stage_starts_the_cluster_then_recreates_members_one_at_a_time_under_writes(
        testbed: Testbed, hosts, tmp_path: Path) -> None:
    environment = clustered(tmp_path / "first")
    secrets = ClusterSecrets(environment)
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
