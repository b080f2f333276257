"""Prometheus configuration, alert rules, and the promtool unit tests of those rules.

Every service is scraped on every host that runs it, through Traefik's internal entrypoint
(`<host address>:8081/_svc/<service>/metrics`), labelled `service` and `host`.

An environment with a PostgreSQL cluster (group_data `db_ha`, `Environment.db_ha`) also gets
its scrape jobs and its rule group from ops/dbha/monitoring.py, appended to prometheus.yml and
data.yml (`db_ha_scrape_jobs`, `db_ha_rule_groups`); without one, nothing changes.
"""

from __future__ import annotations

import re

import yaml

from ops.catalog.model import Environment, Host
from ops.render import probes, sidecar_metrics
from ops.render.backup import databases as backup_databases
from ops.render.compose import (
    ALERTMANAGER_PORT,
    NODE_EXPORTER_PORT,
    POSTGRES_EXPORTER_PORT,
    PROMETHEUS_PORT,
    REDIS_EXPORTER_PORT,
    TRAEFIK_PORTS,
)
from ops.render.files import PROMETHEUS_DIR, RenderedFile, render_template
from ops.render.traefik import internal_prefix

# The metric contract with the service images (README: contract with the services).
METRICS = {
    "requests": "http_requests_total",
    "status_label": "status",
    "duration_bucket": "http_request_duration_seconds_bucket",
    "webhook_retries": "payments_webhook_retries_total",
    "backup_timestamp": "superapp_backup_last_success_timestamp_seconds",
}
LATENCY_LEVELS = (
    {"alert": "HighLatencyP99", "seconds": 1, "severity": "warning"},
    {"alert": "HighLatencyP99Critical", "seconds": 2, "severity": "critical"},
)
ALERT_NAMES = ("ServiceDown", "HighErrorRate", "HighLatencyP99", "HighLatencyP99Critical",
               "PaymentsWebhookRetries", "Watchdog", "TargetDown", "ServiceMetricsAbsent",
               "SidecarDown", "ProbeFailed", "DiskWillFillIn4h", "HostMemoryLow", "LogsNotShipped",
               "BackupStale", "CertificateExpiring")
# data.yml: PostgreSQL and Redis, from their exporters
DATA_ALERT_NAMES = ("PostgresDown", "PostgresTooManyConnections", "PostgresDeadlocks",
                    "PostgresReplicationLag", "RedisDown", "RedisMemoryHigh",
                    "RedisRejectedConnections")
ALERT_NAMES += DATA_ALERT_NAMES
# Rule files under RULES_DIR, each tested alone (templates/prometheus/<name>.j2; tests: RULE_TESTS)
RULES_DIR = f"{PROMETHEUS_DIR}/rules"
RULE_FILES = ("alerts.yml", "watch.yml", "data.yml")
# promtool test file -> the rule file it loads. The day-long backup tests have a file of their
# own with a 10m evaluation step (templates/prometheus/alerts_days_test.yml.j2).
RULE_TESTS = {"alerts_test.yml": "alerts.yml", "alerts_days_test.yml": "alerts.yml",
              "watch_test.yml": "watch.yml", "data_test.yml": "data.yml"}
# node-exporter filesystems worth predicting: real disks, not the kernel's and Docker's layers
LOGS_NOT_SHIPPED_DESCRIPTION = (
    "its lines wait in the host's disk queue (logs.queue_max_disk) and arrive once the pipeline "
    "works again; make logs shows nothing newer meanwhile.")
NODE_FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|autofs|fuse.lxcfs"'

# Rendered only when the environment sets `pitr`; runbook: ops/runbooks/<runbook_slug(name)>.md
PITR_ALERT_NAMES = ("PitrArchiveFailing", "PitrArchiveLagging", "PitrRepositoryDown",
                    "PitrMetricsStale", "PitrFullBackupTooOld", "PitrBackupTooOld",
                    "BackupVolumeFilling", "RestoreDrillStale", "BackupOffsiteStale")


def alert_names(environment: Environment) -> tuple[str, ...]:
    """Every alert `render_rules(environment)` defines."""
    names = ALERT_NAMES if sidecar_metrics.expected(environment) else tuple(
        n for n in ALERT_NAMES if n != "SidecarDown")
    return (names + (PITR_ALERT_NAMES if environment.settings["pitr"] else ())
            + tuple(r["alert"] for g in db_ha_rule_groups(environment) for r in g["rules"]))


