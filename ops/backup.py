"""Backups on the db host: the restore drill, the retention rule and the migration freshness gate.

Three layers, as elsewhere: pure parsers and command builders (no I/O; tests assert the exact
strings), `run_drill` which drives one host through the `Remote` protocol of ops/rollout.py, and
tasks/restore_drill.py which only orders stages. What the backup job itself does is rendered by
ops/render/backup.py (pg_backup.sh, pg_tools.sh, the cron files); the layout it writes:

    /var/backups/superapp/<db>/<db>-<YYYYmmddTHHMMSSZ>.dump[.cms]   pg_dump -Fc (.cms: encrypted)
    /var/backups/superapp/<db>/<db>-<stamp>.sha256                   sha256sum format
    /var/backups/superapp/<db>/<db>-<stamp>.manifest                 key<TAB>value lines, last
    /var/lib/node_exporter/textfile/superapp_backup_<db>.prom        metrics of the last success

Never puts a secret on a command line: pg_tools.sh reads the password from the 0600 pgpass that
the deploy wrote; a drill of encrypted backups uploads the private key into a 0700 directory
under /run for the duration of the drill and removes it afterwards.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import secrets as pysecrets
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ops.catalog.model import Environment
from ops.render.backup import (
    BACKUP_ROOT,
    BACKUP_SCRIPT,
    CONFIG_DIR,
    IN_CONTAINER,
    LOG_FILE,
    POSTGRES_CONTAINER,
    RECIPIENT_FILE,
    TOOLS_SCRIPT,
)
from ops.render.backup import databases as all_databases
from ops.render.files import TEXTFILE_DIR

STAMP = re.compile(r"(?P<db>[a-z][a-z0-9_-]*)-(?P<stamp>\d{8}T\d{6}Z)\.manifest")
METRIC_LINE = re.compile(
    r'^(?P<name>superapp_backup_[a-z_]+)\{database="(?P<db>[^"]+)"\}\s+(?P<value>\S+)\s*$')
LAST_SUCCESS = "superapp_backup_last_success_timestamp_seconds"
FRESHNESS_RULE = "backup.freshness"  # waivers: rule id, key `backup.freshness:<env>:<db>`
GATED_ENVS = ("prod",)  # where a stale backup refuses a migration
DRILL_KEY_DIR = "/run/superapp-drill"


class BackupError(Exception):
    """A backup or drill problem; the message names the host, database and file."""


# ---------------------------------------------------------------------------------------------
# pure: manifests, counts, retention
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# pure: command builders (one string each, quoted by shlex in one place)
# ---------------------------------------------------------------------------------------------

def sh(*argv: str) -> str:
    return shlex.join(argv)


def read_latest_manifests_command(databases: Sequence[str]) -> str:
    """For each database: `### <db> <manifest name or none>` then that manifest's content."""
    loop = (
        'for d in {dbs}; do '
        'm=$(find {root}/"$d" -maxdepth 1 -name "$d-*.manifest" -printf "%f\\n" 2>/dev/null '
        '| sort | tail -n 1); '
        'echo "### $d ${{m:-none}}"; '
        'if [ -n "$m" ]; then cat {root}/"$d"/"$m"; fi; '
        'done'
    )
    return loop.format(dbs=" ".join(shlex.quote(d) for d in databases),
                       root=shlex.quote(BACKUP_ROOT))


def parse_latest_manifests(output: str) -> dict[str, Manifest | BackupError | None]:
    """Output of `read_latest_manifests_command` -> {db: newest Manifest, its error, or None}."""
    found: dict[str, Manifest | BackupError | None] = {}
    current, name, lines = None, "", []

    def flush() -> None:
        if current is None:
            return
        try:
            found[current] = parse_manifest("\n".join(lines), name) if name != "none" else None
        except BackupError as e:  # reported on that database's row, the others still run
            found[current] = e

    for line in output.splitlines():
        if line.startswith("### "):
            flush()
            _, current, name = line.split(" ", 2)
            lines = []
        else:
            lines.append(line)
    flush()
    return found


def verify_checksum_command(manifest: Manifest) -> str:
    """sha256 of the dump against the one recorded in its manifest (non-zero on mismatch)."""
    line = f"{manifest.sha256}  {manifest.file}"
    return f"cd {shlex.quote(manifest.directory)} && printf '%s\\n' {shlex.quote(line)} " \
           f"| sha256sum --check --strict --quiet -"


