"""Restore drill: prove that both lines of backup restore.

    pyinfra -y inventories/<env>.py tasks/restore_drill.py     # both, PITR to the latest point
    pyinfra -y inventories/<env>.py tasks/restore_drill.py --data target_time=2026-12-03T02:40:00Z
    pyinfra -y inventories/<env>.py tasks/restore_drill.py --data only=pitr  # or only=dumps
    pyinfra -y inventories/<env>.py tasks/restore_drill.py --data databases=payments,taxi
    # encrypted backups (backups.encrypt_to_public_key): the key stays on the controller and
    # is uploaded into a 0700 directory under /run only for the drill
    pyinfra -y inventories/prod.py tasks/restore_drill.py \
        --data backup_key=/secure/backup-key.pem --data backup_cert=/secure/backup-cert.pem

Point in time (with `pitr`, on the backup host, ops/backup/pitr_drill.py): the whole cluster
restored from the pgBackRest repository to `target_time` (default: the latest archived point)
into a scratch instance, never production; a heartbeat marker committed before the target must
be there and none after it; databases unchanged since their dump must match its row counts.
Its result and time go to node-exporter (RestoreDrillStale). A target before the oldest backup
is refused with the oldest restorable time.

Dumps, per database (on the db host): newest manifest -> sha256 of the dump -> pg_restore into
a scratch database `drill_<db>_<random>` -> row counts equal those recorded at dump time ->
scratch dropped. Prints one row per database; any failure (missing, corrupt, unrestorable,
rows differ) makes the run exit non-zero with the reason on that database's row. The logic
lives in ops/backup/; the runbook it proves is ops/runbooks/restore.md.
"""

import datetime as dt
from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from ops.backup.drill import run_drill
from ops.backup.manifest import BackupError
from ops.backup.pitr import parse_target
from ops.backup.pitr_drill import run_pitr_drill
from ops.catalog import ConfigError, load_environment
from ops.host.remote import PyinfraRemote
from ops.render.pitr import enabled as pitr_enabled
from ops.rollout.run import env_name


def key_pair() -> tuple[bytes, bytes] | None:
    key, cert = host.data.get("backup_key"), host.data.get("backup_cert")
    if not key and not cert:
        return None
    if not (key and cert):
        raise PyinfraError("pass both --data backup_key=<file> and --data backup_cert=<file>")
    try:
        return Path(key).read_bytes(), Path(cert).read_bytes()
    except OSError as e:
        raise PyinfraError(f"cannot read the backup key pair: {e}") from None


def drill(state, host, env: str, databases: list[str] | None,  # noqa: ARG001 - pyinfra's args
          keys: tuple[bytes, bytes] | None) -> bool:
    environment = load_environment(env)
    print(f"--> restore drill on {host.name} ({env})", flush=True)
    try:
        report = run_drill(PyinfraRemote(host), environment, databases, keys)
    except BackupError as e:
        print(f"\nRESTORE DRILL FAILED: {e}", flush=True)
        return False
    print("\n" + report.table(), flush=True)
    if report.failed:
        names = ", ".join(r.database for r in report.failed)
        print(f"\nRESTORE DRILL FAILED for {len(report.failed)} database(s): {names}", flush=True)
        return False
    print(f"\nrestore drill ok: {len(report.rows)} database(s)", flush=True)
    return True


def pitr_drill(state, host, env: str, target_text: str | None) -> bool:
    environment = load_environment(env)
    db_name = environment.db_host.name
    db = next((h for h in state.inventory.get_active_hosts() if h.name == db_name), None)
    print(f"--> point-in-time restore drill on {host.name} ({env})", flush=True)
    try:
        target = parse_target(target_text, dt.datetime.now(dt.UTC))
        report = run_pitr_drill(PyinfraRemote(host), PyinfraRemote(db) if db else None,
                                environment, target)
    except BackupError as e:
        print(f"\nPITR DRILL FAILED: {e}", flush=True)
        return False
    print("\n" + report.table(), flush=True)
    if report.failed:
        print(f"\nPITR DRILL FAILED: {'; '.join(report.failed)}", flush=True)
        return False
    print(f"\npitr drill ok: restored to {report.target} in {report.seconds:.0f}s", flush=True)
    return True


ENV = env_name()
try:
    ENVIRONMENT = load_environment(ENV)
except ConfigError as exc:
    raise PyinfraError(str(exc)) from None
ONLY = str(host.data.get("only") or "")
if ONLY not in ("", "pitr", "dumps"):
    raise PyinfraError(f"--data only={ONLY!r}: use only=pitr or only=dumps")
TARGET = str(host.data.get("target_time") or "") or None
if TARGET:
    try:  # refused before any host is touched
        parse_target(TARGET, dt.datetime.now(dt.UTC))
    except BackupError as exc:
        raise PyinfraError(str(exc)) from None
BACKUP_HOST = ENVIRONMENT.backup_host if pitr_enabled(ENVIRONMENT) else None
if ONLY == "pitr" and BACKUP_HOST is None:
    raise PyinfraError(f"{ENV} has no point-in-time recovery (group_data `pitr`, a `backup` host)")
if BACKUP_HOST is not None and ONLY != "dumps" and host.name == BACKUP_HOST.name:
    python.call(name=f"Restore drill: the cluster to a point in time, on {host.name}",
                function=pitr_drill, env=ENV, target_text=TARGET)
if host.name == ENVIRONMENT.db_host.name and ONLY != "pitr":
    wanted = host.data.get("databases")
    python.call(name=f"Restore drill: newest backup of each database on {host.name}",
                function=drill, env=ENV,
                databases=[d for d in str(wanted).split(",") if d] if wanted else None,
                keys=key_pair())
