"""ops/backup/: manifests, retention, command builders, the freshness gate, and the drill's
logic against a scripted Remote (the real drill runs in tests/integration/test_backup.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ops.backup.commands import (
    drop_scratch_command,
    first_backups_command,
    parse_latest_manifests,
    read_backup_metrics_command,
    read_latest_manifests_command,
    restore_check_command,
    verify_checksum_command,
)
from ops.backup.drill import run_drill
from ops.backup.freshness import (
    FreshnessWaiver,
    archive_freshness_problems,
    backup_freshness_problems,
    load_freshness_waivers,
    parse_backup_metrics,
)
from ops.backup.manifest import BackupError, count_problems, parse_manifest, select_retained
from ops.catalog import REPO_ROOT

SHA = "ab" * 32
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
MANIFEST = (
    "version\t1\ndatabase\tpayments\ncreated\t2026-11-26T02:15:03Z\n"
    "file\tpayments-20261126T021503Z.dump\nformat\tcustom\nencrypted\tno\nsize\t3988\n"
    f"sha256\t{SHA}\ntable\tpublic.items\t12\ntable\tpublic.\"Odd\tName\"\t3\n"
)
# recorded output of the backup job's metrics file (pg_backup.sh), two databases
METRICS = """\
# HELP superapp_backup_last_success_timestamp_seconds Unix time the last successful backup started.
# TYPE superapp_backup_last_success_timestamp_seconds gauge
superapp_backup_last_success_timestamp_seconds{database="payments"} 1795659303
# HELP superapp_backup_last_duration_seconds Wall time of the last successful backup.
# TYPE superapp_backup_last_duration_seconds gauge
superapp_backup_last_duration_seconds{database="payments"} 4
superapp_backup_last_size_bytes{database="payments"} 3988
superapp_backup_last_success_timestamp_seconds{database="taxi"} 1795480000
"""


def test_parse_manifest():
    m = parse_manifest(MANIFEST, "payments-20261126T021503Z.manifest")
    assert m.database == "payments" and m.size == 3988 and not m.encrypted
    assert m.created == dt.datetime(2026, 11, 26, 2, 15, 3, tzinfo=dt.UTC)
    assert m.path == "/var/backups/superapp/payments/payments-20261126T021503Z.dump"
    assert dict(m.tables) == {"public.items": 12, 'public."Odd\tName"': 3}


@pytest.mark.parametrize(("text", "error"), [
    (MANIFEST.replace(f"sha256\t{SHA}\n", ""), "is incomplete: no sha256"),
    (MANIFEST.replace("version\t1", "version\t2"), "unknown version or bad sha256"),
    (MANIFEST.replace("public.items\t12", "public.items\tmany"), "m:9: bad table line"),
])
def test_broken_manifest_is_named(text, error):
    with pytest.raises(BackupError, match=error):
        parse_manifest(text, "m")


def test_count_problems():
    assert count_problems({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert count_problems({"a": 1, "b": 2}, {"a": 0, "c": 5}) == [
        "table a: 0 rows restored, 1 recorded at dump time",
        "table b in the manifest but not restored",
        "table c restored but not in the manifest",
    ]


def names(*stamps: str) -> list[str]:
    return [f"db-{s}.manifest" for s in stamps]


def test_retention_keeps_newest_per_day_then_per_iso_week():
    # 2026-11-26 is a Thursday (ISO week 48)
    backups = names("20261126T021500Z", "20261125T141500Z", "20261125T021500Z",
                    "20261124T021500Z", "20261123T021500Z",  # Mon, week 48
                    "20261122T021500Z", "20261116T021500Z",  # Sun + Mon of week 47
                    "20261110T021500Z", "20261101T021500Z", "20261020T021500Z")
    kept = select_retained(backups, keep_daily=3, keep_weekly=3)
    assert sorted(kept, reverse=True) == names(
        "20261126T021500Z",  # day 1, week 48
        "20261125T141500Z",  # day 2 (newest of that day)
        "20261124T021500Z",  # day 3
        "20261122T021500Z",  # week 47 (newest of that week)
        "20261110T021500Z",  # week 46
    )


def test_retention_edge_cases():
    assert select_retained([], 7, 4) == set()
    one = names("20261126T021500Z")
    assert select_retained(one, 1, 0) == set(one)
    # daily only: exactly N distinct days, never two of the same day
    many = names(*(f"202611{d:02d}T{h:02d}1500Z" for d in range(1, 27) for h in (2, 14)))
    kept = select_retained(many, 7, 0)
    assert len(kept) == 7 and all("T141500Z" in n for n in kept)
    with pytest.raises(ValueError, match="not a backup manifest name"):
        select_retained(["junk.manifest"], 1, 1)


def test_read_latest_manifests_command_and_parse():
    assert read_latest_manifests_command(["payments", "ai_gateway"]) == (
        'for d in payments ai_gateway; do m=$(find /var/backups/superapp/"$d" -maxdepth 1 '
        '-name "$d-*.manifest" -printf "%f\\n" 2>/dev/null | sort | tail -n 1); '
        'echo "### $d ${m:-none}"; if [ -n "$m" ]; then cat /var/backups/superapp/"$d"/"$m"; fi; '
        'done')
    out = (f"### payments payments-20261126T021503Z.manifest\n{MANIFEST}"
           "### taxi none\n### chat chat-x.manifest\nversion\t1\n")
    latest = parse_latest_manifests(out)
    assert latest["payments"].sha256 == SHA
    assert latest["taxi"] is None
    assert isinstance(latest["chat"], BackupError)


def test_verify_checksum_command():
    m = parse_manifest(MANIFEST)
    assert verify_checksum_command(m) == (
        "cd /var/backups/superapp/payments && printf '%s\\n' "
        f"'{SHA}  payments-20261126T021503Z.dump' | sha256sum --check --strict --quiet -")


def test_restore_check_command(environments):
    m = parse_manifest(MANIFEST)
    assert restore_check_command(environments["prod"], m, "drill_payments_abc123") == (
        "docker run --rm --network superapp --entrypoint /bin/bash "
        "--volume /opt/superapp/backup/pg_tools.sh:/backup/pg_tools.sh:ro "
        "--volume /etc/superapp/backup:/backup/config:ro "
        "--volume /var/backups/superapp/payments:/backup/out:ro "
        "--env PGHOST=postgres --env PGUSER=postgres --env PGPASSFILE=/backup/config/pgpass "
        "registry.superapp.internal:5000/superapp/postgres:15.18.0 /backup/pg_tools.sh "
        "restore-check /backup/out/payments-20261126T021503Z.dump drill_payments_abc123")
    with_key = restore_check_command(environments["prod"], m, "drill_x", "/run/k")
    assert "--volume /run/k:/backup/key:ro" in with_key
    assert with_key.endswith("drill_x /backup/key/key.pem /backup/key/cert.pem")


def test_drop_scratch_command_only_drops_drill_databases():
    assert drop_scratch_command("drill_payments_abc") == (
        "docker exec postgres psql -X -q -U postgres -d postgres "
        "-c 'DROP DATABASE IF EXISTS \"drill_payments_abc\"'")
    with pytest.raises(ValueError):
        drop_scratch_command("payments")


def test_first_backups_command():
    assert first_backups_command(["payments", "taxi"]) == (
        'for d in payments taxi; do if ! find /var/backups/superapp/"$d" -maxdepth 1 '
        '-name "$d-*.manifest" 2>/dev/null | grep -q .; then '
        '/opt/superapp/backup/pg_backup.sh "$d" 2>&1 | tee -a /var/backups/superapp/backup.log; '
        'fi; done; true')


def test_read_backup_metrics_command_and_parse():
    assert read_backup_metrics_command() == (
        "cat /var/lib/node_exporter/textfile/superapp_backup_*.prom "
        "/var/lib/node_exporter/textfile/superapp_pitr.prom 2>/dev/null; true")
    assert parse_backup_metrics(METRICS) == {
        "payments": {"superapp_backup_last_success_timestamp_seconds": 1795659303.0,
                     "superapp_backup_last_duration_seconds": 4.0,
                     "superapp_backup_last_size_bytes": 3988.0},
        "taxi": {"superapp_backup_last_success_timestamp_seconds": 1795480000.0},
    }


# ---------------------------------------------------------------- the freshness gate

AT = dt.datetime.fromtimestamp(1795659303, dt.UTC) + dt.timedelta(hours=3)  # payments: 3 h old


def test_fresh_backup_lets_the_migration_run(environments):
    assert backup_freshness_problems(environments["prod"], ["payments"], METRICS, AT) == []


def test_stale_backup_blocks_a_migration_in_prod_naming_database_and_age(environments):
    [problem] = backup_freshness_problems(environments["prod"], ["payments", "taxi"], METRICS,
                                          AT)
    # taxi: 1795480000 -> 52h48m before AT
    assert problem.startswith("database taxi: last successful backup is 52h48m old "
                              "(2026-11-24 00:26 UTC), older than the 24h limit; run "
                              "`/opt/superapp/backup/pg_backup.sh taxi` on db-1 first")


def test_missing_backup_blocks_and_says_so(environments):
    [problem] = backup_freshness_problems(environments["prod"], ["chat"], METRICS, AT)
    assert problem.startswith("database chat: no successful backup recorded on db-1")


def test_limit_comes_from_group_data(repo_copy):
    repo_copy.replace("group_data/all.py", r'"freshness_limit_hours": 24',
                      '"freshness_limit_hours": 72')
    assert backup_freshness_problems(repo_copy.load(), ["taxi"], METRICS, AT) == []


def test_only_prod_is_gated_unless_group_data_asks(environments, repo_copy):
    for env in ("staging", "local"):
        assert backup_freshness_problems(environments[env], ["chat"], "", AT) == []
        assert archive_freshness_problems(environments[env], "", AT) == []
    repo_copy.replace("group_data/all.py", r'"freshness_limit_hours": 24',
                      '"freshness_limit_hours": 24, "gate_migrations": True')
    local = repo_copy.load("local")
    [problem] = backup_freshness_problems(local, ["chat"], "", AT)
    assert problem.startswith("database chat: no successful backup recorded on host1")
    [stale] = archive_freshness_problems(local, "", AT)
    assert "no WAL segment has reached the backup repository on host3 yet" in stale


def test_a_stale_wal_archive_blocks_a_migration_in_prod_naming_the_repository_host(
        environments):
    fresh = f"superapp_pitr_archive_last_success_timestamp_seconds {AT.timestamp() - 120:.0f}\n"
    stale = f"superapp_pitr_archive_last_success_timestamp_seconds {AT.timestamp() - 900:.0f}\n"
    prod = environments["prod"]
    assert archive_freshness_problems(prod, METRICS + fresh, AT) == []
    [problem] = archive_freshness_problems(prod, METRICS + stale, AT)
    assert problem.startswith("the last WAL segment reached the backup repository on backup-1 "
                              "0h15m ago, more than the 300s limit: backup-1 may be down")
    [never] = archive_freshness_problems(prod, METRICS, AT)
    assert "no WAL segment has reached the backup repository on backup-1 yet" in never
    for env in ("staging", "local"):
        assert archive_freshness_problems(environments[env], "", AT) == []


def test_a_waiver_lets_a_stale_migration_through_until_it_expires(environments):
    waiver = FreshnessWaiver("backup.freshness:prod:taxi", AT.date(), "restore tested by hand")
    assert backup_freshness_problems(environments["prod"], ["taxi"], METRICS, AT,
                                     [waiver]) == []
    later = AT + dt.timedelta(days=1)
    assert backup_freshness_problems(environments["prod"], ["taxi"], METRICS, later, [waiver])


def test_freshness_waivers_come_from_the_audit_waiver_file(tmp_path: Path):
    path = tmp_path / "audit-waivers.yml"
    path.write_text("waivers:\n"
                    "  - rule: backup.freshness\n    match: \"backup.freshness:prod:taxi\"\n"
                    "    reason: \"dump taken by hand before the release\"\n"
                    "    expires: 2026-11-27\n"
                    "  - rule: rendered.non-root\n    match: x\n"
                    "    reason: \"not a freshness waiver\"\n    expires: 2026-11-27\n")
    assert load_freshness_waivers(path) == [FreshnessWaiver(
        "backup.freshness:prod:taxi", dt.date(2026, 11, 27),
        "dump taken by hand before the release")]


def test_the_audit_ignores_freshness_waivers(tmp_path: Path):
    from ops.audit import run_audit
    path = tmp_path / "w.yml"
    path.write_text("waivers:\n  - rule: backup.freshness\n    match: \"backup.freshness:*\"\n"
                    "    reason: \"belongs to the migration gate\"\n    expires: 2026-11-27\n")
    report = run_audit("prod", waivers=path, repo=False)
    assert not [f for f in report.findings if f.rule.startswith("waiver.")]


# ---------------------------------------------------------------- the drill, scripted host

class ScriptedRemote:
    """A Remote answering by the first matching command prefix; records what ran."""

    name = "db-1"

    def __init__(self, answers: list[tuple[str, tuple[bool, str, str]]]):
        self.answers = answers
        self.ran: list[str] = []

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.ran.append(command)
        for prefix, answer in self.answers:
            if command.startswith(prefix):
                return answer
        return True, "", ""

    def put(self, content: bytes, path: str) -> bool:
        self.ran.append(f"put {path}")
        return True


LISTING = f"### payments payments-20261126T021503Z.manifest\n{MANIFEST}### taxi none\n"
COUNTS = 'public.items\t12\npublic."Odd\tName"\t3\n'


def test_drill_reports_one_row_per_database(environments):
    remote = ScriptedRemote([("for d in", (True, LISTING, "")),
                             ("docker run", (True, COUNTS, ""))])
    report = run_drill(remote, environments["prod"], ["payments", "taxi"], now=NOW)
    ok, missing = report.rows
    assert (ok.database, ok.result, ok.tables, ok.rows, ok.age) == ("payments", "ok", 2, 15,
                                                                    "9h44m")
    assert missing.result == "FAILED: no backup of taxi in /var/backups/superapp/taxi " \
                             "(no *.manifest)"
    assert [r.database for r in report.failed] == ["taxi"]
    assert any(c.startswith("docker exec postgres psql") and "DROP DATABASE" in c
               for c in remote.ran)  # scratch dropped even after success
    table = report.table().splitlines()
    assert table[0].split() == ["database", "backup", "age", "tables", "rows", "time", "result"]
    assert len(table) == 3


@pytest.mark.parametrize(("answers", "result"), [
    ([("cd /var/backups", (False, "", "FAILED"))],
     "FAILED: checksum mismatch: /var/backups/superapp/payments/payments-20261126T021503Z.dump "
     "is not the file its manifest recorded"),
    ([("docker run", (False, "", "pg_restore: error: could not read input file: end of file\n"))],
     "FAILED: pg_restore of /var/backups/superapp/payments/payments-20261126T021503Z.dump "
     "failed: pg_restore: error: could not read input file: end of file"),
    ([("docker run", (True, "public.items\t11\n", ""))],
     'FAILED: table public."Odd\tName" in the manifest but not restored; '
     "table public.items: 11 rows restored, 12 recorded at dump time"),
])
def test_drill_failures_are_clear(environments, answers, result):
    remote = ScriptedRemote([("for d in", (True, LISTING, "")), *answers])
    [row] = run_drill(remote, environments["prod"], ["payments"], now=NOW).rows
    assert row.result.startswith(result)


def test_encrypted_backup_needs_the_key_and_the_key_is_removed_after(environments):
    listing = LISTING.replace("encrypted\tno", "encrypted\tyes")
    remote = ScriptedRemote([("for d in", (True, listing, "")),
                             ("docker run", (True, COUNTS, ""))])
    [row, _] = run_drill(remote, environments["prod"], ["payments", "taxi"], now=NOW).rows
    assert "is encrypted: run the drill with --data backup_key=" in row.result
    remote = ScriptedRemote([("for d in", (True, listing, "")),
                             ("docker run", (True, COUNTS, ""))])
    [row, _] = run_drill(remote, environments["prod"], ["payments", "taxi"],
                         key_pair=(b"KEY", b"CERT"), now=NOW).rows
    assert row.ok
    key_dir = remote.ran[1].split()[-1]
    assert remote.ran[1] == f"install -d -m 700 {key_dir}"
    assert f"put {key_dir}/key.pem" in remote.ran
    assert remote.ran[-1] == f"rm -rf {key_dir}"


def offsite_functions() -> dict:
    """offsite.py's definitions (the script runs `main()` on its last line: left out here)."""
    source = (REPO_ROOT / "templates/backup/offsite.py").read_text()
    assert source.rstrip().endswith("\nmain()")
    namespace: dict = {"__name__": "offsite"}
    exec(compile(source.rstrip()[:-len("main()")], "offsite.py", "exec"), namespace)  # noqa: S102
    return namespace