def scratch_name(database: str, token: str) -> str:
    """A scratch database for the drill: `drill_<db>_<token>` (pg_tools.sh insists on drill_*)."""
    return f"drill_{database.replace('-', '_')}_{token}"


def restore_check_command(environment: Environment, manifest: Manifest, scratch: str,
                          key_dir: str | None = None) -> str:
    """Restore the dump into `scratch` in a one-off postgres container; print row counts.

    `key_dir` (encrypted backups): a host directory holding `key.pem` and `cert.pem`.
    """
    argv = ["docker", "run", "--rm", "--network",
            environment.settings["docker_network"]["name"], "--entrypoint", "/bin/bash",
            "--volume", f"{TOOLS_SCRIPT}:{IN_CONTAINER['tools']}:ro",
            "--volume", f"{CONFIG_DIR}:{IN_CONTAINER['config']}:ro",
            "--volume", f"{manifest.directory}:{IN_CONTAINER['out']}:ro"]
    if key_dir:
        argv += ["--volume", f"{key_dir}:/backup/key:ro"]
    argv += ["--env", f"PGHOST={POSTGRES_CONTAINER}", "--env", "PGUSER=postgres",
             "--env", f"PGPASSFILE={IN_CONTAINER['config']}/pgpass",
             environment.infra_image("postgres"), IN_CONTAINER["tools"], "restore-check",
             f"{IN_CONTAINER['out']}/{manifest.file}", scratch]
    if key_dir:
        argv += ["/backup/key/key.pem", "/backup/key/cert.pem"]
    return sh(*argv)


def drop_scratch_command(scratch: str) -> str:
    """Safety net after a drill: the scratch database is gone even if the container was killed."""
    if not re.fullmatch(r"drill_[a-z0-9_]+", scratch):
        raise ValueError(f"not a drill scratch database: {scratch!r}")
    return sh("docker", "exec", POSTGRES_CONTAINER, "psql", "-X", "-q", "-U", "postgres",
              "-d", "postgres", "-c", f'DROP DATABASE IF EXISTS "{scratch}"')


def first_backups_command(databases: Sequence[str]) -> str:
    """Back up, once, each database that has no complete backup yet (the `backup` unit's action
    on first install, so the drill and the freshness gate have something before the first
    night). Never fails the deploy: each run's one log line is printed for the progress output.
    """
    loop = (
        'for d in {dbs}; do '
        'if ! find {root}/"$d" -maxdepth 1 -name "$d-*.manifest" 2>/dev/null | grep -q .; then '
        '{script} "$d" 2>&1 | tee -a {log}; fi; '
        'done; true'
    )
    return loop.format(dbs=" ".join(shlex.quote(d) for d in databases),
                       root=shlex.quote(BACKUP_ROOT), script=shlex.quote(BACKUP_SCRIPT),
                       log=shlex.quote(LOG_FILE))


def read_backup_metrics_command() -> str:
    """The backup metrics of every database on the db host (the freshness gate's one read)."""
    return f"cat {shlex.quote(TEXTFILE_DIR)}/superapp_backup_*.prom 2>/dev/null; true"


# ---------------------------------------------------------------------------------------------
# pure: the freshness gate
# ---------------------------------------------------------------------------------------------

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


