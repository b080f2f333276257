"""Sidecar liveness for Prometheus: a script that writes `superapp_sidecar_up` for every
sidecar container of an app host (node-exporter's textfile collector), run by cron every
minute, and the (service, sidecar, host) triples the catalog expects (alert SidecarDown).

Celery workers and beat serve no HTTP, so Prometheus cannot scrape them; Docker knows whether
they run and whether their health command (catalog `health_command`) passes.
"""

from __future__ import annotations

from ops.catalog.model import Environment
from ops.render.files import BASE, TEXTFILE_DIR, RenderedFile, cron, render_template

SCRIPT = f"{BASE}/monitoring/sidecar_metrics.sh"
CRON_FILE = "/etc/cron.d/superapp-sidecar-metrics"


def render_files(environment: Environment, host_name: str) -> list[RenderedFile]:
    """The script and its cron line, on an app host that runs at least one sidecar."""
    if not expected(environment, host_name):
        return []
    script = render_template("monitoring/sidecar_metrics.sh.j2", textfile_dir=TEXTFILE_DIR)
    return [RenderedFile(SCRIPT, script, mode=0o755),
            RenderedFile(CRON_FILE, cron("sidecar containers up, for SidecarDown",
                                         [f"* * * * * root {SCRIPT}"],
                                         source="ops/render/sidecar_metrics.py"))]


def expected(environment: Environment, host_name: str | None = None) -> list[dict[str, str]]:
    """(service, sidecar, host) of every sidecar the catalog runs (on `host_name` only when
    given): a singleton on its one host."""
    return [{"service": s.name, "sidecar": sc.name, "host": h.name}
            for h in environment.hosts if host_name in (None, h.name)
            for s in environment.services_on(h.name)
            for sc in environment.sidecars_on(s, h.name)]
