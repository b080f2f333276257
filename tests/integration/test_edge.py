"""The edge on the testbed (invariant 13): `<route>/internal/...` and `<route>/admin/...` are
never public, and a service answers on its internal name (`http://<service>.internal:8081`)
through the host's Traefik, from the controller (Host header) and from inside a caller's
container (the name its PAYMENTS_INTERNAL_URL holds, resolved by Docker DNS).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest

from ops.catalog import load_environment
from ops.host.commands import traefik_metrics
from ops.render.compose import TRAEFIK_PORTS, internal_host, internal_url, internal_url_env
from ops.rollout.swap import TRAEFIK_METRICS_URL

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
    """From another app host (the firewall opens the internal entrypoint to app hosts only)."""
    hosts = app_hosts(testbed)
    for h, caller in zip(hosts, hosts[1:] + hosts[:1], strict=True):
        body = testbed.ssh(caller, q(
            "curl", "-sf", "--max-time", "10", "-H", f"Host: {internal_host(PAYMENTS)}",
            f"http://{h.address}:{TRAEFIK_PORTS['internal']}{PAYMENTS.health_path}")).stdout
        assert json.loads(body)["service"] == "payments", (h.name, caller.name, body)


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


def request(address: str, path: str, method: str = "GET", body: bytes | None = None,
            client: str | None = None) -> tuple[int, dict[str, str], str]:
    """One request to a host's public entrypoint; `client` is the address the load balancer
    (the controller, an upstream proxy of the testbed) says it saw (X-Forwarded-For)."""
    headers = {"Host": DOMAIN, **({"X-Forwarded-For": client} if client else {})}
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_public_answers_carry_the_security_headers(deployed, testbed):
    for h in app_hosts(testbed):
        status, headers, _ = request(h.address, "/taxi/api/ping")
        assert status == 200, h.name
        assert headers.get("X-Content-Type-Options") == "nosniff", (h.name, headers)
        assert headers.get("X-Frame-Options") == "DENY", (h.name, headers)
        assert headers.get("Referrer-Policy") == "no-referrer", (h.name, headers)
        assert headers.get("Content-Security-Policy") == \
            "default-src 'none'; frame-ancestors 'none'", (h.name, headers)


def test_a_body_over_the_service_limit_gets_413_before_the_service(deployed, testbed):
    """payments takes 64 KiB (its catalog `edge`), taxi the group_data default (1 MiB)."""
    h = app_hosts(testbed)[0]
    limit = ENV.edge_limits(PAYMENTS)["max_body_bytes"]
    assert limit == 65536
    status, _, body = request(h.address, "/payments/api/echo", "POST", b"x" * (limit - 1024))
    assert status == 200 and json.loads(body)["received_bytes"] == limit - 1024, body
    status, _, body = request(h.address, "/payments/api/echo", "POST", b"x" * (limit + 1))
    assert status == 413, (status, body)
    status, _, body = request(h.address, "/taxi/api/echo", "POST", b"x" * (limit + 1))
    assert status == 200 and json.loads(body)["received_bytes"] == limit + 1, body


def test_the_service_sees_the_client_behind_the_load_balancer_not_the_balancer(deployed,
                                                                              testbed):
    h = app_hosts(testbed)[0]
    status, _, body = request(h.address, "/commerce/api/whoami", client="198.51.100.7")
    assert status == 200 and json.loads(body)["client_ip"] == "198.51.100.7", body
    # from the monitoring host (the firewall lets its probes in; it is no upstream proxy):
    # its X-Forwarded-For is dropped by Traefik
    other = next(x for x in testbed.hosts if "monitoring" in x.roles and x != h)
    out = testbed.ssh(other, q("curl", "-s", "--max-time", "10", "-H", f"Host: {DOMAIN}", "-H",
                               "X-Forwarded-For: 198.51.100.66",
                               f"http://{h.address}/commerce/api/whoami")).stdout
    assert json.loads(out)["client_ip"] == other.address, out


def config_reloads(testbed: Testbed, host) -> int:
    """Traefik's count of applied configurations: a reload (a swap, an ACME renewal) builds
    every middleware anew, each client's rate-limit bucket full again."""
    metrics = testbed.ssh(host, traefik_metrics("traefik", TRAEFIK_METRICS_URL)).stdout
    return int(float(next(line.split()[-1] for line in metrics.splitlines()
                          if line.startswith("traefik_config_reloads_total"))))


