"""Monitoring proven against the testbed's live Prometheus and Alertmanager: every rendered
Grafana panel's PromQL parses and returns data after real traffic; the heartbeat (Watchdog)
reaches Alertmanager and only the dead-man's switch; the rules that turn missing data into
alerts stay quiet on a healthy fleet (and would fire: their promtool tests are in the unit
suite).
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from ops.catalog import load_environment
from ops.render.compose import ALERTMANAGER_PORT, PROMETHEUS_PORT
from ops.render.grafana import DATASOURCE_UID, dashboards
from ops.render.probes import targets as probe_targets
from ops.render.sidecar_metrics import CRON_FILE, SCRIPT

from .conftest import REPO, Testbed
from .release import output, pyinfra
from .test_redis_acl import service_get

pytestmark = pytest.mark.integration
ENV = load_environment("local")


def get_json(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=15) as r:
        return json.loads(r.read())


def prometheus(testbed: Testbed) -> str:
    monitoring = next(h for h in testbed.hosts if "monitoring" in h.roles)
    return f"http://{monitoring.address}:{PROMETHEUS_PORT}/api/v1"


def query(base: str, expr: str) -> dict:
    """An instant query; the API's answer (status `error` when the expression does not parse)."""
    url = f"{base}/query?" + urllib.parse.urlencode({"query": expr})
    try:
        return get_json(url)
    except urllib.error.HTTPError as e:  # 400: bad_data
        return json.loads(e.read() or b"{}")


def test_every_dashboard_query_parses_and_returns_data_after_traffic(testbed, deployed):
    app_hosts = [h for h in testbed.hosts if "app" in h.roles]
    for _ in range(3):  # a few requests per service and host, taxi's wallet area included
        for h in app_hosts:
            for service in ENV.services:
                assert service_get(h.address, service, "/api/dashboards")[0] == 200
            assert service_get(h.address, "taxi", "/api/wallet/balance")[0] == 200
        time.sleep(5)
    time.sleep(35)  # two scrapes (15 s) after the traffic: rate() over [5m] has its samples
    base = prometheus(testbed)
    boards = dashboards(ENV)
    failures, checked = [], 0
    for name, board in boards.items():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (name, panel["title"])
            for target in panel["targets"]:
                checked += 1
                answer = query(base, target["expr"])
                where = f"{name} / {panel['title']} / {target['legendFormat']}"
                if answer.get("status") != "success":
                    failures.append(f"{where}: does not parse: {answer.get('error')}")
                elif not answer["data"]["result"]:
                    failures.append(f"{where}: no series: {target['expr']}")
    print(f"{checked} panel queries of {len(boards)} dashboards, {len(failures)} without data")
    assert not failures, "\n".join(failures)


def test_watchdog_reaches_alertmanager_for_the_deadmans_switch_only(testbed, deployed):
    monitoring = next(h for h in testbed.hosts if "monitoring" in h.roles)
    url = (f"http://{monitoring.address}:{ALERTMANAGER_PORT}/api/v2/alerts?"
           + urllib.parse.urlencode({"filter": 'alertname="Watchdog"'}))
    deadline = time.time() + 90
    while not (alerts := get_json(url)) and time.time() < deadline:
        time.sleep(5)
    assert alerts, "Alertmanager never received Watchdog"
    assert {r["name"] for a in alerts for r in a["receivers"]} == {"deadmans-switch"}
    assert all(a["status"]["state"] == "active" for a in alerts)


def test_missing_data_rules_are_loaded_and_quiet_on_a_healthy_fleet(testbed, deployed):
    """ServiceMetricsAbsent covers every service's request and latency metric and payments'
    webhook retries; none of it is pending or firing, and no infra target is down."""
    base = prometheus(testbed)
    rules = {r["name"]: r for g in get_json(f"{base}/rules?type=alert")["data"]["groups"]
             for r in g["rules"]}
    absent = rules["ServiceMetricsAbsent"]["query"]
    for service in ENV.services:
        assert f'http_requests_total{{service="{service}"}}' in absent
        assert f'http_request_duration_seconds_bucket{{service="{service}"}}' in absent
    assert 'payments_webhook_retries_total{service="payments"}' in absent
    # the rule's expression itself, evaluated now: nothing is missing
    assert query(base, absent)["data"]["result"] == []
    assert query(base, rules["TargetDown"]["query"])["data"]["result"] == []
    active = {a["labels"]["alertname"] for a in get_json(f"{base}/alerts")["data"]["alerts"]}
    assert not active & {"ServiceMetricsAbsent", "TargetDown", "ServiceDown"}, active


def firing(base: str, alert: str, labels: dict[str, str]) -> bool:
    alerts = get_json(f"{base}/alerts")["data"]["alerts"]
    return any(a["labels"]["alertname"] == alert and a["state"] == "firing"
               and labels.items() <= a["labels"].items() for a in alerts)


def alert_state(base: str, alert: str, labels: dict[str, str]) -> str:
    """The live Prometheus's state of `alert` for `labels`: pending, firing or "" (inactive)."""
    alerts = get_json(f"{base}/alerts")["data"]["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == alert
                 and labels.items() <= a["labels"].items()), "")


