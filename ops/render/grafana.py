"""Grafana provisioning and dashboards, generated from the catalog as plain dicts -> JSON.

One dashboard per service (req/s, error rate, p90/p99 latency, req/s by version; `full` ones
add status codes, targets up and memory), the catalog's extra dashboards (taxi_wallet) and an
overview (with the hosts per version of each service).
Output is deterministic: same catalog, same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from ops.catalog.model import Environment, Service
from ops.render import slot_metrics
from ops.render.compose import PROMETHEUS_PORT
from ops.render.files import GRAFANA_DIR, RenderedFile, render_template

DATASOURCE_UID = "prometheus"
DASHBOARDS_DIR = f"{GRAFANA_DIR}/dashboards"
CONTAINER_DASHBOARDS_DIR = "/var/lib/grafana/dashboards/superapp"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
REQ = "http_requests_total"
DURATION = "http_request_duration_seconds_bucket"


def panel(title: str, exprs: dict[str, str], unit: str, index: int, width: int = 12) -> dict:
    per_row = 24 // width
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width,
                    "x": (index % per_row) * width, "y": (index // per_row) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
             "datasource": DATASOURCE}
            for i, (legend, expr) in enumerate(exprs.items())
        ],
    }


def dashboard(uid: str, title: str, panels: list[tuple[str, dict[str, str], str]],
              tags: list[str]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["superapp", *tags],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": [panel(t, e, u, i) for i, (t, e, u) in enumerate(panels)],
    }


def service_panels(selector: str) -> list[tuple[str, dict[str, str], str]]:
    """req/s, error rate and p90/p99 latency for a PromQL label selector."""
    quantiles = {
        f"p{q}": f"histogram_quantile(0.{q}, sum by (le) (rate({DURATION}{{{selector}}}[5m])))"
        for q in (90, 99)
    }
    return [
        ("Requests per second", {"{{host}}": f"sum by (host) (rate({REQ}{{{selector}}}[5m]))"},
         "reqps"),
        # `or vector(0)`: no 5xx series at all is 0 %, not "no data"
        ("Error rate (5xx)", {"5xx ratio": (
            f'(sum(rate({REQ}{{{selector},status=~"5.."}}[5m])) or vector(0))'
            f" / sum(rate({REQ}{{{selector}}}[5m]))"
        )}, "percentunit"),
        ("Latency p90 / p99", quantiles, "s"),
    ]


def full_panels(selector: str) -> list[tuple[str, dict[str, str], str]]:
    return [
        ("Requests by status", {"{{status}}": f"sum by (status) (rate({REQ}{{{selector}}}[5m]))"},
         "reqps"),
        ("Targets up", {"{{host}}": f"up{{{selector}}}"}, "none"),
        ("Resident memory", {"{{host}}": f"process_resident_memory_bytes{{{selector}}}"},
         "bytes"),
    ]


def version_panel(selector: str) -> tuple[str, dict[str, str], str]:
    """req/s per version and slot: the rollout's info series joined on (service, host), so a
    half-rolled fleet shows old and new side by side (ops/render/slot_metrics.py)."""
    return ("Requests per second by version", {"{{version}} ({{slot}})": (
        f"sum by (version, slot) (rate({REQ}{{{selector}}}[5m]) * on (service, host) "
        f"group_left (version, slot) {slot_metrics.METRIC})")}, "reqps")


def service_dashboard(service: Service) -> dict[str, Any]:
    selector = f'service="{service.name}"'
    panels = [*service_panels(selector), version_panel(selector)]
    if service.dashboard == "full":
        panels += full_panels(selector)
    return dashboard(f"superapp-{service.dns_name}", f"Super-App / {service.name}", panels,
                     [service.name, service.dashboard])


def extra_dashboard(service: Service, name: str) -> dict[str, Any]:
    """A focused view of one area of a service: its routes whose path mentions the area."""
    area = name.removeprefix(f"{service.name}_")
    selector = f'service="{service.name}",path=~".*{area}.*"'
    return dashboard(f"superapp-{name.replace('_', '-')}", f"Super-App / {name}",
                     service_panels(selector), [service.name, name])


def overview_dashboard(environment: Environment) -> dict[str, Any]:
    names = "|".join(environment.services)
    sel = f'service=~"{names}"'
    return dashboard("superapp-overview", "Super-App / overview", [
        ("Requests per second by service",
         {"{{service}}": f"sum by (service) (rate({REQ}{{{sel}}}[5m]))"}, "reqps"),
        ("Error rate by service", {"{{service}}": (
            f'(sum by (service) (rate({REQ}{{{sel},status=~"5.."}}[5m]))'
            f" or 0 * sum by (service) (rate({REQ}{{{sel}}}[5m])))"
            f" / sum by (service) (rate({REQ}{{{sel}}}[5m]))")}, "percentunit"),
        ("p99 latency by service", {"{{service}}": (
            f"histogram_quantile(0.99, sum by (service, le) (rate({DURATION}{{{sel}}}[5m])))")},
         "s"),
        ("Hosts per version", {"{{service}} {{version}}": (
            f"count by (service, version) ({slot_metrics.METRIC}{{{sel}}})")}, "none"),
        # a count per service (0 when all are up), not only the down ones: a panel with data
        ("Targets down by service",
         {"{{service}}": 'sum by (service) (up{tier="service"} == bool 0)'}, "none"),
    ], ["overview"])


def dashboards(environment: Environment) -> dict[str, dict[str, Any]]:
    """file stem -> dashboard, in catalog order, overview last."""
    out: dict[str, dict[str, Any]] = {}
    for service in environment.services.values():
        out[service.name] = service_dashboard(service)
        for name in service.extra_dashboards:
            out[name] = extra_dashboard(service, name)
    out["superapp_overview"] = overview_dashboard(environment)
    return out


def render_files(environment: Environment) -> list[RenderedFile]:
    mon = environment.monitoring_host
    files = [
        RenderedFile(f"{GRAFANA_DIR}/provisioning/datasources/prometheus.yml", render_template(
            "grafana/datasource.yml.j2", env=environment.name, uid=DATASOURCE_UID,
            url=f"http://{mon.address}:{PROMETHEUS_PORT}")),
        RenderedFile(f"{GRAFANA_DIR}/provisioning/dashboards/superapp.yml", render_template(
            "grafana/dashboards.yml.j2", env=environment.name, host_dir=DASHBOARDS_DIR,
            container_dir=CONTAINER_DASHBOARDS_DIR)),
    ]
    files += [
        RenderedFile(f"{DASHBOARDS_DIR}/{name}.json", json.dumps(board, indent=2) + "\n")
        for name, board in dashboards(environment).items()
    ]
    return files
