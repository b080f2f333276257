"""The whole fleet on the database cluster, through deploy.py, on the testbed's hosts.

1. The testbed's release with `db_ha` (host2 and host3 the db hosts, etcd on host1-3; a
   pgBackRest stanza and a cluster scope of their own): the deploy opens the cluster's ports
   on its hosts, starts etcd, Patroni and a router on every app host, provisions the roles and
   databases on the leader, then rolls every host: the services' DATABASE_URL through their
   host's router, Redis on host2, the dumps on host2 from its own member, pgBackRest set up on
   the leader. Moving a running fleet to a new cluster does not move its data (the runbook's
   restore does): this step counts nothing.
2. A release on that fleet (food v2: its migrations run through the router), under load
   through Traefik on every app host, with a new PostgreSQL connection and a new Redis
   connection per request: not one request fails, and the cluster stage never runs (no file
   of the cluster changed).
3. The testbed's own release again, whatever happened: the services back on host1's single
   PostgreSQL (untouched meanwhile), then every container and file the cluster's release
   left and the testbed's does not render is removed.

`make test` runs this module last (marker `whole_fleet`): it changes the shape of the fleet
every other test runs on.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from ops.dbha.hosts import HostMembers
from ops.render import PlaceholderSecrets, render_host
from ops.render.files import TEXTFILE_DIR
from tests.integration.clustered import LOCAL, SshRemote, clustered
from tests.integration.conftest import REPO, Testbed
from tests.integration.release import deploy, output
from tests.integration.test_redis_acl import service_get
from tests.integration.test_rotation import BackendLoad

pytestmark = [pytest.mark.integration, pytest.mark.whole_fleet]

SERVICE = "food"
# what the cluster's release runs that the testbed's does not: its containers, and data
DATA = ("/var/lib/superapp/etcd", "/var/lib/superapp/patroni", "/opt/superapp/dbha")
MEMBERS = ("host2", "host3")


def bootstrap_secrets(tree: Path) -> None:
    """The cluster's secrets in Vault (its logins, etcd's CA and certificates), made by the
    bootstrap as for any environment; the testbed's own secrets are left as they are."""
    res = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "ops.secrets.bootstrap",
                          "local"], cwd=tree, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]


def leftovers(environment, host: str) -> list[str]:
    """Files the cluster's release renders on `host` that the testbed's does not."""
    ours = {f.path for f in render_host(LOCAL, host, PlaceholderSecrets())}
    return sorted(f.path for f in render_host(environment, host, PlaceholderSecrets())
                  if f.path not in ours)


def images(testbed: Testbed, service: str) -> set[str]:
    """The image tags (`v1`...) `service`'s containers run on every app host."""
    out = "".join(testbed.ssh(h, f"docker ps --filter label=superapp.service={service} "
                                 "--format '{{.Image}}'").stdout
                  for h in testbed.hosts if "app" in h.roles)
    return {ref.rsplit("/", 1)[-1].split("@")[0].partition(":")[2] for ref in out.split()}


def clean_up(testbed: Testbed, environment) -> None:
    """Stop and remove what the cluster's release started and wrote, host by host; the
    testbed's release has been deployed again before, so nothing of its own is touched."""
    for host in (h.name for h in testbed.hosts[:3]):
        paths = leftovers(environment, host)
        composes = [p for p in paths if p.startswith("/opt/superapp/compose/")]
        # their directories too, when nothing of the testbed's is left in them
        parents = sorted({p.rsplit("/", 1)[0] for p in paths} - {"/etc/cron.d"},
                         key=len, reverse=True)
        script = "; ".join([
            *(f"docker compose -f {shlex.quote(p)} down --remove-orphans >/dev/null 2>&1"
              for p in composes),
            f"rm -rf {' '.join(shlex.quote(p) for p in [*paths, *DATA])}",
            f"rmdir --ignore-fail-on-non-empty {' '.join(map(shlex.quote, parents))}",
            *([f"rm -rf /var/backups/superapp /var/lib/superapp/redis "
               f"{TEXTFILE_DIR}/superapp_backup_*.prom {TEXTFILE_DIR}/superapp_pitr.prom"]
              if host in MEMBERS else []),
            "true"])
        testbed.ssh(testbed.host(host), script, check=False, timeout=300)


