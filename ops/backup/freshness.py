"""The backup freshness gate: in the gated environments (prod, and any whose group_data sets
`backups.gate_migrations`), a migration does not run when its database's last successful
backup is older than `backups.freshness_limit_hours`, or the WAL archive is stale.

The rule (`backup_freshness_problems`) is pure; `check_backup_freshness` reads the db host's
backup metrics through a `Remote` and raises the rollout's error.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.backup.commands import read_backup_metrics_command
from ops.backup.manifest import human_age
from ops.catalog import REPO_ROOT
from ops.catalog.model import Environment
from ops.host.remote import Remote
from ops.render.files import TEXTFILE_DIR
from ops.rollout.plan import ServiceChange
from ops.rollout.steps import RolloutError, must

METRIC_LINE = re.compile(
    r'^(?P<name>superapp_backup_[a-z_]+)\{database="(?P<db>[^"]+)"\}\s+(?P<value>\S+)\s*$')
LAST_SUCCESS = "superapp_backup_last_success_timestamp_seconds"
FRESHNESS_RULE = "backup.freshness"  # waivers: rule id, key `backup.freshness:<env>:<db>`
GATED_ENVS = ("prod",)  # always gated; others opt in with backups.gate_migrations
WAIVERS_FILE = REPO_ROOT / "audit-waivers.yml"


def gated(environment: Environment) -> bool:
    """Whether a stale backup or archive refuses a migration in this environment."""
    return (environment.name in GATED_ENVS
            or bool(environment.settings["backups"].get("gate_migrations")))


def parse_backup_metrics(text: str) -> dict[str, dict[str, float]]:
    """Textfile metrics -> {database: {metric name: value}} (comments and others ignored)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            try:
                out.setdefault(match["db"], {})[match["name"]] = float(match["value"])
            except ValueError:
                continue
    return out


@dataclass(frozen=True)
class FreshnessWaiver:
    """An accepted stale backup: `audit-waivers.yml` entry with rule `backup.freshness`."""

    match: str  # fnmatch on `backup.freshness:<env>:<db>`
    expires: dt.date
    reason: str


def load_freshness_waivers(path: Path) -> list[FreshnessWaiver]:
    """The `backup.freshness` entries of a waiver file (validated like every waiver)."""
    from ops.audit import known_rules
    from ops.audit.waivers import load_waivers
    return [FreshnessWaiver(w.match, w.expires, w.reason)
            for w in load_waivers(path, path.name, known_rules()) if w.rule == FRESHNESS_RULE]


def backup_freshness_problems(environment: Environment, databases: Iterable[str],
                              metrics: str | Mapping[str, Mapping[str, float]],
                              now: dt.datetime,
                              waivers: Sequence[FreshnessWaiver] = ()) -> list[str]:
    """Why a migration of `databases` must not run now; [] when it may.

    Only where `gated`. `metrics`: the output of `read_backup_metrics_command()` on the
    db host, or its parsed form. A database is refused when its last successful backup is older
    than `backups.freshness_limit_hours` or was never recorded, unless an unexpired waiver
    matches `backup.freshness:<env>:<db>`.
    """
    if not gated(environment):
        return []
    parsed = parse_backup_metrics(metrics) if isinstance(metrics, str) else metrics
    limit_hours = environment.settings["backups"]["freshness_limit_hours"]
    host = environment.db_host.name
    problems = []
    for db in databases:
        key = f"{FRESHNESS_RULE}:{environment.name}:{db}"
        if any(fnmatch.fnmatchcase(key, w.match) and now.date() <= w.expires for w in waivers):
            continue
        last = parsed.get(db, {}).get(LAST_SUCCESS)
        if last is None:
            problems.append(f"database {db}: no successful backup recorded on {host} "
                            f"({TEXTFILE_DIR}/superapp_backup_{db}.prom missing); refusing to "
                            f"migrate without one (limit {limit_hours}h)")
            continue
        age = now.timestamp() - last
        if age > limit_hours * 3600:
            when = dt.datetime.fromtimestamp(last, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            problems.append(f"database {db}: last successful backup is {human_age(age)} old "
                            f"({when}), older than the {limit_hours}h limit; run "
                            f"`/opt/superapp/backup/pg_backup.sh {db}` on {host} first, or "
                            f"waive `{key}` in audit-waivers.yml")
    return problems


ARCHIVE_LINE = re.compile(
    r"^superapp_pitr_archive_last_success_timestamp_seconds\s+(?P<value>\S+)\s*$", re.M)


def archive_freshness_problems(environment: Environment, metrics: str,
                               now: dt.datetime, host: str | None = None) -> list[str]:
    """Why no migration may run while the WAL archive is stale ([] when it may, in an ungated
    environment, or without `pitr`): a migration is exactly when a point-in-time restore may
    be needed, and with the repository host down the newest changes exist only on the db
    host. `metrics` is the output of `read_backup_metrics_command()` on `host` (default: the
    db host)."""
    pitr = environment.settings.get("pitr")
    if not gated(environment) or not pitr or environment.backup_host is None:
        return []
    limit = pitr["archive_max_age_seconds"]
    repo = environment.backup_host.name
    match = ARCHIVE_LINE.search(metrics)
    if match is None:
        return [f"no WAL segment has reached the backup repository on {repo} yet (no "
                f"superapp_pitr_archive_last_success_timestamp_seconds on "
                f"{host or environment.db_host.name}); refusing to migrate without a point to "
                "restore to"]
    age = now.timestamp() - float(match["value"])
    if age <= limit:
        return []
    return [f"the last WAL segment reached the backup repository on {repo} {human_age(age)} "
            f"ago, more than the {limit}s limit: {repo} may be down or archiving failing "
            "(PitrArchiveLagging); restore archiving before migrating"]


def check_backup_freshness(db_remote: Remote, environment: Environment,
                           change: ServiceChange, archive_remote: Remote | None = None) -> None:
    """Refuse (RolloutError) to migrate `change`'s database when its last backup is too old.
    `archive_remote`: where the WAL archive's state is reported, when not the db host (with
    `db_ha`, the member leading now: ops/render/pitr.py)."""
    database = environment.services[change.service].database
    if not gated(environment) or not database:
        return
    metrics = must(db_remote, read_backup_metrics_command(), "reading backup metrics")
    archive = metrics if archive_remote is None or archive_remote is db_remote else must(
        archive_remote, read_backup_metrics_command(), "reading the WAL archive's metrics")
    now = dt.datetime.now(dt.UTC)
    problems = backup_freshness_problems(environment, [database], metrics, now,
                                         load_freshness_waivers(WAIVERS_FILE))
    problems += archive_freshness_problems(environment, archive, now,
                                           (archive_remote or db_remote).name)
    if problems:
        raise RolloutError(f"{db_remote.name}: refusing to migrate {change.service}: "
                           + "; ".join(problems))