def flood_once(h) -> tuple[Counter, Counter]:
    """One client (as the balancer reports it) sends as fast as 8 connections go for 3 s;
    another sends 5 requests a second meanwhile."""
    stop = threading.Event()
    flood: Counter = Counter()
    calm: Counter = Counter()
    lock = threading.Lock()

    def flooder() -> None:
        conn = http.client.HTTPConnection(h.address, 80, timeout=10)
        while not stop.is_set():
            conn.request("GET", "/food/api/ping",
                         headers={"Host": DOMAIN, "X-Forwarded-For": "198.51.100.10"})
            resp = conn.getresponse()
            resp.read()
            with lock:
                flood[resp.status] += 1

    threads = [threading.Thread(target=flooder, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        calm[request(h.address, "/food/api/ping", client="198.51.100.20")[0]] += 1
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    return flood, calm


def test_a_client_over_its_rate_gets_429_while_another_is_served(deployed, testbed):
    """Only the flooding client is limited, to its burst plus its rate. Measured in a window
    without a Traefik reload (which refills every bucket: see config_reloads); tried again,
    up to 3 times, when one happened meanwhile (ACME renewals on the testbed, every few
    minutes per host)."""
    h = app_hosts(testbed)[0]
    limits = ENV.edge_limits(ENV.services["food"])
    for _ in range(3):
        before = config_reloads(testbed, h)
        flood, calm = flood_once(h)
        reloads = config_reloads(testbed, h) - before
        print(f"flooding client: {dict(flood)}; other client: {dict(calm)}; limits {limits}; "
              f"Traefik reloads meanwhile: {reloads}")
        if reloads == 0:
            break
    assert reloads == 0, "Traefik reloaded during each of 3 windows: nothing measured"
    assert set(calm) == {200}, calm
    assert flood[429] > 0 and flood[200] > 0, flood
    # at most the burst plus 3 s of the rate (and a second of slack) got through
    assert flood[200] <= limits["rate_burst"] + 4 * limits["rate_per_second"], flood
    assert set(flood) <= {200, 429}, flood


def test_a_client_with_too_many_requests_open_gets_429(deployed, testbed):
    """in_flight + 5 slow requests at once from one client: 5 are refused at once, the others
    answered; meanwhile another client is served."""
    h = app_hosts(testbed)[0]
    amount = ENV.edge_limits(ENV.services["bus"])["in_flight"]
    results: list[int] = []
    lock = threading.Lock()

    def slow() -> None:
        status = request(h.address, "/bus/api/slow?ms=3000", client="198.51.100.30")[0]
        with lock:
            results.append(status)

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(amount + 5)]
    for t in threads:
        t.start()
    time.sleep(1)
    other = request(h.address, "/bus/api/ping", client="198.51.100.31")[0]
    for t in threads:
        t.join(timeout=30)
    assert other == 200
    assert sorted(results) == [200] * amount + [429] * 5, results


def test_the_access_log_keeps_the_path_but_not_the_query_string(deployed, testbed):
    """Tokens, codes and signatures travel in query strings: Traefik logs the path only."""
    h = app_hosts(testbed)[0]
    rid, token = uuid.uuid4().hex, uuid.uuid4().hex
    conn = http.client.HTTPConnection(h.address, 80, timeout=10)
    conn.request("GET", f"/taxi/api/ping?token={token}", headers={"Host": DOMAIN,
                                                                  "X-Request-Id": rid})
    assert conn.getresponse().status == 200
    conn.close()
    deadline = time.monotonic() + 30
    while True:
        logs = testbed.ssh(h, "docker logs --since 5m traefik 2>&1").stdout
        lines = [line for line in logs.splitlines() if rid in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lines) == 1, lines
    assert '"RequestPath":"/taxi/api/ping"' in lines[0], lines[0]
    assert token not in logs
