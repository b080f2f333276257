"""Monitoring proven against the testbed's live Prometheus and Alertmanager: every rendered
Grafana panel's PromQL parses and returns data after real traffic; the heartbeat (Watchdog)
reaches Alertmanager and only the dead-man's switch; the rules that turn missing data into
alerts stay quiet on a healthy fleet (and would fire: their promtool tests are in the unit
suite).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from ops.catalog import load_environment
from ops.render.compose import ALERTMANAGER_PORT, PROMETHEUS_PORT
from ops.render.grafana import DATASOURCE_UID, dashboards

from .conftest import Testbed
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