def runbook_slug(alert: str) -> str:
    """`PitrArchiveFailing` -> `pitr-archive-failing`: the page under `runbook_base_url`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", alert).lower()


def job_name(service: str) -> str:
    return f"superapp-{service}"


def render_config(environment: Environment, host_name: str) -> RenderedFile:
    service_jobs = [
        {"name": job_name(s.name), "service": s.name,
         "metrics_path": f"{internal_prefix(s)}/metrics",
         "targets": [{"target": f"{h.address}:{TRAEFIK_PORTS['internal']}", "host": h.name}
                     for h in environment.hosts_running(s.name)]}
        for s in environment.services.values()
    ]

    def targets(hosts: list, port: int) -> list[dict]:
        return [{"target": f"{h.address}:{port}", "host": h.name} for h in hosts]

    monitoring = [environment.monitoring_host]
    infra_jobs = [
        {"name": "traefik", "targets": targets(environment.hosts_with_role("app"),
                                               TRAEFIK_PORTS["traefik"])},
        {"name": "node", "targets": targets(list(environment.hosts), NODE_EXPORTER_PORT)},
        {"name": "prometheus", "targets": targets(monitoring, PROMETHEUS_PORT)},
        {"name": "alertmanager", "targets": targets(monitoring, ALERTMANAGER_PORT)},
        {"name": "blackbox", "targets": [{"target": probes.BLACKBOX_ADDRESS,
                                          "host": environment.monitoring_host.name}]},
        # with db_ha, one exporter per member (each watches its own PostgreSQL)
        {"name": "postgres", "targets": targets(environment.hosts_with_role("db"),
                                                POSTGRES_EXPORTER_PORT)},
        {"name": "redis", "targets": targets([environment.db_host], REDIS_EXPORTER_PORT)},
    ]
    content = render_template(
        "prometheus/prometheus.yml.j2", host=host_name, env=environment.name,
        settings=environment.settings["prometheus"], alertmanager_port=ALERTMANAGER_PORT,
        service_jobs=service_jobs, infra_jobs=infra_jobs, rule_files=RULE_FILES,
        probe_targets=probes.targets(environment), probe_module=probes.MODULE,
        blackbox=probes.BLACKBOX_ADDRESS)
    # scrape_configs is the template's last key: the cluster's jobs continue its list
    content += yaml_list_items(db_ha_scrape_jobs(environment), DB_HA_COMMENT)
    return RenderedFile(f"{PROMETHEUS_DIR}/prometheus.yml", content)


def render_rules(environment: Environment) -> list[RenderedFile]:
    """The rule files (RULE_FILES), each with its own promtool tests (`render_rule_tests`)."""
    s = environment.settings
    context = dict(
        env=environment.name, m=METRICS, alerting=s["alerting"],
        runbook=s["alerting"]["runbook_base_url"].rstrip("/"), latency_levels=LATENCY_LEVELS,
        stale_after_seconds=s["backups"]["stale_after_hours"] * 3600,
        stale_after_hours=s["backups"]["stale_after_hours"],
        backup_databases=backup_databases(environment), absent_metrics=absent_metrics(environment),
        node_fs=NODE_FS, sidecars=sidecar_metrics.expected(environment),
        data_host=environment.db_host.name, logs=s["logs"],
        logs_description=LOGS_NOT_SHIPPED_DESCRIPTION,
        log_hosts=[h.name for h in environment.hosts], **pitr_context(environment),
        **certificate_context(environment))
    contents = {name: render_template(f"prometheus/{name}.j2", **context) for name in RULE_FILES}
    # the PostgreSQL cluster's group goes with PostgreSQL's own alerts; `groups` is data.yml's
    # only key. data_test.yml does not test it (ops/dbha/monitoring.py's unit tests do).
    contents[DB_HA_RULE_FILE] += yaml_list_items(db_ha_rule_groups(environment), DB_HA_COMMENT)
    return [RenderedFile(f"{RULES_DIR}/{name}", content) for name, content in contents.items()]


# ---------------------------------------------------------------- the PostgreSQL cluster (db_ha)

DB_HA_RULE_FILE = "data.yml"
DB_HA_COMMENT = "the PostgreSQL cluster (group_data db_ha): ops/dbha/monitoring.py"


def db_ha_scrape_jobs(environment: Environment) -> list[dict]:
    """The cluster's scrape jobs (Patroni on each member, the router on each app host); none
    without `db_ha`."""
    if environment.db_ha is None:
        return []
    from ops.dbha import monitoring  # here: ops.dbha.monitoring imports runbook_slug from us

    return monitoring.scrape_configs(environment.db_ha)


def db_ha_rule_groups(environment: Environment) -> list[dict]:
    """The cluster's rule group, its runbook links under the environment's `runbook_base_url`
    like every other alert; none without `db_ha`."""
    if environment.db_ha is None:
        return []
    from ops.dbha import monitoring  # here: ops.dbha.monitoring imports runbook_slug from us

    return [monitoring.alert_group(environment.db_ha,
                                   environment.settings["alerting"]["runbook_base_url"])]


class _BlockDumper(yaml.SafeDumper):
    """Block style throughout, lists indented under their key, multi-line strings (PromQL)
    as literal blocks, like the templates write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def yaml_list_items(items: list[dict], comment: str) -> str:
    """`items` as YAML entries of a top-level key's list (indented two spaces, like the
    templates' lists), after a `# comment` line; "" when there are none. Key order is kept."""
    if not items:
        return ""
    text = yaml.dump(items, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1_000_000)
    return f"  # {comment}\n" + "".join(
        f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))


