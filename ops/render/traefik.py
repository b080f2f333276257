"""Traefik static configuration and one file-provider file per service.

Public routes live on `web` only, where `<route>/internal/...` and `<route>/admin/...` answer
404 (a deny router above the public one: Traefik's `noop@internal`, whose 418 an `errors`
middleware rewrites to 404; the request never reaches the service) and a path with an encoded
`/` or `\\` is refused (400: the services would decode it after routing). On `internal` (the host's
private address and the superapp network): `Host(<service>.internal)` carries every path of the
service, unchanged, for service-to-service calls (callers use `http://<service>.internal:8081`,
an alias of the Traefik container), and `/_svc/<service>/metrics|health` is what Prometheus
scrapes. Traefik's own ping and metrics on `traefik`. The API/dashboard is never enabled.
"""

from __future__ import annotations

from ops.catalog.model import Environment, Host, Service
from ops.render import tls
from ops.render.compose import TRAEFIK_PORTS, internal_host
from ops.render.files import TRAEFIK_DIR, TRAEFIK_DYNAMIC_DIR, RenderedFile, render_template

GRACE_SECONDS = 30
# Traefik's own probe of each service's live server: the swap waits for it to report the new
# server up, so its interval bounds how long a switch takes to be proven (plus the reload):
# a new server's `server_up` line appears with its first check, one interval after the load.
# Measured on a testbed host (a route file written, then the metrics polled): 2 s -> 2.6 s to
# the up line, 1 s -> 1.3-1.8 s, 0.5 s -> 0.9 s. Every switch and every undo waits for it.
HEALTH_INTERVAL_SECONDS = 1
# Generous on purpose: Traefik takes a service's only server out after ONE failed check (no
# threshold), and its 503s last until the next check passes. With a 1 s timeout, a CPU-starved
# host (a rollout's pulls and starts under load) timed checks out: 17 of 45,735 requests failed
# in `make bench`; with 10 s, 0 of 40,223. A hung server is still out within timeout + interval
# (11 s).
HEALTH_TIMEOUT_SECONDS = 10
# Sub-paths of every public route that only other services or operators may call: never public.
PRIVATE_SUBPATHS = ("internal", "admin")
DENY_PRIORITY = 100000  # above any rule-length priority of a public router


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
        trusted_ips=list(environment.settings["upstream_proxies"]), grace_seconds=GRACE_SECONDS,
        tls=tls.static_settings(environment)))


def public_entrypoints(environment: Environment, host: Host) -> list[dict]:
    """Where the public routers live: `web` for the plain-HTTP names, `websecure` (with its
    TLS settings and HSTS) for the HTTPS names; an entrypoint without names has no routers."""
    found = []
    if tls.plain_domains(environment):
        found.append({"entry": "web", "suffix": "", "domains": tls.plain_domains(environment),
                      "tls": None, "extra_middlewares": []})
    if tls.https_domains(environment, host):
        found.append({"entry": "websecure", "suffix": "-tls",
                      "domains": tls.https_domains(environment, host),
                      "tls": tls.router_tls(environment, host),
                      "extra_middlewares": [f"{tls.HSTS_MIDDLEWARE}@file"]})
    return found


def slot_service(service_name: str, slot: str) -> str:
    """The Traefik service of one slot during a canary (`payments-b`; `@file` in metrics)."""
    return f"{service_name}-{slot}"


def canary_backends(service: Service, slot: str, new_slot: str, weight: int) -> list[dict]:
    """The weighted pair of a canary step: the live slot, then the new one with `weight`%."""
    return [{"slot": s, "service": slot_service(service.name, s), "weight": w,
             "url": server_url(service, s)}
            for s, w in ((slot, 100 - weight), (new_slot, weight))]


def server_url(service: Service, slot: str) -> str:
    """The URL a route file names for a service's slot (and the rollout waits to see up)."""
    return f"http://{service.container_name(slot)}:{service.port}"


def render_dynamic(environment: Environment, service: Service, host: Host,
                   slot: str, canary: tuple[str, int] | None = None) -> RenderedFile:
    """The service's routers, middlewares and its one server: the container of `slot`; or,
    with `canary` (new slot, weight in %), a weighted pair of `slot` and the new slot."""
    n = service.name
    names = {"public": n, "public_metrics": f"{n}-metrics-denied",
             "public_private": f"{n}-private-denied", "internal": f"{n}-internal",
             "internal_host": f"{n}-internal-host", "strip": f"{n}-strip",
             "internal_strip": f"{n}-internal-strip", "deny": f"{n}-deny",
             "not_found": f"{n}-not-found", "service": n, "headers": f"{n}-headers",
             "in_flight": f"{n}-in-flight", "rate_limit": f"{n}-rate-limit",
             "body_limit": f"{n}-body-limit"}
    prefix = internal_prefix(service)
    edges = [{**e, "public_rule": public_rule(e["domains"], list(service.routes)),
              "public_metrics_rule": public_rule(e["domains"],
                                                 [f"{p}/metrics" for p in service.routes]),
              "public_private_rule": public_rule(e["domains"], [
                  f"{p}/{sub}" for p in service.routes for sub in PRIVATE_SUBPATHS])}
             for e in public_entrypoints(environment, host)]
    return RenderedFile(dynamic_path(service), render_template(
        "traefik/dynamic.yml.j2", service=service, host=host.name, env=environment.name,
        slot=slot, r=names,
        canary=canary_backends(service, slot, *canary) if canary else None,
        internal_prefix=prefix, edges=edges,
        deny_priority=DENY_PRIORITY, edge=environment.edge_limits(service),
        source_excluded_ips=list(environment.settings["upstream_proxies"]),
        internal_host_rule=f"Host(`{internal_host(service)}`)",
        internal_rule=f"Path(`{prefix}/metrics`) || Path(`{prefix}{service.health_path}`)",
        server_url=server_url(service, slot),
        health_path=service.health_path, health_interval=f"{HEALTH_INTERVAL_SECONDS}s",
        health_timeout=f"{HEALTH_TIMEOUT_SECONDS}s"))
