"""Backups against the testbed's real PostgreSQL on the db host (host1).

The backup unit is rendered with the real Vault secrets and uploaded exactly as the deploy does
(scripts, 0600 pgpass, cron files). The real backups of `livestock` are moved aside for each
test and put back after it. Seed data goes into a table of its own,
`backup_it_<random>`, in the `livestock` service database (the stand-in never touches it; the
backup job only accepts catalog databases, so a separate scratch database could not be backed
up by cron's command). Every test removes its table and the backups it made, even on failure.
The job is run exactly as cron runs it: the cron file's command, through `sh -c`, with cron's
environment. The drill is the real CLI: `pyinfra -y inventories/local.py tasks/restore_drill.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from ops.backup.commands import parse_latest_manifests, read_latest_manifests_command
from ops.backup.drill import run_drill
from ops.backup.manifest import select_retained
from ops.catalog import load_environment
from ops.render import render_host
from ops.secrets.vault import fetch_secrets
from tests.integration.clustered import SshRemote, clustered
from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration

DB = "livestock"
DIR = f"/var/backups/superapp/{DB}"
CRON_ENV = "env -i SHELL=/bin/sh PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def local():
    return load_environment("local")


@pytest.fixture(scope="module")
def db_host(testbed: Testbed, local, deployed):
    """host1 with the backup unit uploaded as the deploy uploads it; yields the host."""
    host = testbed.host(local.db_host.name)
    files = [f for f in render_host(local, host.name, fetch_secrets(local)) if f.unit == "backup"]
    for f in files:
        target = shlex.quote(f.path)
        cmd = (f"mkdir -p {shlex.quote(f.path.rsplit('/', 1)[0])} && umask 077 && "
               f"cat > {target}.it && chmod {f.mode:o} {target}.it && mv -f {target}.it {target}")
        res = subprocess.run(testbed.ssh_argv(host, cmd), input=f.content, text=True,
                             capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr
    return host


def psql(testbed: Testbed, host, sql: str) -> str:
    """Run SQL as the postgres superuser over the container's local socket (no password)."""
    res = subprocess.run(testbed.ssh_argv(host, f"docker exec -i postgres psql -X -q -At "
                                                f"-v ON_ERROR_STOP=1 -U postgres -d {DB}"),
                         input=sql, text=True, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


@contextlib.contextmanager
def seeded_table(testbed: Testbed, host, rows: int) -> Iterator[str]:
    table = f"backup_it_{secrets.token_hex(4)}"
    # newlines, tabs, backslashes and a line that looks like COPY's end marker
    psql(testbed, host, f"CREATE TABLE {table} (id int PRIMARY KEY, note text);"  # noqa: S608
                        f"INSERT INTO {table} SELECT g, CASE WHEN g % 3 = 0 THEN E'a\\nb\\tc' "
                        f"WHEN g % 3 = 1 THEN E'\\\\.' ELSE 'plain' END "
                        f"FROM generate_series(1, {rows}) g;")
    try:
        yield table
    finally:
        psql(testbed, host, f"DROP TABLE IF EXISTS {table};")


@pytest.fixture
def backups_restored(testbed: Testbed, db_host) -> Iterator[None]:
    """The real backups of DB wait aside during the test (retention would prune them) and come
    back after it; every file the test made is removed, even on failure."""
    aside = f"/tmp/it-backups-aside-{secrets.token_hex(4)}"
    testbed.ssh(db_host, f"mkdir -p {DIR} {aside} && "
                         f"find {DIR} -maxdepth 1 -name '{DB}-*' -exec mv -t {aside} {{}} +")
    try:
        yield
    finally:
        testbed.ssh(db_host, f"find {DIR} -maxdepth 1 -name '{DB}-*' -delete && "
                             f"find {aside} -maxdepth 1 -name '{DB}-*' -exec mv -t {DIR} {{}} + "
                             f"&& rmdir {aside}")


def cron_command(testbed: Testbed, host) -> str:
    text = testbed.ssh(host, f"cat /etc/cron.d/superapp-backup-{DB}").stdout
    [job] = [ln for ln in text.splitlines()
             if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    fields = job.split()
    assert fields[5] == "root"
    return " ".join(fields[6:])


def run_as_cron(testbed: Testbed, host) -> str:
    """Run the cron line's command as cron would; return this run's log line."""
    command = cron_command(testbed, host)
    testbed.ssh(host, f"{CRON_ENV} sh -c {shlex.quote(command)}", timeout=300)
    log = testbed.ssh(host, "tail -n 50 /var/backups/superapp/backup.log").stdout
    return [ln for ln in log.splitlines() if f"database={DB} " in ln][-1]


def drill(*data: str) -> subprocess.CompletedProcess:
    argv = [str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
            "tasks/restore_drill.py", "--data", f"databases={DB}", "--data", "only=dumps"]
    for item in data:
        argv += ["--data", item]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def latest_manifest(testbed: Testbed, host):
    out = testbed.ssh(host, read_latest_manifests_command([DB])).stdout
    return parse_latest_manifests(out)[DB]


def test_backup_run_as_cron_then_drill_rows_match(testbed, db_host, backups_restored):
    with seeded_table(testbed, db_host, 1234) as table:
        line = run_as_cron(testbed, db_host)
        assert "result=ok" in line and f"file={DIR}/{DB}-" in line, line
        manifest = latest_manifest(testbed, db_host)
        assert manifest.tables[f"public.{table}"] == 1234
        metrics = testbed.ssh(db_host, "cat /var/lib/node_exporter/textfile/"
                                       f"superapp_backup_{DB}.prom").stdout
        assert f'superapp_backup_last_success_timestamp_seconds{{database="{DB}"}} ' in metrics
        assert f'superapp_backup_last_size_bytes{{database="{DB}"}} {manifest.size}' in metrics
        modes = testbed.ssh(db_host, f"stat -c '%a %n' {manifest.path} "
                                     "/etc/superapp/backup/pgpass").stdout.split("\n")
        assert [m.split()[0] for m in modes if m] == ["600", "600"]
        result = drill()
        assert result.returncode == 0, result.stdout + result.stderr
        [row] = [ln for ln in result.stdout.splitlines() if ln.startswith(f"{DB} ")]
        assert manifest.file in row and row.split()[-1] == "ok"
        assert str(sum(manifest.tables.values())) in row.split()


def test_with_db_ha_the_drill_restores_into_a_server_of_its_own(testbed, db_host, local,
                                                                backups_restored, tmp_path):
    """With the database cluster the db host's member may be a replica, which takes no write:
    the drill restores the same dump into a PostgreSQL its one-off container starts for
    itself, with no network (ops/backup/commands.py). Its rows match the manifest, and the db
    host's server never holds a scratch database."""
    with seeded_table(testbed, db_host, 777) as table:
        line = run_as_cron(testbed, db_host)
        assert "result=ok" in line, line
        manifest = latest_manifest(testbed, db_host)
        assert manifest.tables[f"public.{table}"] == 777
        report = run_drill(SshRemote(testbed, db_host.name), clustered(tmp_path / "ha"), [DB])
    [row] = report.rows
    print(f"\n[drill, db_ha] {DB}: {row.result}, {row.rows} rows of {row.tables} tables in "
          f"{row.seconds:.1f} s", flush=True)
    assert row.result == "ok", row.result
    assert row.rows == sum(manifest.tables.values())
    assert psql(testbed, db_host, "SELECT count(*) FROM pg_database "
                                  "WHERE datname LIKE 'drill\\_%'").strip() == "0"


def offsite(testbed: Testbed, host, *args: str) -> str:
    """offsite.py as pg_backup.sh runs it (one-off postgres container, the pgBackRest config)."""
    image = load_environment("local").infra_image("postgres")
    return testbed.ssh(host, shlex.join([
        "docker", "run", "--rm", "--network", "host", "--entrypoint", "python3",
        "-v", "/opt/superapp/backup/offsite.py:/backup/offsite.py:ro",
        "-v", "/etc/superapp/pgbackrest:/etc/pgbackrest:ro", "-v", "/tmp:/tmp",
        image, "/backup/offsite.py", *args]), timeout=300).stdout


def test_dump_copies_reach_the_backup_host_encrypted_and_follow_retention(
        testbed, db_host, backups_restored):
    with seeded_table(testbed, db_host, 300):
        first = run_as_cron(testbed, db_host)
        assert "result=ok" in first and "offsite=ok" in first, first
        manifest = latest_manifest(testbed, db_host)
        copies = offsite(testbed, db_host, "list", DB).split()
        assert {f"{manifest.file}.enc", f"{manifest.name}.enc",
                f"{manifest.name[:-len('.manifest')]}.sha256.enc"} <= set(copies)
        out = f"/tmp/it-offsite-{secrets.token_hex(4)}"
        try:
            offsite(testbed, db_host, "get", DB, manifest.file, f"{out}.dump")
            offsite(testbed, db_host, "get", DB, manifest.file, f"{out}.enc", "--encrypted")
            sums = testbed.ssh(db_host, f"sha256sum {out}.dump {out}.enc").stdout.split()
            assert sums[0] == manifest.sha256  # the copy decrypts to the very file
            assert sums[2] != manifest.sha256  # and is stored encrypted
            assert testbed.ssh(db_host, f"head -c 8 {out}.enc").stdout == "Salted__"
        finally:
            testbed.ssh(db_host, f"rm -f {out}.dump {out}.enc")
        # a second backup the same day: retention removes the first here, and there
        time.sleep(1.1)
        second = run_as_cron(testbed, db_host)
        assert "offsite=ok" in second and "removed=1" in second, second
        now = latest_manifest(testbed, db_host)
        assert now.name != manifest.name
        kept = offsite(testbed, db_host, "list", DB).split()
        assert kept == sorted([f"{now.file}.enc", f"{now.name}.enc",
                               f"{now.name[:-len('.manifest')]}.sha256.enc"])
        # a db host rebuilt empty (or the db role moved to another host) syncs from a
        # directory with no backup: the copies are the only ones left, and stay
        empty = f"/tmp/it-offsite-empty-{secrets.token_hex(4)}"
        try:
            testbed.ssh(db_host, f"mkdir -p {empty}")
            offsite(testbed, db_host, "sync", DB, empty, "7", "4")
        finally:
            testbed.ssh(db_host, f"rmdir {empty}")
        assert offsite(testbed, db_host, "list", DB).split() == kept


def test_corrupt_or_missing_backup_fails_the_drill_clearly(testbed, db_host, backups_restored):
    run_as_cron(testbed, db_host)
    manifest = latest_manifest(testbed, db_host)
    # one flipped byte in the middle of the dump
    testbed.ssh(db_host, f"printf 'X' | dd of={manifest.path} bs=1 seek={manifest.size // 2} "
                         "conv=notrunc status=none")
    result = drill()
    assert result.returncode != 0
    assert f"FAILED: checksum mismatch: {manifest.path} is not the file its manifest" \
           in result.stdout
    assert "RESTORE DRILL FAILED for 1 database(s): livestock" in result.stdout
    # a truncated dump whose manifest was rewritten to match: pg_restore itself must fail
    name = manifest.name
    testbed.ssh(db_host, f"cd {DIR} && truncate -s {manifest.size // 2} {manifest.file} && "
                         f"sum=$(sha256sum {manifest.file} | cut -d ' ' -f 1) && "
                         f"sed -i \"s/^sha256\\t.*/sha256\\t$sum/\" {name}")
    result = drill()
    assert result.returncode != 0
    assert f"FAILED: pg_restore of {manifest.path} failed:" in result.stdout
    # no complete backup at all
    testbed.ssh(db_host, f"mkdir -p /tmp/it-hidden && mv {DIR}/*.manifest /tmp/it-hidden/")
    try:
        result = drill()
    finally:
        testbed.ssh(db_host, f"mv /tmp/it-hidden/*.manifest {DIR}/ && rmdir /tmp/it-hidden")
    assert result.returncode != 0
    assert f"FAILED: no backup of {DB} in {DIR} (no *.manifest)" in result.stdout
    leftovers = psql(testbed, db_host, "SELECT datname FROM pg_database "
                                       "WHERE datname LIKE 'drill\\_%';")
    assert leftovers.strip() == ""


def test_retention_keeps_exactly_the_configured_backups(testbed, db_host, local,
                                                        backups_restored):
    keep = local.settings["backups"]
    now = dt.datetime.now(dt.UTC)
    # 60 days of fake backups: two per day on even days, none on days divisible by 7
    stamps = []
    for days in range(1, 61):
        if days % 7 == 0:
            continue
        for hour in ((2, 14) if days % 2 == 0 else (2,)):
            when = (now - dt.timedelta(days=days)).replace(hour=hour, minute=15, second=0)
            stamps.append(when.strftime("%Y%m%dT%H%M%SZ"))
    create = " && ".join(f"touch {DIR}/{DB}-{s}.dump {DIR}/{DB}-{s}.sha256 {DIR}/{DB}-{s}.manifest"
                         for s in stamps)
    testbed.ssh(db_host, create)
    line = run_as_cron(testbed, db_host)
    names = testbed.ssh(db_host, f"cd {DIR} && ls *.manifest").stdout.split()
    files = testbed.ssh(db_host, f"cd {DIR} && ls").stdout.split()
    new = [n for n in names if n.removesuffix(".manifest").split("-", 1)[1] not in stamps]
    assert len(new) == 1
    expected = select_retained([f"{DB}-{s}.manifest" for s in stamps] + new,
                               keep["keep_daily"], keep["keep_weekly"])
    assert sorted(names) == sorted(expected)
    assert f"kept={len(names)} removed={len(stamps) + 1 - len(names)}" in line
    stems = {n.removesuffix(".manifest") for n in names}
    assert {f.split(".")[0] for f in files} == stems  # dumps and checksums went with them


def test_no_password_in_process_list_or_logs(testbed, db_host, local, backups_restored):
    password = fetch_secrets(local).get(local.postgres_password_ref())
    assert password and len(password) >= 16
    # The dump of this small database lasts milliseconds, shorter than a busy machine's gap
    # between two `ps` samples. A transaction holding its table locked keeps pg_dump waiting
    # (in the process list, arguments and all) until the sampler has seen it a few times.
    with seeded_table(testbed, db_host, 10) as table:
        hold = (f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; "
                "SELECT pg_sleep(4); COMMIT;")
        locked = ("SELECT count(*) FROM pg_locks WHERE granted AND "  # noqa: S608
                  f"mode = 'AccessExclusiveLock' AND relation = '{table}'::regclass;")
        exec_psql = f"docker exec -i postgres psql -X -q -At -U postgres -d {DB}"
        sampler = ("rm -f /tmp/it-ps.txt; (for i in $(seq 400); do ps -eo args >> "
                   "/tmp/it-ps.txt; sleep 0.01; done) & sampler=$!; ")
        holder = (f"echo {shlex.quote(hold)} | {exec_psql} >/dev/null & holder=$!; "
                  f"n=0; until [ \"$(echo {shlex.quote(locked)} | {exec_psql})\" = 1 ]; "
                  "do n=$((n+1)); [ $n -lt 100 ] || exit 3; sleep 0.1; done; ")
        command = cron_command(testbed, db_host)
        testbed.ssh(db_host, holder + sampler + f"{CRON_ENV} sh -c {shlex.quote(command)}; "
                             "kill $sampler 2>/dev/null; wait $sampler $holder 2>/dev/null; "
                             "true", timeout=300)
    samples = testbed.ssh(db_host, "cat /tmp/it-ps.txt; rm -f /tmp/it-ps.txt").stdout
    assert samples.count("pg_dump --no-password") >= 3  # the sampler saw the dump waiting
    assert password not in samples
    for path in ("/var/backups/superapp/backup.log", f"/etc/cron.d/superapp-backup-{DB}",
                 "/opt/superapp/backup/pg_backup.sh", "/opt/superapp/backup/pg_tools.sh"):
        assert password not in testbed.ssh(db_host, f"cat {path}").stdout, path
    inspect = testbed.ssh(db_host, "docker ps -a --no-trunc --format '{{.Command}}'").stdout
    assert password not in inspect
