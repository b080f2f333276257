"""What a backup recorded beside its dump (the manifest), row counts, and retention. Pure."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ops.render.backup import BACKUP_ROOT

STAMP = re.compile(r"(?P<db>[a-z][a-z0-9_-]*)-(?P<stamp>\d{8}T\d{6}Z)\.manifest")


class BackupError(Exception):
    """A backup or drill problem; the message names the host, database and file."""


@dataclass(frozen=True)
class Manifest:
    """What pg_backup.sh recorded beside one dump."""

    database: str
    created: dt.datetime
    file: str
    encrypted: bool
    size: int
    sha256: str
    tables: Mapping[str, int]
    name: str = ""  # the manifest's file name

    @property
    def directory(self) -> str:
        return f"{BACKUP_ROOT}/{self.database}"

    @property
    def path(self) -> str:
        return f"{self.directory}/{self.file}"


def parse_manifest(text: str, name: str = "") -> Manifest:
    """Parse a manifest (`key<TAB>value` lines; `table<TAB><schema.table><TAB><rows>`)."""
    values: dict[str, str] = {}
    tables: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, _, rest = line.partition("\t")
        if key == "table":
            table, _, rows = rest.rpartition("\t")
            if not table or not rows.isdigit():
                raise BackupError(f"manifest {name or '?'}:{number}: bad table line {line!r}")
            tables[table] = int(rows)
        else:
            values[key] = rest
    missing = [k for k in ("version", "database", "created", "file", "encrypted", "size", "sha256")
               if k not in values]
    if missing:
        raise BackupError(f"manifest {name or '?'} is incomplete: no {', '.join(missing)}")
    if values["version"] != "1" or not re.fullmatch(r"[0-9a-f]{64}", values["sha256"]):
        raise BackupError(f"manifest {name or '?'}: unknown version or bad sha256")
    return Manifest(
        database=values["database"],
        created=dt.datetime.strptime(values["created"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC),
        file=values["file"], encrypted=values["encrypted"] == "yes", size=int(values["size"]),
        sha256=values["sha256"], tables=tables, name=name)


def parse_counts(text: str) -> dict[str, int]:
    """`<schema.table><TAB><rows>` lines (pg_tools.sh restore-check) -> {table: rows}."""
    counts = {}
    for line in text.splitlines():
        if line.strip():
            table, _, rows = line.rpartition("\t")
            counts[table] = int(rows)
    return counts


def count_problems(recorded: Mapping[str, int], restored: Mapping[str, int]) -> list[str]:
    """Differences between the rows recorded at dump time and those found after the restore."""
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        want, got = recorded.get(table), restored.get(table)
        if want is None:
            problems.append(f"table {table} restored but not in the manifest")
        elif got is None:
            problems.append(f"table {table} in the manifest but not restored")
        elif want != got:
            problems.append(f"table {table}: {got} rows restored, {want} recorded at dump time")
    return problems


def backup_time(manifest_name: str) -> dt.datetime:
    match = STAMP.fullmatch(manifest_name)
    if not match:
        raise ValueError(f"not a backup manifest name: {manifest_name!r}")
    return dt.datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def select_retained(manifest_names: Iterable[str], keep_daily: int, keep_weekly: int) -> set[str]:
    """Which complete backups retention keeps (the rule pg_backup.sh implements in shell).

    Newest first: the newest backup of each of the last `keep_daily` days that have one, plus
    the newest of each of the last `keep_weekly` ISO weeks that have one. Days are UTC.
    """
    kept: set[str] = set()
    last_day = last_week = None
    days = weeks = 0
    for name in sorted(manifest_names, reverse=True):  # the stamp sorts by time
        when = backup_time(name)
        day, week = when.date(), when.isocalendar()[:2]
        if day != last_day and days < keep_daily:
            kept.add(name)
            days, last_day = days + 1, day
        if week != last_week and weeks < keep_weekly:
            kept.add(name)
            weeks, last_week = weeks + 1, week
    return kept


def human_age(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"
