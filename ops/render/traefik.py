"""Traefik static configuration and one file-provider file per service.

Public routes live on `web` only; `/_svc/<service>/metrics|health` only on `internal` (scraped
by Prometheus through the host's private address); Traefik's own ping and metrics on `traefik`.
The API/dashboard is never enabled.
"""

from __future__ import annotations

from ops.catalog.model import Environment, Host, Service
from ops.render.compose import TRAEFIK_PORTS
from ops.render.files import TRAEFIK_DIR, TRAEFIK_DYNAMIC_DIR, RenderedFile, render_template

GRACE_SECONDS = 30


def internal_prefix(service: Service) -> str:
    return f"/_svc/{service.name}"


def dynamic_path(service: Service) -> str:
    return f"{TRAEFIK_DYNAMIC_DIR}/{service.name}.yml"


def public_rule(domains: list[str], prefixes: list[str]) -> str:
    """Host(...) && (Path(/p) || PathPrefix(/p/)): `/ai` must not match `/ai_gateway`."""
    hosts = " || ".join(f"Host(`{d}`)" for d in domains)
    paths = " || ".join(f"Path(`{p}`) || PathPrefix(`{p}/`)" for p in prefixes)
    return f"({hosts}) && ({paths})"


def render_static(environment: Environment, host: Host) -> RenderedFile:
    return RenderedFile(f"{TRAEFIK_DIR}/traefik.yml", render_template(
        "traefik/traefik.yml.j2", host=host.name, env=environment.name, ports=TRAEFIK_PORTS,
        trusted_ips=list(environment.settings["upstream_proxies"]), grace_seconds=GRACE_SECONDS))


def render_dynamic(environment: Environment, service: Service, host: Host,
                   slot: str) -> RenderedFile:
    """The service's routers, middlewares and its one server: the container of `slot`."""
    n = service.name
    names = {"public": n, "public_metrics": f"{n}-metrics-denied", "internal": f"{n}-internal",
             "strip": f"{n}-strip", "internal_strip": f"{n}-internal-strip",
             "deny": f"{n}-deny", "service": n}
    domains = list(environment.settings["api_domains"])
    prefix = internal_prefix(service)
    return RenderedFile(dynamic_path(service), render_template(
        "traefik/dynamic.yml.j2", service=service, host=host.name, env=environment.name,
        slot=slot, r=names, internal_prefix=prefix,
        public_rule=public_rule(domains, list(service.routes)),
        public_metrics_rule=public_rule(domains, [f"{p}/metrics" for p in service.routes]),
        internal_rule=f"Path(`{prefix}/metrics`) || Path(`{prefix}{service.health_path}`)",
        server_url=f"http://{service.container_name(slot)}:{service.port}"))