def test_offsite_retention_is_the_rule_of_the_backups_here() -> None:
    """The copies follow pg_backup.sh's rule (select_retained is its Python twin), over the
    copies and the backups here together."""
    import random

    offsite = offsite_functions()
    rng = random.Random(7)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    for _ in range(200):
        stamps = {(start + dt.timedelta(hours=rng.randrange(0, 24 * 90)))
                  .strftime("%Y%m%dT%H%M%SZ") for _ in range(rng.randrange(0, 40))}
        daily, weekly = rng.randrange(0, 9), rng.randrange(0, 6)
        names = {f"payments-{s}.manifest" for s in stamps}
        expected = {n[len("payments-"):-len(".manifest")]
                    for n in select_retained(names, daily, weekly)}
        assert offsite["retained"](stamps, daily, weekly) == expected


def test_a_host_with_no_backup_here_deletes_no_recent_copy() -> None:
    """A db host rebuilt empty (or the db role moved): its first sync once deleted the copy
    of every older backup, the only ones left. Only what retention drops over the copies and
    the backups here together may go."""
    offsite = offsite_functions()
    copies = [f"payments-2026120{d}T021500Z.{kind}.enc" for d in range(1, 7)
              for kind in ("dump", "sha256", "manifest")]
    stamps = {offsite["stamp_of"](c) for c in copies}
    assert offsite["retained"](stamps, 7, 4) == stamps  # six days, all within keep_daily 7
    assert offsite["retained"](stamps, 2, 1) == {"20261206T021500Z", "20261205T021500Z"}
    assert offsite["stamp_of"]("not-a-backup.enc") is None