def test_a_stopped_celery_worker_shows_in_status_and_fires_sidecar_down(testbed, deployed):
    """payments' worker on the db host dies and stays dead: `make status` shows it down, and
    the live Prometheus holds SidecarDown for it at once (pending), then fires it within its
    `for` (2m) plus a scrape and an evaluation. promtool checks the `for` too (never firing
    before it: templates/prometheus/watch_test.yml.j2). The job that feeds it is cron's; the
    test runs it once at once instead of waiting up to a minute for cron."""
    host = next(h for h in testbed.hosts if h.name == ENV.db_host.name)
    container = testbed.ssh(host, "docker ps --filter label=superapp.service=payments "
                                  "--filter label=superapp.role=worker "
                                  "--format '{{.Names}}'").stdout.strip()
    assert container, "no payments worker running on the db host"
    testbed.ssh(host, f"grep -q {SCRIPT} {CRON_FILE}")
    base = prometheus(testbed)
    labels = {"service": "payments", "sidecar": "worker", "host": host.name}
    assert alert_state(base, "SidecarDown", labels) == ""
    testbed.ssh(host, f"docker stop {container}")
    stopped = time.time()
    try:
        testbed.ssh(host, SCRIPT)
        status = pyinfra(REPO, "inventories/local.py", "tasks/status.py",
                         "--data", "service=payments", timeout=300)
        rows = [ln.split() for ln in output(status).splitlines()]
        assert any(host.name in r and "payments/worker" in r and "down" in r for r in rows), \
            output(status)[-3000:]
        # a scrape (15 s) and an evaluation (15 s) after the job wrote the metric, with room
        while not alert_state(base, "SidecarDown", labels):
            assert time.time() - stopped < 15 + 15 + 60, "SidecarDown never became active"
            time.sleep(3)
        active = time.time() - stopped
        while not firing(base, "SidecarDown", labels):
            assert time.time() - stopped < 120 + 15 + 15 + 60, "SidecarDown never fired"
            time.sleep(5)
        print(f"SidecarDown pending {active:.0f} s, firing {time.time() - stopped:.0f} s "
              "after the worker stopped")
    finally:
        testbed.ssh(host, f"docker start {container} && {SCRIPT}")
    payments = ENV.services["payments"]
    check = shlex.join(ENV.health_command(payments, payments.sidecars["worker"]))
    back = testbed.ssh(host, f"for i in $(seq 30); do docker exec {container} {check} && exit 0; "
                             "sleep 1; done; exit 1", check=False)
    assert back.returncode == 0, "the worker is not healthy again after its restart"


def probe_results(base: str, selector: str) -> dict[tuple[str, str], float]:
    result = query(base, f"probe_success{{{selector}}}")["data"]["result"]
    return {(r["metric"]["service"], r["metric"]["host"]): float(r["value"][1]) for r in result}


def wait_for(what: str, check, timeout: float = 90):
    deadline = time.time() + timeout
    while not (value := check()):
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(3)
    return value


def test_every_public_route_is_probed_and_a_stopped_service_fails_on_its_host_only(
        testbed, deployed):
    """The prober reaches every public route on every app host (all succeed); food stopped on
    one host fails that host's probe, not the others', and ProbeFailed's expression holds."""
    base = prometheus(testbed)
    want = {(t["service"], t["host"]) for t in probe_targets(ENV)}
    wait_for("every route probed and up", lambda: (
        (r := probe_results(base, 'tier="probe"')).keys() == want and set(r.values()) == {1.0}))
    host = next(h for h in testbed.hosts if "app" in h.roles and h.name != ENV.db_host.name)
    container = testbed.ssh(host, "docker ps --filter label=superapp.service=food "
                                  "--filter label=superapp.role=serve "
                                  "--format '{{.Names}}'").stdout.strip()
    testbed.ssh(host, f"docker stop {container}")
    stopped = time.time()
    try:
        wait_for("food's probe failing on its host", lambda: probe_results(
            base, 'service="food"').get(("food", host.name)) == 0.0)
        print(f"food's probe on {host.name} failed {time.time() - stopped:.0f} s after the stop")
        others = probe_results(base, 'service="food"')
        assert all(v == 1.0 for (_, h), v in others.items() if h != host.name), others
        rules = {r["name"]: r for g in get_json(f"{base}/rules?type=alert")["data"]["groups"]
                 for r in g["rules"]}
        failing = query(base, rules["ProbeFailed"]["query"])["data"]["result"]
        assert [(r["metric"]["service"], r["metric"]["host"]) for r in failing] == [
            ("food", host.name)]
    finally:
        testbed.ssh(host, f"docker start {container}")
    wait_for("food's probe back", lambda: probe_results(
        base, 'service="food"').get(("food", host.name)) == 1.0)


def test_services_run_with_their_sentry_environment_and_release(testbed, deployed):
    """The catalog's error tracking reaches the running containers (the DSN, optional, is
    absent on the testbed: nothing is sent anywhere)."""
    host = next(h for h in testbed.hosts if "app" in h.roles)
    for name in ("payments", "food"):
        out = testbed.ssh(host, "docker ps -q --filter " + shlex.quote(
            f"label=superapp.service={name}") + " --filter label=superapp.role=serve "
            "| xargs docker inspect --format '{{json .Config.Env}}'").stdout
        env = dict(e.split("=", 1) for e in json.loads(out))
        tag = ENV.image(ENV.services[name]).rpartition(":")[2]
        assert env["SENTRY_ENVIRONMENT"] == "local" and env["SENTRY_RELEASE"] == f"{name}@{tag}"
        assert "SENTRY_DSN" not in env
