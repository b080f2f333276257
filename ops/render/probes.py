"""External probes of every public route (blackbox_exporter on the monitoring host).

Each app host's public entrypoint is probed the way the load balancer reaches it: to the host's
address, with the environment's first API domain as Host (and as TLS server name: over HTTPS on
`websecure` unless that domain is served in plain HTTP, ops/render/tls.py), on each route of
each service the host runs, at the service's health path below the route. A route that answers
anything but 200 (a wrong Traefik rule, a host whose edge is down, a service that is up for
Prometheus but not for clients) is `ProbeFailed`.
"""

from __future__ import annotations

from typing import Any

from ops.catalog.model import Environment
from ops.render import tls
from ops.render.compose import BLACKBOX_CONTAINER, BLACKBOX_PORT, TRAEFIK_PORTS
from ops.render.files import BLACKBOX_DIR, RenderedFile, render_template

BLACKBOX_ADDRESS = f"{BLACKBOX_CONTAINER}:{BLACKBOX_PORT}"  # on the monitoring host's network
MODULE = "http_public"


def targets(environment: Environment) -> list[dict[str, Any]]:
    """One probe per (service, public route, app host running it), in catalog order."""
    scheme, entry = ("http", "web") if plain(environment) else ("https", "websecure")
    port = TRAEFIK_PORTS[entry]
    return [{"url": f"{scheme}://{h.address}:{port}{route}{s.health_path}",
             "service": s.name, "route": route, "host": h.name}
            for s in environment.services.values() for route in s.routes
            for h in environment.hosts_running(s.name)]


def plain(environment: Environment) -> bool:
    return environment.settings["api_domains"][0] in tls.plain_domains(environment)


def render_config(environment: Environment) -> RenderedFile:
    return RenderedFile(f"{BLACKBOX_DIR}/blackbox.yml", render_template(
        "blackbox/blackbox.yml.j2", env=environment.name, module=MODULE,
        host_header=environment.settings["api_domains"][0], tls=not plain(environment)))