def certificate_context(environment: Environment) -> dict:
    """CertificateExpiring's threshold, in seconds and as its summary says it."""
    seconds = environment.settings["tls"]["expiry_alert_seconds"]
    words = f"{seconds // 86400} days" if seconds % 86400 == 0 else f"{seconds // 60} minutes"
    return {"cert_expiry_seconds": seconds, "cert_expiry_words": words}


def absent_metrics(environment: Environment) -> list[dict[str, str]]:
    """(service, metric) pairs whose absence is an alert: every service's request and latency
    metrics, and payments' webhook retries (the image contract, README)."""
    pairs = [{"service": s, "metric": m} for s in environment.services
             for m in (METRICS["requests"], METRICS["duration_bucket"])]
    if "payments" in environment.services:
        pairs.append({"service": "payments", "metric": METRICS["webhook_retries"]})
    return pairs


def pitr_context(environment: Environment) -> dict:
    """Template values of the `superapp-pitr` group (`pitr` None: the group is not rendered)."""
    pitr = environment.settings["pitr"]
    if not pitr:
        return {"pitr": None}
    return {"pitr": pitr, "db_host": environment.db_host.name,
            "backup_host": environment.backup_host.name,
            "full_max_age_seconds": pitr["full_max_age_hours"] * 3600,
            "diff_max_age_seconds": pitr["diff_max_age_hours"] * 3600,
            "drill_stale_seconds": pitr["drill_stale_days"] * 86400}


def render_rule_tests(environment: Environment) -> dict[str, str]:
    """promtool unit tests for `render_rules(environment)` (same thresholds), as YAML text per
    test file (RULE_TESTS: each loads only its own rule file, because promtool evaluates every
    loaded rule at every step, and the backup tests simulate days).

    Not deployed: `ops.validate` runs them beside the rules, and so do the unit tests.
    """
    s = environment.settings
    threshold = s["alerting"]["webhook_retries_per_15m"]
    stale_hours = s["backups"]["stale_after_hours"]
    # cumulative per-minute bucket increments chosen so p99 interpolates to 1.2 s and 2.5 s
    latency_series = {
        "payments": [("0.5", 0), ("1", 79), ("2", 80), ("5", 80), ("+Inf", 80)],
        "taxi": [("0.5", 0), ("1", 0), ("2", 247), ("5", 250), ("+Inf", 250)],
        "commerce": [("0.5", 100), ("1", 100), ("2", 100), ("5", 100), ("+Inf", 100)],
    }
    context = dict(
        error_rate_ratio=s["alerting"]["error_rate_ratio"],
        latency_series=latency_series, retries_threshold=threshold,
        retries_fire=threshold // 15 + 2, retries_quiet=(threshold - 1) // 15,
        stale_hours=stale_hours, series_minutes=(stale_hours + 2) * 60,
        # payments: stale; the last database: never backed up (absent); the others: fresh
        fresh_databases=backup_databases(environment)[1:-1],
        missing_database=backup_databases(environment)[-1],
        stale_age=humanize_hours(stale_hours + 1),
        env=environment.name, memory_ratio=s["alerting"]["memory_available_ratio"],
        logs=s["logs"], log_hosts=[h.name for h in environment.hosts],
        logs_description=LOGS_NOT_SHIPPED_DESCRIPTION,
        **absent_test_context(environment), sidecars=sidecar_metrics.expected(environment),
        runbook=s["alerting"]["runbook_base_url"].rstrip("/"), **pitr_test_context(environment),
        **data_test_context(s["alerting"]), **certificate_context(environment))
    return {name: render_template(f"prometheus/{name}.j2", **context) for name in RULE_TESTS}


