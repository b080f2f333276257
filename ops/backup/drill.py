"""The restore drill: restore the newest backup of each database into a scratch database on
the db host and check it, through a `Remote` (tasks/restore_drill.py orders it; the runbook it
proves is ops/runbooks/restore.md)."""

from __future__ import annotations

import datetime as dt
import secrets as pysecrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ops.backup.commands import (
    drop_scratch_command,
    parse_latest_manifests,
    read_latest_manifests_command,
    restore_check_command,
    scratch_name,
    verify_checksum_command,
)
from ops.backup.manifest import BackupError, Manifest, count_problems, human_age, parse_counts
from ops.catalog.model import Environment
from ops.console import format_table
from ops.host.commands import sh
from ops.host.remote import Remote
from ops.render.backup import BACKUP_ROOT
from ops.render.backup import databases as all_databases

DRILL_KEY_DIR = "/run/superapp-drill"


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
        return format_table(
            ("database", "backup", "age", "tables", "rows", "time", "result"),
            [(r.database, r.backup, r.age, str(r.tables), str(r.rows), f"{r.seconds:.1f}s",
              r.result) for r in self.rows])


def run_drill(remote: Remote, environment: Environment, databases: Sequence[str] | None = None,
              key_pair: tuple[bytes, bytes] | None = None,
              now: dt.datetime | None = None) -> DrillReport:
    """Restore the newest backup of each database into a scratch database and check it.

    `remote` is the db host. `key_pair` = (private key PEM, certificate
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


def drill_one(remote: Remote, environment: Environment, db: str,
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
        finally:  # with db_ha the scratch database lived in the one-off container's own
            if environment.db_ha is None:  # server, gone with it: nothing to drop
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


def upload_key_pair(remote: Remote, key_pair: tuple[bytes, bytes]) -> str:
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
