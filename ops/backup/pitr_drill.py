"""The point-in-time restore drill (tasks/restore_drill.py): restore the whole cluster from
the pgBackRest repository to a time, into a scratch instance on the backup host (never into
production, and proving the data comes back without the db host), then check it.

Checks: the newest heartbeat marker committed before the target is there and none committed
after it is; with no target, a marker written by the drill itself (and archived) is there.
Row counts: each database whose newest dump (the logical second line) was taken before the
target and which production still holds unchanged must restore with exactly the dump's counts;
a database written since its dump is reported, not compared (its counts moved on for real).
"""

from __future__ import annotations

import datetime as dt
import secrets as pysecrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.backup import pitr as P
from ops.backup.commands import parse_latest_manifests, read_latest_manifests_command
from ops.backup.manifest import BackupError, Manifest, count_problems, parse_counts
from ops.catalog.model import Environment
from ops.console import format_table
from ops.host.commands import sh
from ops.host.remote import Remote
from ops.render.backup import databases as all_databases

READY_TIMEOUT = 900
ARCHIVE_TIMEOUT = 180


@dataclass
class PitrReport:
    target: str
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (check, detail, result)
    seconds: float = 0.0

    def add(self, check: str, detail: str, ok: bool | None) -> None:
        self.checks.append((check, detail, "ok" if ok else ("-" if ok is None else "FAILED")))

    @property
    def failed(self) -> list[str]:
        return [f"{c}: {d}" for c, d, r in self.checks if r == "FAILED"]

    def table(self) -> str:
        return format_table(("check", "detail", "result"), self.checks)


def run(remote: Remote, command: str, what: str, timeout: int = 300) -> str:
    ok, out, err = remote.run(command, timeout=timeout)
    if not ok:
        last = [ln for ln in (err or out).strip().splitlines() if ln.strip()][-2:]
        raise BackupError(f"{remote.name}: {what} failed: {' / '.join(last) or 'no output'}")
    return out