def human_age(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def backup_freshness_problems(environment: Environment, databases: Iterable[str],
                              metrics: str | Mapping[str, Mapping[str, float]],
                              now: dt.datetime,
                              waivers: Sequence[FreshnessWaiver] = ()) -> list[str]:
    """Why a migration of `databases` must not run now; [] when it may.

    Only in GATED_ENVS (prod). `metrics`: the output of `read_backup_metrics_command()` on the
    db host, or its parsed form. A database is refused when its last successful backup is older
    than `backups.freshness_limit_hours` or was never recorded, unless an unexpired waiver
    matches `backup.freshness:<env>:<db>`.
    """
    if environment.name not in GATED_ENVS:
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


# ---------------------------------------------------------------------------------------------
# side effects: the drill, through a Remote (ops/rollout.py)
# ---------------------------------------------------------------------------------------------

@dataclass
class DrillRow:
    database: str
    backup: str = "-"
    age: str = "-"
    tables: int = 0
    rows: int = 0
    seconds: float = 0.0
    result: str = "ok"

    @property
    def ok(self) -> bool:
        return self.result == "ok"


@dataclass
class DrillReport:
    host: str
    rows: list[DrillRow] = field(default_factory=list)

    @property
    def failed(self) -> list[DrillRow]:
        return [r for r in self.rows if not r.ok]

    def table(self) -> str:
        lines = [("database", "backup", "age", "tables", "rows", "time", "result")]
        lines += [(r.database, r.backup, r.age, str(r.tables), str(r.rows), f"{r.seconds:.1f}s",
                   r.result) for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                         for line in lines)


def run_drill(remote, environment: Environment, databases: Sequence[str] | None = None,
              key_pair: tuple[bytes, bytes] | None = None,
              now: dt.datetime | None = None) -> DrillReport:
    """Restore the newest backup of each database into a scratch database and check it.

    `remote` is the db host (ops.rollout.Remote). `key_pair` = (private key PEM, certificate
    PEM) for encrypted backups. Every database is tried; the report says which failed and why.
    """
    databases = list(databases or all_databases(environment))
    now = now or dt.datetime.now(dt.UTC)
    report = DrillReport(remote.name)
    ok, out, err = remote.run(read_latest_manifests_command(databases))
    if not ok:
        raise BackupError(f"{remote.name}: reading {BACKUP_ROOT} failed: {err.strip()}")
    latest = parse_latest_manifests(out)
    key_dir = None
    try:
        if key_pair and any(isinstance(m, Manifest) and m.encrypted for m in latest.values()):
            key_dir = upload_key_pair(remote, key_pair)
        for db in databases:
            report.rows.append(drill_one(remote, environment, db, latest.get(db), key_dir, now))
    finally:
        if key_dir:
            remote.run(sh("rm", "-rf", key_dir))
    return report


def drill_one(remote, environment: Environment, db: str,
              manifest: Manifest | BackupError | None, key_dir: str | None,
              now: dt.datetime) -> DrillRow:
    row = DrillRow(db)
    start = time.monotonic()
    try:
        if isinstance(manifest, BackupError):
            raise manifest
        if manifest is None:
            raise BackupError(f"no backup of {db} in {BACKUP_ROOT}/{db} (no *.manifest)")
        row.backup = manifest.file
        row.age = human_age((now - manifest.created).total_seconds())
        row.tables = len(manifest.tables)
        if manifest.encrypted and not key_dir:
            raise BackupError(f"{manifest.path} is encrypted: run the drill with "
                              "--data backup_key=<private key> --data backup_cert=<cert>")
        ok, out, err = remote.run(verify_checksum_command(manifest))
        if not ok:
            raise BackupError(f"checksum mismatch: {manifest.path} is not the file its manifest "
                              f"recorded (sha256 {manifest.sha256[:12]}...): corrupt or replaced")
        scratch = scratch_name(db, pysecrets.token_hex(3))
        try:
            ok, out, err = remote.run(restore_check_command(environment, manifest, scratch,
                                                            key_dir), timeout=3600)
        finally:
            remote.run(drop_scratch_command(scratch))
        if not ok:
            last = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise BackupError(f"pg_restore of {manifest.path} failed: {last[0]}")
        restored = parse_counts(out)
        row.rows = sum(restored.values())
        problems = count_problems(manifest.tables, restored)
        if problems:
            raise BackupError("; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))
    except BackupError as e:
        row.result = f"FAILED: {e}"
    row.seconds = time.monotonic() - start
    return row


def upload_key_pair(remote, key_pair: tuple[bytes, bytes]) -> str:
    """Private key + certificate into a fresh 0700 directory on the host (removed by the caller)."""
    key_dir = f"{DRILL_KEY_DIR}-{pysecrets.token_hex(4)}"
    ok, _, err = remote.run(sh("install", "-d", "-m", "700", key_dir))
    if not ok:
        raise BackupError(f"{remote.name}: cannot create {key_dir}: {err.strip()}")
    for name, content in zip(("key.pem", "cert.pem"), key_pair, strict=True):
        if not remote.put(content, f"{key_dir}/{name}"):
            raise BackupError(f"{remote.name}: upload of {key_dir}/{name} failed")
    remote.run(sh("chmod", "600", f"{key_dir}/key.pem"))
    return key_dir


__all__ = [
    "BackupError", "DrillReport", "FreshnessWaiver", "Manifest", "RECIPIENT_FILE",
    "backup_freshness_problems", "count_problems", "load_freshness_waivers",
    "parse_backup_metrics", "parse_latest_manifests", "parse_manifest",
    "read_backup_metrics_command", "restore_check_command", "run_drill", "select_retained",
    "verify_checksum_command",
]
