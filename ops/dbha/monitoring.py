"""What Prometheus scrapes from the database cluster, and when it pages. Pure: a `Cluster` in,
Prometheus configuration as data out.

Both sources are built into the parts already running, so no exporter is added:
- Patroni serves `/metrics` on its REST port (reads stay open for the routers' checks): each
  member's role, timeline, WAL positions, sync-standby flag and pause, labelled `scope`;
- HAProxy's built-in Prometheus exporter (Debian's package is built with it) serves each
  router's view on `ROUTER_METRICS_PORT`: how many members each listener can route to.

The rules watch what the automatic failover cannot fix by itself: a cluster that stays
without exactly one leader longer than an election takes, a member down, a standby too far
behind to be promoted (the same `maximum_lag_on_failover` Patroni applies), synchronous
replication without a synchronous standby (RPO is no longer 0, or writes block when strict),
and an app host whose router reaches no primary.
"""

from __future__ import annotations

from ops.dbha.model import Cluster
from ops.dbha.render import PATRONI_PORT, ROUTER_METRICS_PORT
from ops.render.prometheus import runbook_slug

PATRONI_JOB = "patroni"
ROUTER_JOB = "db-router"
ALERT_NAMES = ("PostgresLeaderMissing", "PatroniMemberDown", "PostgresStandbyTooFarBehind",
               "PostgresNoSyncStandby", "DbRouterNoPrimary")


def scrape_configs(cluster: Cluster) -> list[dict]:
    """Prometheus `scrape_configs` entries: every member's Patroni, every app host's router."""
    return [
        {"job_name": PATRONI_JOB, "metrics_path": "/metrics",
         "static_configs": [{"targets": [f"{n.address}:{PATRONI_PORT}"],
                             "labels": {"member": n.name}} for n in cluster.members]},
        {"job_name": ROUTER_JOB, "metrics_path": "/metrics",
         "static_configs": [{"targets": [f"{n.address}:{ROUTER_METRICS_PORT}"],
                             "labels": {"host": n.name}} for n in cluster.routers]},
    ]


def alert_group(cluster: Cluster, runbook_base: str) -> dict:
    """One Prometheus rule group; every alert links its page, `<runbook_base>/<slug>`
    (ops/runbooks/<slug>.md), like the environment's own alerts."""
    scope = f'scope="{cluster.scope}"'
    # an election takes up to one lease; a router needs two failed 1 s checks on top
    election = max(60, 2 * cluster.ttl)
    base = runbook_base.rstrip("/")

    def rule(name: str, expr: str, wait: int, severity: str, summary: str) -> dict:
        return {"alert": name, "expr": expr, "for": f"{wait}s", "labels": {"severity": severity},
                "annotations": {"summary": summary,
                                "runbook_url": f"{base}/{runbook_slug(name)}"}}

    rules = [
        rule("PostgresLeaderMissing", f"sum by (scope) (patroni_primary{{{scope}}}) != 1",
             election, "critical",
             "{{ $labels.scope }}: {{ $value }} members report primary (one expected): writes "
             "fail, or two primaries take them"),
        rule("PatroniMemberDown",
             f'up{{job="{PATRONI_JOB}"}} == 0 or patroni_postgres_running{{{scope}}} == 0',
             60, "warning",
             "{{ $labels.member }}: Patroni or its PostgreSQL is down (no failover to it)"),
        rule("PostgresStandbyTooFarBehind",
             f"max by (scope) (patroni_xlog_location{{{scope}}} and on (instance) "
             f"patroni_primary == 1)\n- on (scope) group_right ()\n"
             f"(patroni_xlog_received_location{{{scope}}} and on (instance) "
             f"patroni_replica == 1)\n> {cluster.maximum_lag_on_failover}",
             120, "warning",
             "{{ $labels.member }} is {{ $value | humanize1024 }}B behind the leader: Patroni "
             "would not promote it"),
    ]
    if cluster.synchronous:
        effect = ("writes block until one is back" if cluster.synchronous_strict else
                  "the primary commits alone: a failover now can lose acknowledged writes")
        rules.append(rule(
            "PostgresNoSyncStandby",
            f"max by (scope) (patroni_primary{{{scope}}}) == 1\n"
            f"unless on (scope) max by (scope) (patroni_sync_standby{{{scope}}}) == 1",
            60, "critical", f"{{{{ $labels.scope }}}} has no synchronous standby: {effect}"))
    rules.append(rule(
        "DbRouterNoPrimary",
        f'haproxy_backend_active_servers{{job="{ROUTER_JOB}", proxy="primary"}} < 1\n'
        f'or up{{job="{ROUTER_JOB}"}} == 0',
        election, "critical",
        "{{ $labels.host }}: the database router reaches no primary: the host's services "
        "cannot write"))
    return {"name": f"superapp-database-{cluster.scope}", "rules": rules}
