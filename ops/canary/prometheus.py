"""The canary's numbers, read from the environment's own Prometheus over its HTTP API.

Instant queries of Traefik's per-service counters on the canary host, read at a step's start
and end: the difference is what the step saw (a counter that went down, a Traefik restart,
counts from zero). Deltas, not `increase()`: a slot's series is born with the canary, and
`increase()` over a series' first samples drops the requests counted before its first scrape.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from ops.canary.policy import SlotStats
from ops.render.traefik import slot_service as traefik_service

TIMEOUT = 10
TRAEFIK_JOB = "traefik"  # templates/prometheus/prometheus.yml.j2


class PrometheusError(RuntimeError):
    """Prometheus could not answer; the message names its URL."""


def slot_service(service: str, slot: str) -> str:
    """Traefik's name for one slot of a service during a canary (its metrics' `service`)."""
    return f"{traefik_service(service, slot)}@file"


def selector(host: str, services: Iterable[str], extra: str = "") -> str:
    names = "|".join(sorted(services))
    return (f'{{job="{TRAEFIK_JOB}",host="{host}",service=~"{names}"'
            + (f",{extra}" if extra else "") + "}")


def queries(host: str, services: Iterable[str]) -> dict[str, str]:
    """PromQL for every slot service named (Traefik names, `payments-b@file`) on `host`."""
    names = list(services)
    five_xx = 'code=~"5.."'
    return {
        "requests": f"sum by (service) (traefik_service_requests_total{selector(host, names)})",
        "errors": "sum by (service) (traefik_service_requests_total"
                  f"{selector(host, names, five_xx)})",
        "buckets": "sum by (service, le) (traefik_service_request_duration_seconds_bucket"
                   f"{selector(host, names)})",
    }


@dataclass(frozen=True)
class Sample:
    """Counters at one instant: (kind, service[, le]) -> value."""

    values: dict[tuple[str, ...], float]

    def since(self, earlier: Sample, service: str) -> SlotStats:
        """What `service` answered between `earlier` and this sample."""
        def delta(key: tuple[str, ...]) -> float:
            now, then = self.values.get(key, 0.0), earlier.values.get(key, 0.0)
            return now - then if now >= then else now  # reset: counted from zero again
        buckets = tuple(sorted(
            (float(k[2]), delta(k)) for k in self.values if k[:2] == ("buckets", service)))
        return SlotStats(requests=delta(("requests", service)),
                         errors=delta(("errors", service)), buckets=buckets)


class Prometheus:
    """A read-only client of one Prometheus's `/api/v1/query`."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(address, timeout=TIMEOUT) as answer:  # noqa: S310
                body = json.load(answer)
        except (OSError, ValueError) as e:
            raise PrometheusError(f"cannot query Prometheus at {self.url}: {e}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} refused a query: "
                                  f"{body.get('error', body)}")
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def sample(self, host: str, services: Iterable[str]) -> Sample:
        values: dict[tuple[str, ...], float] = {}
        for kind, query in queries(host, services).items():
            for labels, value in self.vector(query):
                key = (kind, labels.get("service", ""))
                values[key + ((labels["le"],) if kind == "buckets" else ())] = value
        return Sample(values)