@pytest.mark.timeout(3000)  # three deploys of the whole fleet
def test_a_fleet_moves_to_the_cluster_then_a_release_rolls_on_it_under_load(
        testbed: Testbed, deployed, tmp_path: Path) -> None:
    # a stanza of this run's own: a cluster is a new database system to pgBackRest
    stanza = f"itha{secrets.token_hex(3)}"
    environment = clustered(tmp_path / "cluster", stanza, scope="itha")
    bootstrap_secrets(tmp_path / "cluster")
    hosts = {h.name: SshRemote(testbed, h.name) for h in testbed.hosts[:3]}
    try:
        # 1. the fleet moves to the cluster
        t0 = time.monotonic()
        res = deploy(tmp_path / "cluster", timeout=1800)
        text = output(res)
        assert res.returncode == 0, text[-6000:]
        took = time.monotonic() - t0
        assert "--> the database cluster: " in text
        assert "provisioning roles and databases on the leader" in text
        state = HostMembers(environment.db_ha, {n: hosts[n] for n in MEMBERS}).state()
        assert state.deploy_refusal("itha", list(MEMBERS)) is None
        leader = state.leader.name
        print(f"\n[dbha deploy] the fleet moved to the cluster in {took:.0f} s; leader {leader}",
              flush=True)
        # every app host's food reaches its database through its router, and Redis on host2
        app_hosts = [h for h in testbed.hosts if "app" in h.roles]
        for h in app_hosts:
            status, body = service_get(h.address, SERVICE, "/api/db-session")
            assert status == 200 and body.get("session_user"), (h.name, status, body)
            status, body = service_get(h.address, SERVICE, "/api/rate-limited")
            assert status == 200, (h.name, status, body)
        assert testbed.ssh(testbed.host("host1"), "docker ps -q --filter name=^redis$",
                           check=False).stdout.strip(), "the testbed's Redis is gone"
        assert testbed.ssh(testbed.host("host2"), "docker ps -q --filter name=^redis$"
                           ).stdout.strip(), "no Redis on the cluster's first db host"
        for h in MEMBERS:  # no single PostgreSQL beside a member
            assert not testbed.ssh(testbed.host(h), "docker ps -aq --filter name=^postgres$"
                                   ).stdout.strip(), h
        # the dumps on host2, from its own member; pgBackRest reports on the leader only
        assert testbed.ssh(testbed.host("host2"), f"ls /var/backups/superapp/{SERVICE}/"
                           ).stdout.count(".manifest") >= 1
        reports = {h: testbed.ssh(testbed.host(h), f"test -s {TEXTFILE_DIR}/superapp_pitr.prom",
                                  check=False).returncode == 0 for h in MEMBERS}
        assert reports == {h: h == leader for h in MEMBERS}, reports

        # a deploy while a member is down (a failover not finished) is refused, unchanged
        clustered(tmp_path / "v2", stanza, {"image_tags": {SERVICE: "v2"}}, scope="itha")
        replica = next(h for h in MEMBERS if h != leader)
        testbed.ssh(testbed.host(replica), "docker stop -t 30 patroni >/dev/null")
        try:
            res = deploy(tmp_path / "v2", timeout=900)
        finally:
            testbed.ssh(testbed.host(replica), "docker start patroni >/dev/null")
        text = output(res)
        assert res.returncode != 0
        # (Patroni reports a member it stopped as `stopped`; one whose key expired not at all)
        assert f"refusing to deploy: the database cluster itha: member {replica} " in text, \
            text[-3000:]
        assert "no host was changed" in text
        assert images(testbed, SERVICE) == {"v1"}, "a host changed after the refusal"
        members = HostMembers(environment.db_ha, {n: hosts[n] for n in MEMBERS})
        deadline = time.monotonic() + 120
        while members.state().deploy_refusal("itha", list(MEMBERS)) is not None:
            assert time.monotonic() < deadline, "the member did not rejoin"
            time.sleep(2)

        # 2. a release on the cluster under load: not one request fails
        loads = [BackendLoad(testbed, SERVICE, "/api/db-session"),
                 BackendLoad(testbed, SERVICE, "/api/rate-limited")]
        for load in loads:
            load.start()
        try:
            time.sleep(2)
            res = deploy(tmp_path / "v2", timeout=1200)
            time.sleep(2)
        finally:
            for load in loads:
                load.stop.set()
            for load in loads:
                load.join(15)
        text = output(res)
        assert res.returncode == 0, text[-6000:]
        print(f"[dbha deploy] {SERVICE} v2 on the cluster under load: "
              + ", ".join(f"{load.path} {dict(load.results)}" for load in loads), flush=True)
        assert "--> the database cluster: " not in text  # no file of the cluster changed
        assert f"{SERVICE}: running migrations once" in text
        assert images(testbed, SERVICE) == {"v2"}
        for load in loads:
            assert load.failures == [] and load.results[200] > 100, (
                load.path, load.results, load.failures[:10])
    finally:
        # 3. the testbed's release again, then what the cluster's left
        res = deploy(REPO, timeout=1800)
        clean_up(testbed, environment)
        assert res.returncode == 0, output(res)[-6000:]
    for h in (h for h in testbed.hosts if "app" in h.roles):
        status, body = service_get(h.address, SERVICE, "/api/db-session")
        assert status == 200, (h.name, status, body)
