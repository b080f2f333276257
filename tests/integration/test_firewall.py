"""The host firewall on the testbed (ops/firewall): every host runs its role's nftables table,
a testbed address that is no app host reaches none of the data, exporter or internal ports
(Docker's own rules publish them: our table still drops them), app hosts reach PostgreSQL and
Redis, and a ruleset that would shut the controller out reverts by itself, under load, with no
failed request.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from bench.load import Load, Target
from ops.catalog import load_environment
from ops.firewall.ruleset import TABLE
from ops.render.compose import (
    NODE_EXPORTER_PORT,
    POSTGRES_EXPORTER_PORT,
    POSTGRES_PORT,
    PROMETHEUS_PORT,
    REDIS_EXPORTER_PORT,
    REDIS_PORT,
    TRAEFIK_PORTS,
)

from .conftest import Testbed, q
from .release import deploy, output, release_copy

pytestmark = pytest.mark.integration

ENV = load_environment("local")
OUTSIDER = "10.231.0.99"  # on the testbed's bridge, but no host of the inventory
NETNS = "safw-outsider"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def outsider(testbed: Testbed) -> Iterator[str]:
    """A network namespace on the testbed's bridge at OUTSIDER: another machine of the LAN."""
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "link", "del", "safw-out0", check=False)
    sh("ip", "netns", "add", NETNS)
    try:
        sh("ip", "link", "add", "safw-out0", "type", "veth", "peer", "name", "safw-out1")
        sh("ip", "link", "set", "safw-out1", "netns", NETNS)
        sh("ip", "link", "set", "safw-out0", "master", "sa-br0", "up")
        inside = ("ip", "netns", "exec", NETNS)
        sh(*inside, "ip", "addr", "add", f"{OUTSIDER}/24", "dev", "safw-out1")
        sh(*inside, "ip", "link", "set", "safw-out1", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        yield NETNS
    finally:
        sh("ip", "netns", "del", NETNS, check=False)
        sh("ip", "link", "del", "safw-out0", check=False)


def reaches_from_outsider(address: str, port: int) -> bool:
    res = sh("ip", "netns", "exec", NETNS, "timeout", "3", "bash", "-c",
             f"</dev/tcp/{address}/{port}", check=False)
    return res.returncode == 0


def reaches_from(testbed: Testbed, host, address: str, port: int) -> bool:
    res = testbed.ssh(host, q("timeout", "3", "bash", "-c", f"</dev/tcp/{address}/{port}"),
                      check=False)
    return res.returncode == 0


def table(testbed: Testbed, host) -> str:
    return testbed.ssh(host, q("nft", "list", "table", "inet", TABLE)).stdout


def test_every_host_runs_its_roles_table(deployed, testbed):
    for h in testbed.hosts:
        text = table(testbed, h)
        assert "policy drop" in text and "ct original proto-dst" in text, h.name
    db = testbed.host("host1")
    assert f"dport {POSTGRES_PORT}" in table(testbed, db)
    assert f"dport {POSTGRES_PORT}" not in table(testbed, testbed.host("host2"))


def test_an_outsider_reaches_no_data_exporter_or_internal_port(deployed, testbed, outsider):
    db, app, monitoring = (testbed.host(n) for n in ("host1", "host2", "host3"))
    # on the network: it reaches the controller's registry (no firewall there)
    assert reaches_from_outsider(ENV.settings["registry"].split(":")[0],
                                 int(ENV.settings["registry"].split(":")[1])), \
        "the outsider is not on the testbed's network"
    # Docker publishes these on the host's address: its own iptables rules accept them
    published = testbed.ssh(db, "docker ps --format '{{.Ports}}'").stdout
    assert f"{db.address}:{POSTGRES_PORT}->" in published, published
    closed = [(db.address, POSTGRES_PORT), (db.address, REDIS_PORT),
              (db.address, POSTGRES_EXPORTER_PORT), (db.address, REDIS_EXPORTER_PORT),
              (app.address, NODE_EXPORTER_PORT), (app.address, TRAEFIK_PORTS["internal"]),
              (app.address, TRAEFIK_PORTS["traefik"]), (monitoring.address, PROMETHEUS_PORT),
              (app.address, 22), (app.address, TRAEFIK_PORTS["web"]),
              (app.address, TRAEFIK_PORTS["websecure"])]
    open_ = [f"{a}:{p}" for a, p in closed if reaches_from_outsider(a, p)]
    assert open_ == [], f"reachable from {OUTSIDER}: {open_}"


def test_app_hosts_reach_postgres_and_redis_and_nobody_else_does(deployed, testbed):
    db, app = testbed.host("host1"), testbed.host("host2")
    assert reaches_from(testbed, app, db.address, POSTGRES_PORT)
    assert reaches_from(testbed, app, db.address, REDIS_PORT)
    assert reaches_from(testbed, app, app.address, TRAEFIK_PORTS["internal"])
    # the controller is the operators' machine and the load balancer: SSH and port 80 only
    assert sh("timeout", "3", "bash", "-c", f"</dev/tcp/{db.address}/{POSTGRES_PORT}",
              check=False).returncode != 0
    assert sh("timeout", "3", "bash", "-c", f"</dev/tcp/{app.address}/80",
              check=False).returncode == 0


def test_a_ruleset_that_shuts_the_controller_out_reverts_by_itself(deployed, testbed,
                                                                   tmp_path):
    """admin_sources without the controller: host1 loads the new table, a new SSH connection
    fails, the run stops on host1 and the previous table comes back by itself; host2 and host3
    are not touched; public traffic meanwhile loses nothing. The next good run applies again."""
    hosts = [h for h in testbed.hosts if "app" in h.roles]
    before = {h.name: table(testbed, h) for h in testbed.hosts}
    tree = release_copy(tmp_path / "locked-out", {"admin_sources": '["10.231.0.98"]'})
    targets = [Target(h.address, ENV.settings["api_domains"][0], ("/food/api/ping",))
               for h in hosts]
    with Load(targets, rate=10, workers=2) as load:
        res = deploy(tree)
    out = output(res)
    print(f"requests during the locked-out deploy: {load.report.total}, "
          f"failed: {len(load.report.failed)} {load.report.failures_by_kind()}")
    assert res.returncode != 0, out[-3000:]
    assert ("host1: the new firewall shut this controller out (a new SSH connection failed"
            in out), out[-3000:]
    assert "it reverted to the previous ruleset" in out
    assert "Not touched: host2, host3" in out
    assert {h.name: table(testbed, h) for h in testbed.hosts} == before
    assert load.report.total > 0 and load.report.failed == []
    # the host's record still names the confirmed ruleset it runs: the good release has
    # nothing to change, and the rejected candidate is gone
    again = deploy(release_copy(tmp_path / "good"))
    assert again.returncode == 0, output(again)[-3000:]
    assert "nothing to change on any host" in output(again)
    state = testbed.ssh(testbed.host("host1"), "ls /var/lib/superapp/firewall").stdout.split()
    assert "reverted" in state and "candidate.nft" not in state, state
    assert {h.name: table(testbed, h) for h in testbed.hosts} == before