def run_pitr_drill(backup: Remote, db: Remote | None, environment: Environment,
                   target: dt.datetime | None, now: Callable[[], dt.datetime] | None = None,
                   ) -> PitrReport:
    """Restore to `target` (None: the latest archived point) on `backup` and check it.
    `db` (the db host) gives the markers and the dumps; without it only the restore runs."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    start = time.monotonic()
    repo = P.repo_description(environment)
    report = PitrReport(P.iso(target) if target else "latest")
    try:
        info = run(backup, P.info_command(environment), f"reading the {repo}", timeout=120)
        backups = P.parse_info(info, environment.settings["pitr"]["stanza"])
    except BackupError as e:
        raise BackupError(f"{repo}: {e}") from None
    P.check_target(backups, target, repo)
    report.add("repository", f"{len(backups)} backup(s), oldest restorable "
                             f"{P.iso(backups[0].stop)}", True)
    present, absent = expected_markers(db, target) if db else (None, None)
    run_id = pysecrets.token_hex(4)
    try:
        run(backup, P.restore_command(environment, target, run_id), "starting the restore")
        wait_promoted(backup, run_id, repo)
        report.add("restore", f"to {report.target} in {time.monotonic() - start:.0f}s", True)
        check_markers(backup, run_id, target, present, absent, report)
        if db:
            check_counts(backup, db, environment, run_id, target, report)
    finally:
        backup.run(P.cleanup_command(run_id), timeout=120)
    report.seconds = time.monotonic() - start
    write_metrics(backup, not report.failed, report.seconds, clock())
    return report


def expected_markers(db: Remote, target: dt.datetime | None) -> tuple[str | None, str | None]:
    """(id of a marker that must be restored, id of one that must not), read in production.
    With no target the drill writes its own marker and waits until its WAL is archived."""
    if target is not None:
        before = run(db, P.production_sql("postgres", P.marker_before_sql(target)),
                     "reading the heartbeat markers").strip()
        after = run(db, P.production_sql("postgres", P.marker_after_sql(target)),
                    "reading the heartbeat markers").strip()
        return (before.split("|")[0] or None), (after.split("|")[0] or None)
    marker = run(db, P.production_sql("postgres", (
        "INSERT INTO superapp_pitr.marker (note) VALUES ('restore drill') RETURNING id")),
        "writing the drill's marker").strip().splitlines()[0]
    segment = run(db, P.production_sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())"),
                  "switching the WAL segment").strip()
    deadline = time.monotonic() + ARCHIVE_TIMEOUT
    while time.monotonic() < deadline:
        archived = run(db, P.production_sql(
            "postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"),
            "reading pg_stat_archiver").strip()
        if archived and archived[8:] >= segment[8:]:  # same timeline: names sort by position
            return marker, None
        time.sleep(2)
    raise BackupError(f"{db.name}: WAL segment {segment} was not archived within "
                      f"{ARCHIVE_TIMEOUT}s: archiving is failing (see PitrArchiveLagging)")


def wait_promoted(backup: Remote, run_id: str, repo: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ok, out, _ = backup.run(P.scratch_sql(run_id, "postgres", "SELECT pg_is_in_recovery()"))
        if ok and out.strip() == "f":
            return
        ok, out, _ = backup.run(P.running_command(run_id))
        if not ok or out.strip() != "true":
            _, logs, _ = backup.run(P.logs_command(run_id))
            lines = [ln for ln in logs.strip().splitlines() if ln.strip()][-3:]
            raise BackupError(f"restore from the {repo} failed: " + " / ".join(lines))
        time.sleep(2)
    raise BackupError(f"the scratch instance did not finish recovery in {READY_TIMEOUT}s")


def check_markers(backup: Remote, run_id: str, target: dt.datetime | None, present: str | None,
                  absent: str | None, report: PitrReport) -> None:
    def has(marker: str) -> bool:
        return run(backup, P.scratch_sql(run_id, "postgres", (
            f"SELECT count(*) FROM superapp_pitr.marker WHERE id = {int(marker)}")),  # noqa: S608 - formatted here
            "reading a marker").strip() == "1"

    if present:
        report.add("marker before", f"id {present} restored", has(present))
    else:
        report.add("marker before", "no marker before the target in production", None)
    if target is not None:
        later = run(backup, P.scratch_sql(run_id, "postgres", (
            f"SELECT count(*) FROM superapp_pitr.marker WHERE at > '{P.iso(target)}'")),  # noqa: S608 - formatted here
            "reading the markers").strip()
        detail = f"{later} row(s) newer than the target" + (
            f"; id {absent} not restored" if absent else "")
        report.add("marker after", detail, later == "0" and not (absent and has(absent)))


def table_counts(remote: Remote, sql: Callable[[str, str], str], database: str) -> dict[str, int]:
    query = run(remote, sql(database, P.COUNT_SQL), f"listing the tables of {database}").strip()
    if not query:
        return {}
    return parse_counts(run(remote, sql(database, query), f"counting the rows of {database}"))


def check_counts(backup: Remote, db: Remote, environment: Environment, run_id: str,
                 target: dt.datetime | None, report: PitrReport) -> None:
    names = all_databases(environment)
    manifests = parse_latest_manifests(run(db, read_latest_manifests_command(names),
                                           "reading the dump manifests"))
    for name in names:
        manifest = manifests.get(name)
        if not isinstance(manifest, Manifest):
            report.add(f"rows {name}", "no dump to compare with", None)
            continue
        if target is not None and manifest.created > target:
            report.add(f"rows {name}", f"newest dump {manifest.file} is after the target", None)
            continue
        live = table_counts(db, P.production_sql, name)
        if count_problems(manifest.tables, live):
            report.add(f"rows {name}", f"written since the dump {manifest.file}: not compared",
                       None)
            continue

        def in_scratch(database: str, sql: str) -> str:
            return P.scratch_sql(run_id, database, sql)

        problems = count_problems(manifest.tables, table_counts(backup, in_scratch, name))
        report.add(f"rows {name}", "; ".join(problems[:2]) if problems else
                   f"{sum(manifest.tables.values())} rows in {len(manifest.tables)} table(s) "
                   f"= dump {manifest.file}", not problems)


def write_metrics(backup: Remote, ok: bool, seconds: float, now: dt.datetime) -> None:
    run_text, success_text = P.drill_metrics(ok, seconds, now)
    for path, text in ((P.DRILL_PROM, run_text), (P.DRILL_SUCCESS_PROM, success_text)):
        if text is None:
            continue
        tmp = f"{path}.tmp-{pysecrets.token_hex(3)}"
        if backup.put(text.encode(), tmp):
            backup.run(sh("mv", "-f", tmp, path))
