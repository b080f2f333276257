"""The edge on the testbed (invariant 13): `<route>/internal/...` and `<route>/admin/...` are
never public, and a service answers on its internal name (`http://<service>.internal:8081`)
through the host's Traefik, from the controller (Host header) and from inside a caller's
container (the name its PAYMENTS_INTERNAL_URL holds, resolved by Docker DNS).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from ops.catalog import load_environment
from ops.render.compose import TRAEFIK_PORTS, internal_host, internal_url, internal_url_env

from .conftest import Testbed, q

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
PAYMENTS = ENV.services["payments"]


def get(url: str, host_header: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host_header})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def app_hosts(testbed: Testbed) -> list:
    hosts = [h for h in testbed.hosts if "app" in h.roles]
    assert hosts, testbed.status
    return hosts


@pytest.mark.parametrize("path", ["/payments/internal/anything", "/taxi/admin/anything"])
def test_internal_and_admin_apis_answer_404_on_the_public_entrypoint(deployed, testbed, path):
    for h in app_hosts(testbed):
        status, body = get(f"http://{h.address}{path}", DOMAIN)
        assert status == 404, (h.name, path, status, body)


def test_an_encoded_slash_cannot_slip_past_the_deny_routers(deployed, testbed):
    for h in app_hosts(testbed):
        status, body = get(f"http://{h.address}/payments/internal%2Fanything", DOMAIN)
        assert status == 400, (h.name, status, body)


def test_payments_answers_its_health_on_the_internal_url(deployed, testbed):
    for h in app_hosts(testbed):
        status, body = get(
            f"http://{h.address}:{TRAEFIK_PORTS['internal']}{PAYMENTS.health_path}",
            internal_host(PAYMENTS))
        assert status == 200, (h.name, status, body)
        assert json.loads(body)["service"] == "payments"


def test_a_caller_reaches_payments_by_the_internal_url_it_is_given(deployed, testbed):
    var = internal_url_env(PAYMENTS)
    for h in app_hosts(testbed):
        ids = testbed.ssh(h, q("docker", "ps", "-q", "--filter", "label=superapp.service=taxi",
                               "--filter", "label=superapp.role=serve")).stdout.split()
        assert len(ids) == 1, (h.name, ids)
        given = testbed.ssh(h, q("docker", "exec", ids[0], "printenv", var)).stdout.strip()
        assert given == internal_url(PAYMENTS), (h.name, given)
        # `$PAYMENTS_INTERNAL_URL` is expanded by the container's shell, not the host's
        health = testbed.ssh(h, q("docker", "exec", ids[0], "sh", "-c",
                                  f'busybox wget -q -O - "${var}{PAYMENTS.health_path}"'))
        assert json.loads(health.stdout)["service"] == "payments", (h.name, health.stdout)
