"""Point-in-time recovery, the pure half: the restore drill's shell commands, the reading of
`pgbackrest info`, and the checks of a target time. `ops/backup/pitr_drill.py` runs them.

Every command is one string built with `sh`; the target time is formatted here from a parsed
datetime, never passed through from the operator's text.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from ops.backup.manifest import BackupError
from ops.catalog.model import Environment
from ops.host.commands import sh
from ops.render import pitr
from ops.render.files import DATA_DIR, TEXTFILE_DIR

DRILL_DIR = f"{DATA_DIR}/drill"
DRILL_CONTAINER = "sa-pitr-drill"
PGDATA = "/var/lib/postgresql/data/pgdata"  # as in production: pgbackrest.conf's pg1-path
SOCKET_DIR = "/tmp"  # noqa: S108 - inside the scratch container: socket only, no TCP
MARKER_MARGIN = dt.timedelta(seconds=1)  # between a marker's `at` and its commit
DRILL_PROM = f"{TEXTFILE_DIR}/superapp_restore_drill_pitr.prom"
DRILL_SUCCESS_PROM = f"{TEXTFILE_DIR}/superapp_restore_drill_pitr_success.prom"


def parse_target(text: str | None, now: dt.datetime) -> dt.datetime | None:
    """`--data target_time` -> an aware UTC datetime (None: the latest point)."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise BackupError(f"--data target_time={text!r} is not an ISO 8601 time "
                          "(like 2026-12-03T02:40:00Z)") from None
    if value.tzinfo is None:
        raise BackupError(f"--data target_time={text!r} has no time zone: add Z (UTC) or an "
                          "offset like +03:00, so the restore cannot pick the wrong hour")
    value = value.astimezone(dt.UTC)
    if value > now:
        raise BackupError(f"--data target_time={text!r} is in the future (now "
                          f"{iso(now)})")
    return value


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")


@dataclass(frozen=True)
class RepoBackup:
    label: str
    kind: str  # full, diff, incr
    start: dt.datetime
    stop: dt.datetime
    repo_bytes: int


def parse_info(text: str, stanza: str) -> list[RepoBackup]:
    """`pgbackrest --output=json info` -> the stanza's backups, oldest first."""
    try:
        data = next(s for s in json.loads(text) if s.get("name") == stanza)
    except (ValueError, StopIteration, AttributeError, TypeError):
        raise BackupError(f"pgbackrest info printed no stanza {stanza!r}") from None
    status = data.get("status", {})
    if status.get("code") not in (0, 2):
        raise BackupError(f"stanza {stanza}: {status.get('message', 'unknown status')}")
    return [RepoBackup(b["label"], b["type"],
                       dt.datetime.fromtimestamp(b["timestamp"]["start"], dt.UTC),
                       dt.datetime.fromtimestamp(b["timestamp"]["stop"], dt.UTC),
                       int(b["info"]["repository"]["delta"]))
            for b in data.get("backup", [])]


def check_target(backups: list[RepoBackup], target: dt.datetime | None, where: str) -> None:
    """Refuse a target no backup can reach: none at all, or before the oldest one ended."""
    if not backups:
        raise BackupError(f"{where} holds no backup yet: nothing to restore")
    oldest = backups[0].stop
    if target is not None and target < oldest:
        raise BackupError(f"target {iso(target)} is before the oldest restorable time "
                          f"{iso(oldest)} (end of backup {backups[0].label}): choose a later "
                          "target")


def repo_description(environment: Environment) -> str:
    settings = environment.settings["pitr"]
    backup = environment.backup_host
    host = backup.name if backup else "?"
    return f"repository s3://{settings['bucket']}/{environment.name} on {host}"


def pgbackrest_in_image(environment: Environment, *args: str, name: str | None = None,
                        volumes: tuple[str, ...] = ()) -> list[str]:
    """argv of a one-off postgres-image container on the backup host with its pgBackRest
    config (host network: the repository is this host's own published port)."""
    argv = ["docker", "run", "--rm", "--network", "host", "-u", "postgres",
            "-v", f"{pitr.PGBR_DIR}:{pitr.IN_CONTAINER_DIR}:ro"]
    for v in volumes:
        argv += ["-v", v]
    if name:
        argv += ["--name", name]
    return [*argv, environment.infra_image("postgres"), *args]


def info_command(environment: Environment) -> str:
    stanza = environment.settings["pitr"]["stanza"]
    return sh(*pgbackrest_in_image(environment, "pgbackrest", f"--stanza={stanza}",
                                   "--output=json", "info"))


