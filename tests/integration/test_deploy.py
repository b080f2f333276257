"""`pyinfra -y inventories/local.py deploy.py` against the testbed: the whole bundle comes up,
Prometheus scrapes every service on every host, Traefik routes to each, a second run is a no-op.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import hvac
import pytest

from ops.catalog import load_environment

from .conftest import REPO, Testbed
from .release import deploy, output

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]


def get(url: str, host_header: str = DOMAIN, headers: dict | None = None):
    req = urllib.request.Request(url, headers={"Host": host_header, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def containers(testbed: Testbed) -> dict[str, str]:
    """host/name -> container id + start time, for every container on every host."""
    out = {}
    for h in testbed.hosts:
        ids = testbed.ssh(h, "docker ps -q").stdout.split()
        if not ids:
            continue
        res = testbed.ssh(h, "docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}}' "
                             + " ".join(ids))
        for line in res.stdout.splitlines():
            name, cid, started = line.split()
            out[f"{h.name}{name}"] = f"{cid} {started}"
    return out


@pytest.fixture(scope="module")
def first_deploy(deployed):
    return deployed


def test_first_deploy_brings_up_every_service_on_every_app_host(first_deploy, testbed):
    for h in testbed.hosts:
        names = set(testbed.ssh(h, "docker ps --format '{{.Names}}'").stdout.split())
        for service in ENV.services_on(h.name):
            assert any(n in names for n in (service.container_name("a"),
                                            service.container_name("b"))), (h.name, service.name)
        assert ("traefik" in names) == ("app" in h.roles)
        assert ("postgres" in names) == ("db" in h.roles)
        assert ("prometheus" in names) == ("monitoring" in h.roles)


def test_second_deploy_changes_nothing(first_deploy, testbed):
    before = containers(testbed)
    res = deploy(REPO)
    assert res.returncode == 0, output(res)[-3000:]
    assert "nothing to change on any host" in output(res)
    assert containers(testbed) == before


def test_traefik_routes_every_service_on_every_app_host(first_deploy, testbed):
    for h in testbed.hosts:
        if "app" not in h.roles:
            continue
        for service in ENV.services_on(h.name):
            route = service.routes[0]
            status, body = get(f"http://{h.address}{route}/health")
            assert status == 200, (h.name, service.name, body)
            assert json.loads(body)["service"] == service.name
            # /metrics is for Prometheus on the internal entrypoint, never public
            status, _ = get(f"http://{h.address}{route}/metrics")
            assert status == 403, (h.name, service.name)


def test_services_see_the_client_address_only_through_the_trusted_proxy(first_deploy, testbed):
    h = testbed.hosts[0]
    route = ENV.services["commerce"].routes[0]
    status, body = get(f"http://{h.address}{route}/api/whoami")
    assert status == 200
    # the TCP peer is Traefik; the service trusts its X-Forwarded-For and sees the controller
    assert json.loads(body)["client_ip"] == "10.231.0.1"


def test_prometheus_reports_every_service_target_up(first_deploy, testbed):
    monitoring = next(h for h in testbed.hosts if "monitoring" in h.roles)
    want = {(s.name, h.name) for h in ENV.hosts for s in ENV.services_on(h.name)}
    deadline = time.time() + 120
    while True:
        with urllib.request.urlopen(f"http://{monitoring.address}:9090/api/v1/targets",
                                    timeout=5) as r:
            targets = json.loads(r.read())["data"]["activeTargets"]
        up = {(t["labels"].get("service"), t["labels"].get("host")) for t in targets
              if t["health"] == "up"}
        missing = want - up
        if not missing or time.time() > deadline:
            break
        time.sleep(3)
    assert not missing, f"targets not up: {sorted(missing)}"
    jobs_up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
    assert {"traefik", "node", "alertmanager"} <= jobs_up, jobs_up


def test_secret_files_are_root_0600_and_no_secret_is_in_a_world_readable_file(first_deploy,
                                                                              testbed):
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    values = set()
    for ref in ENV.all_secret_refs():
        data = client.secrets.kv.v2.read_secret_version(
            path=ref.path, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
        if ref.key in data and len(data[ref.key]) >= 12:
            values.add(data[ref.key])
    assert values
    for h in testbed.hosts:
        modes = testbed.ssh(h, "stat -c '%a %U %G %n' /etc/superapp/env/*.env").stdout
        for line in modes.splitlines():
            assert line.startswith("600 root root "), (h.name, line)
        readable = testbed.ssh(
            h, "find /opt/superapp /etc/cron.d -type f -perm -o=r -exec cat {} +").stdout
        leaked = [v for v in values if v in readable]
        assert not leaked, f"{h.name}: a secret value is in a world-readable file"


def test_demo_ends_with_a_url_answered_through_traefik(first_deploy):
    res = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "testbed/where_to_look.py")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "curl -H 'Host: api.superapp.test' http://10.231.0.11/payments/health" in res.stdout
    assert '-> 200 {"status":"ok","service":"payments"' in res.stdout