def data_test_context(alerting: dict) -> dict:
    """Test values of data.yml either side of its thresholds, and the text promtool's
    templates make of them (humanizePercentage, humanize1024)."""
    conn_fire = min(99, round(alerting["postgres_connections_ratio"] * 100) + 5)
    mem_fire = min(999, round(alerting["redis_memory_ratio"] * 1000) + 30)
    lag = alerting["postgres_replication_lag_bytes"]
    return {"alerting": alerting, "conn_fire": conn_fire,
            "conn_quiet": round(alerting["postgres_connections_ratio"] * 100) - 5,
            "mem_fire": mem_fire, "mem_quiet": round(alerting["redis_memory_ratio"] * 1000) - 30,
            "mem_fire_text": f"{mem_fire / 1000 * 100:.4g}%",
            "wal_lag_fire": 2 * lag, "wal_lag_quiet": lag // 2,
            "wal_lag_fire_text": humanize_1024(2 * lag)}


def humanize_1024(value: float) -> str:
    """Prometheus's `humanize1024` template function."""
    prefix = ""
    for p in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix, value = p, value / 1024
    return f"{value:.4g}{prefix}"


def absent_test_context(environment: Environment) -> dict:
    """ServiceMetricsAbsent's test: every pair present but two, the second service's latency
    histogram and the last pair (payments' webhook retries when payments is in the catalog)."""
    pairs = absent_metrics(environment)
    missing = [pairs[3], pairs[-1]]
    return {"absent_missing": missing,
            "absent_present": [p for p in pairs if p not in missing]}


def pitr_test_context(environment: Environment) -> dict:
    """Series and expectations of the `superapp-pitr` rule tests, from the same thresholds.

    Timestamps are seconds since the test's start (promtool starts at unix time 0).
    """
    pitr = environment.settings["pitr"]
    if not pitr:
        return {"pitr": None}
    full_h, diff_h = pitr["full_max_age_hours"], pitr["diff_max_age_hours"]
    drill_h = pitr["drill_stale_days"] * 24
    # archiving stops at minute 10: quiet while the age is <= the limit, firing 2m (`for`) later
    lag_quiet = (600 + pitr["archive_max_age_seconds"]) // 60
    # the repository's volume: 500 GiB, used halfway between the limit and full, or half the limit
    size, limit = 500 * 2**30, pitr["volume_full_ratio"]
    avail_full, avail_quiet = round(size * (1 - limit) / 2), round(size * (1 - limit / 2))
    return {
        "pitr": pitr, "db_host": environment.db_host.name,
        "backup_host": environment.backup_host.name,
        "db": node_labels(environment.db_host), "bk": node_labels(environment.backup_host),
        "lag_quiet": lag_quiet, "lag_fire": lag_quiet + 4,
        "lag_age": humanize_duration((lag_quiet + 4) * 60 - 600),
        # backups and drills that reach their limit at 30m: evaluated at 45m
        "full_h": full_h, "diff_h": diff_h, "drill_h": drill_h,
        "full_age": humanize_duration(full_h * 3600 + 900),
        "diff_age": humanize_duration(diff_h * 3600 + 900),
        "drill_age": humanize_duration(drill_h * 3600 + 900),
        "volume_size": size, "avail_full": avail_full, "avail_quiet": avail_quiet,
        # humanizePercentage: %.4g of the percentage
        "volume_used": f"{(1 - avail_full / size) * 100:.4g}%",
        "volume_limit": round(limit * 100),
    }


def node_labels(host: Host) -> dict:
    """The labels node-exporter's metrics (textfile collector) carry, as series and as expected
    alert labels."""
    labels = {"job": "node", "instance": f"{host.address}:{NODE_EXPORTER_PORT}",
              "tier": "infra", "host": host.name}
    return {"series": ",".join(f'{k}="{v}"' for k, v in labels.items()),
            "exp": ", ".join(f'{k}: "{v}"' for k, v in labels.items()), "name": host.name}


def humanize_duration(seconds: int) -> str:
    """Prometheus' `humanizeDuration` of a whole number of seconds >= 1."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m {secs}s"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def humanize_hours(hours: int) -> str:
    """Prometheus' `humanizeDuration` of a whole number of hours (`1d 3h 0m 0s`, `5h 0m 0s`)."""
    return humanize_duration(hours * 3600)