def restore_command(environment: Environment, target: dt.datetime | None, run_id: str) -> str:
    """Start the scratch instance: restore into a fresh directory, then run PostgreSQL on a
    socket only, archiving off (it must never write to the repository)."""
    stanza = environment.settings["pitr"]["stanza"]
    restore = ["pgbackrest", f"--stanza={stanza}", f"--pg1-path={PGDATA}", "--archive-mode=off",
               "--log-level-console=warn", "--log-level-stderr=warn"]
    if target is None:
        restore += ["--type=default"]
    else:
        restore += ["--type=time", f"--target={iso(target)}", "--target-action=promote"]
    script = " && ".join([
        sh("mkdir", "-m", "700", PGDATA), sh(*restore, "restore"),
        "exec " + sh("postgres", "-D", PGDATA, "-c", "listen_addresses=", "-c",
                     f"unix_socket_directories={SOCKET_DIR}", "-c", "archive_mode=off")])
    scratch = f"{DRILL_DIR}/{run_id}"
    uid = environment.settings["data_uids"]["postgres"]
    argv = pgbackrest_in_image(environment, "-c", script, name=f"{DRILL_CONTAINER}-{run_id}",
                               volumes=(f"{scratch}:/var/lib/postgresql/data",))
    argv[2:3] = ["-d"]  # detached, kept after exit (its log says why it stopped)
    entry = argv.index(environment.infra_image("postgres"))
    argv[entry:entry] = ["--entrypoint", "bash"]
    return " && ".join([sh("install", "-d", "-m", "700", "-o", str(uid), scratch), sh(*argv)])


def scratch_sql(run_id: str, database: str, sql: str) -> str:
    """psql in the scratch instance (socket only), unaligned output."""
    return sh("docker", "exec", f"{DRILL_CONTAINER}-{run_id}", "psql", "-X", "-qAt", "-v",
              "ON_ERROR_STOP=1", "-h", SOCKET_DIR, "-U", "postgres", "-d", database, "-c", sql)


def production_sql(database: str, sql: str) -> str:
    """psql as the superuser in the production postgres container (socket, trust)."""
    return sh("docker", "exec", "postgres", "psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1",
              "-U", "postgres", "-d", database, "-c", sql)


def cleanup_command(run_id: str) -> str:
    return "; ".join([sh("docker", "rm", "-f", f"{DRILL_CONTAINER}-{run_id}"),
                      sh("rm", "-rf", f"{DRILL_DIR}/{run_id}")]) + " >/dev/null 2>&1; true"


def logs_command(run_id: str) -> str:
    return sh("docker", "logs", "--tail", "15", f"{DRILL_CONTAINER}-{run_id}") + " 2>&1"


def running_command(run_id: str) -> str:
    return sh("docker", "inspect", "-f", "{{.State.Running}}", f"{DRILL_CONTAINER}-{run_id}")


# Rows of every user table, one `<schema.table>\t<rows>` line each (as the dump manifests).
COUNT_SQL = ("SELECT string_agg(format('SELECT %L || E''\\t'' || count(*) FROM ONLY %s', t, t), "
             "' UNION ALL ') FROM (SELECT quote_ident(n.nspname) || '.' || "
             "quote_ident(c.relname) AS t FROM pg_class c JOIN pg_namespace n "
             "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
             "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
             "ORDER BY 1) s")


def marker_before_sql(target: dt.datetime) -> str:
    return ("SELECT id || '|' || at FROM superapp_pitr.marker WHERE at <= "  # noqa: S608 - formatted here
            f"'{iso(target - MARKER_MARGIN)}' ORDER BY at DESC LIMIT 1")


def marker_after_sql(target: dt.datetime) -> str:
    return ("SELECT id || '|' || at FROM superapp_pitr.marker WHERE at > "  # noqa: S608 - formatted here
            f"'{iso(target + MARKER_MARGIN)}' ORDER BY at LIMIT 1")


def drill_metrics(ok: bool, seconds: float, now: dt.datetime) -> tuple[str, str | None]:
    """(the last run's metrics, the last success's metrics or None when this run failed)."""
    t = int(now.timestamp())
    run = (f'superapp_restore_drill_success{{kind="pitr"}} {int(ok)}\n'
           f'superapp_restore_drill_duration_seconds{{kind="pitr"}} {seconds:.1f}\n'
           f'superapp_restore_drill_last_run_timestamp_seconds{{kind="pitr"}} {t}\n')
    success = f'superapp_restore_drill_last_success_timestamp_seconds{{kind="pitr"}} {t}\n'
    return run, success if ok else None
