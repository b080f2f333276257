"""Which TCP ports a host opens, and to whom: derived from the catalog's roles, never by hand.

Pure: an `Environment` and a `Host` in, `Opening`s out. Each opening names a port, why it is
open and the only sources allowed to reach it (`None`: anywhere). The ports are the constants
the compose and Traefik renderers publish (ops/render/compose.py, pitr, logs), so a port moved
there moves here; a role's openings follow who talks to it:

- every host: SSH from `admin_sources`; node-exporter from the monitoring host;
- app: Traefik's public entrypoint from `upstream_proxies` (anywhere when empty) and the
  monitoring host (blackbox probes the hosts' addresses); the internal entrypoint from app
  hosts (service-to-service calls) and the monitoring host (Prometheus scrapes `/_svc/...`);
  Traefik's own metrics from the monitoring host;
- db: PostgreSQL and Redis from app hosts; their exporters from the monitoring host;
- monitoring: Prometheus and Alertmanager from the monitoring host and the operators
  (`admin_sources`: the UIs `make demo` points at); the RELP log store from every host;
- backup: the pgBackRest S3 repository from the db host (and the backup host: restore drill).

With group_data `db_ha` (`Environment.db_ha`, an ops.dbha `Cluster`), the cluster's ports,
from the `Cluster` alone (members, etcd, routers: no list of hosts by hand here):

- each etcd host: the peer port from the other etcd members; the client port from the etcd
  members and the Patroni members (Patroni is etcd's client);
- each Patroni member: PostgreSQL from the other members (replication, pg_rewind) and the
  routers' hosts; Patroni's REST API from the other members (failsafe), the routers' hosts
  (HAProxy checks `/primary`) and the monitoring host (Prometheus scrapes `/metrics`);
- each router's host (the app hosts): HAProxy's metrics from the monitoring host.

The member's PostgreSQL rule replaces the db role's (app hosts): with `db_ha` the db host is a
member like the others, never reachable from more than that.

It must never open a port to a source the catalog does not name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ops.catalog.model import Environment, Host
from ops.dbha import render as dbha
from ops.dbha.model import Node
from ops.render import pitr
from ops.render.compose import (
    ALERTMANAGER_PORT,
    NODE_EXPORTER_PORT,
    POSTGRES_EXPORTER_PORT,
    POSTGRES_PORT,
    PROMETHEUS_PORT,
    REDIS_EXPORTER_PORT,
    REDIS_PORT,
    TRAEFIK_PORTS,
)

SSH_PORT = 22
# Traefik entrypoints that face the load balancers (`websecure`: 443, once TLS lands).
PUBLIC_ENTRYPOINTS = ("web", "websecure")


class FirewallError(ValueError):
    """The environment cannot give a host a safe ruleset (e.g. no SSH source at all)."""


@dataclass(frozen=True)
class Opening:
    """One TCP port opened on a host: `sources` None means anywhere."""

    name: str
    port: int
    sources: tuple[str, ...] | None
    why: str


def admin_sources_of(environment: Environment,
                     admin_sources: Sequence[str] | None = None) -> tuple[str, ...]:
    """The SSH/operator sources: the argument, else group_data `admin_sources`.

    Refuses an empty list: a ruleset without them locks the deploy out of every host."""
    sources = admin_sources if admin_sources is not None else \
        environment.settings.get("admin_sources")
    if not sources:
        raise FirewallError(f"group_data/{environment.name}.py: admin_sources: empty; SSH would "
                            "be closed to everyone (name the deploy controller, e.g. 10.231.0.1)")
    return tuple(_checked(sources, "admin_sources"))


def openings(environment: Environment, host: Host,
             admin_sources: Sequence[str] | None = None) -> list[Opening]:
    """Every port `host` opens, in a stable order (role order, then port; then the database
    cluster's, by port)."""
    admins = admin_sources_of(environment, admin_sources)
    apps = _addresses(environment.hosts_with_role("app"))
    monitoring = _addresses([environment.monitoring_host])
    everyone = _addresses(environment.hosts)
    proxies = tuple(_checked(environment.settings.get("upstream_proxies") or (),
                             "upstream_proxies"))
    ssh_port = environment.settings.get("ssh_port") or SSH_PORT
    found = [
        Opening("ssh", ssh_port, admins, "the deploy and operators"),
        Opening("node-exporter", NODE_EXPORTER_PORT, monitoring, "Prometheus scrapes it"),
    ]
    if host.has_role("app"):
        found += [Opening(f"traefik-{name}", TRAEFIK_PORTS[name],
                          _union(proxies, monitoring) if proxies else None,
                          "the load balancers; blackbox probes from the monitoring host")
                  for name in PUBLIC_ENTRYPOINTS if name in TRAEFIK_PORTS]
        found += [
            Opening("traefik-internal", TRAEFIK_PORTS["internal"], _union(apps, monitoring),
                    "service-to-service calls; Prometheus scrapes /_svc/<service>/metrics"),
            Opening("traefik-metrics", TRAEFIK_PORTS["traefik"], monitoring,
                    "Prometheus scrapes Traefik"),
        ]
    if host.has_role("db"):
        # with db_ha, Patroni runs this host's PostgreSQL: its rule is the member's (below)
        if environment.db_ha is None:
            found.append(Opening("postgres", POSTGRES_PORT, apps, "the services' databases"))
        redis = host.name == environment.db_host.name  # the first db host only (db_ha)
        found += [
            *([Opening("redis", REDIS_PORT, apps, "the services' rate limits and Celery")]
              if redis else []),
            Opening("postgres-exporter", POSTGRES_EXPORTER_PORT, monitoring, "Prometheus"),
            *([Opening("redis-exporter", REDIS_EXPORTER_PORT, monitoring, "Prometheus")]
              if redis else []),
        ]
    if host.has_role("monitoring"):
        found += [
            Opening("prometheus", PROMETHEUS_PORT, _union(monitoring, admins),
                    "Grafana on the monitoring host; operators"),
            Opening("alertmanager", ALERTMANAGER_PORT, _union(monitoring, admins),
                    "Prometheus; operators"),
            Opening("log-store", environment.settings["logs"]["port"], everyone,
                    "every host's log shipper (RELP)"),
        ]
    if host.has_role("backup") and pitr.enabled(environment):
        found.append(Opening("pitr-repository", environment.settings["pitr"]["port"],
                             _union(_addresses(environment.hosts_with_role("db")),
                                    (host.address,)),
                             "pgBackRest on the db host(s): with db_ha, whichever member "
                             "leads archives; the restore drill"))
    if environment.db_ha is not None:
        found += cluster_openings(environment, host)
    return found


def cluster_openings(environment: Environment, host: Host) -> list[Opening]:
    """The ports `host` opens for the Patroni cluster of `environment.db_ha` (none without
    it), each to the cluster's own nodes only (the monitoring host for the metrics), by port.
    The members are the db hosts (the loader checks it), so every db host gets the member's
    PostgreSQL rule in place of its role's."""
    cluster = environment.db_ha
    if cluster is None:
        return []
    monitoring = _addresses([environment.monitoring_host])
    etcd, members, routers = (_addresses(cluster.etcd), _addresses(cluster.members),
                              _addresses(cluster.routers))
    others = _addresses(n for n in cluster.members if n.name != host.name)
    found: list[Opening] = []
    if host.name in _names(cluster.etcd):
        found += [
            Opening("etcd-client", dbha.ETCD_CLIENT_PORT, _union(etcd, members),
                    "etcd's members and its clients, the Patroni members"),
            Opening("etcd-peer", dbha.ETCD_PEER_PORT,
                    _addresses(n for n in cluster.etcd if n.name != host.name),
                    "the other etcd members"),
        ]
    if host.name in _names(cluster.members):
        found += [
            Opening("postgres", dbha.POSTGRES_PORT, _union(others, routers),
                    "the other Patroni members (replication, pg_rewind); the routers on the "
                    "app hosts"),
            Opening("patroni-rest", dbha.PATRONI_PORT, _union(others, routers, monitoring),
                    "the other members (failsafe); the routers' checks (/primary); "
                    "Prometheus scrapes /metrics"),
        ]
    if host.name in _names(cluster.routers):
        found.append(Opening("db-router-metrics", dbha.ROUTER_METRICS_PORT, monitoring,
                             "Prometheus scrapes the database router (HAProxy)"))
    return sorted(found, key=lambda o: o.port)


def container_subnets(environment: Environment) -> tuple[str, ...]:
    """The superapp docker network: its containers reach ports published on their own host
    (through docker-proxy, so through INPUT, or hairpin NAT, so through FORWARD)."""
    return tuple(_checked([environment.settings["docker_network"]["subnet"]], "docker_network"))


def _addresses(hosts: Iterable[Host | Node]) -> tuple[str, ...]:
    """Inventory hosts or a cluster's nodes, as sources."""
    return _union(*[(h.address,) for h in hosts])


def _names(nodes: Iterable[Node]) -> set[str]:
    return {n.name for n in nodes}


def _union(*groups: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, first occurrence first (a stable, reviewable rendering)."""
    return tuple(dict.fromkeys(a for group in groups for a in group))


def _checked(values: Iterable[str], key: str) -> list[str]:
    """Addresses or networks as nft prints them back; a typo fails here, not on a host."""
    out = []
    for value in values:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise FirewallError(f"{key}: {value!r} is not an address or network") from exc
        single = network.prefixlen == network.max_prefixlen
        out.append(str(network.network_address) if single else str(network))
    return out
