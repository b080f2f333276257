"""Point-in-time recovery on the testbed: PostgreSQL on host1 archives every WAL segment through
pgBackRest into the encrypted S3 repository on host3 (SeaweedFS), and the real drill CLI
(`tasks/restore_drill.py --data only=pitr`) restores the cluster on host3, off the db host.

Markers are rows of `superapp_pitr.marker` (the heartbeat table); lost data would show as a
marker committed before the target that the restore does not have.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from ops.backup import pitr as pitr_sql
from ops.catalog import load_environment
from ops.render import pitr
from tests.integration.conftest import REPO, Testbed
from tests.integration.release import deploy, output, release_copy
from tests.integration.test_rollout import versions
from tests.integration.test_rotation import BackendLoad

pytestmark = pytest.mark.integration
PROD_SQL = "docker exec -i postgres psql -X -qAt -v ON_ERROR_STOP=1 -U postgres -d postgres"


@pytest.fixture(scope="module")
def hosts(testbed: Testbed, deployed):
    local = load_environment("local")
    return testbed.host(local.db_host.name), testbed.host(local.backup_host.name)


def sql(testbed: Testbed, host, text: str) -> str:
    res = subprocess.run(testbed.ssh_argv(host, PROD_SQL), input=text, text=True,
                         capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def archived_now(testbed: Testbed, db) -> None:
    """Close the current WAL segment and wait until the repository has it."""
    segment = sql(testbed, db, "SELECT pg_walfile_name(pg_switch_wal())")
    for _ in range(90):
        done = sql(testbed, db, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if done and done[8:] >= segment[8:]:
            return
        time.sleep(1)
    raise AssertionError(f"WAL segment {segment} not archived within 90 s")


def drill(*data: str) -> subprocess.CompletedProcess:
    argv = [str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
            "tasks/restore_drill.py", "--data", "only=pitr"]
    for item in data:
        argv += ["--data", item]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)


def marker(testbed: Testbed, db, note: str) -> str:
    return sql(testbed, db, "INSERT INTO superapp_pitr.marker (note) VALUES "  # noqa: S608
                            f"('{note}') RETURNING id").splitlines()[0]


def test_wal_reaches_the_encrypted_repository_on_the_backup_host(testbed, hosts):
    db, backup = hosts
    testbed.ssh(db, f"test -s {pitr.READY_MARKER}")  # the deploy's setup finished
    canary = f"CANARY-pitr-{secrets.token_hex(16)}"
    sql(testbed, db, "CREATE TABLE IF NOT EXISTS it_pitr_canary (v text); "  # noqa: S608
                     f"INSERT INTO it_pitr_canary VALUES ('{canary}')")
    try:
        archived_now(testbed, db)
        # the canary is in the WAL in plain text, and nowhere in the repository's storage
        assert testbed.ssh(db, f"grep -rl {canary} /var/lib/superapp/postgres/pgdata/pg_wal",
                           check=False).stdout.strip()
        found = testbed.ssh(backup, f"grep -rl {canary} {pitr.S3_DATA}", check=False)
        assert found.returncode == 1 and not found.stdout, found.stdout
        testbed.ssh(db, f"{pitr.PITR_SCRIPT} metrics")
        metrics = testbed.ssh(db, "cat /var/lib/node_exporter/textfile/superapp_pitr.prom").stdout
        assert "superapp_pitr_repo_up 1" in metrics
        assert 'superapp_pitr_last_backup_timestamp_seconds{type="full"}' in metrics
        last = float(metrics.split("superapp_pitr_archive_last_success_timestamp_seconds ")[1]
                     .split()[0])
        assert time.time() - last < 120
        volume = testbed.ssh(backup, f"{pitr.VOLUME_SCRIPT} && cat /var/lib/node_exporter/"
                                     "textfile/superapp_backup_volume.prom").stdout
        assert "superapp_backup_volume_avail_bytes " in volume
    finally:
        sql(testbed, db, "DROP TABLE IF EXISTS it_pitr_canary")


def test_the_cluster_restores_to_a_point_between_two_markers(testbed, hosts):
    db, backup = hosts
    before = marker(testbed, db, "it-before")
    time.sleep(2)
    target = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(2)
    after = marker(testbed, db, "it-after")
    archived_now(testbed, db)
    result = drill(f"target_time={target.isoformat()}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "pitr drill ok: restored to" in out
    lines = out.splitlines()
    [present] = [ln for ln in lines if ln.startswith("marker before")]
    [absent] = [ln for ln in lines if ln.startswith("marker after")]
    assert present.split()[-1] == "ok" and absent.split()[-1] == "ok", out[-3000:]
    # the drill names production's first marker after the target and its margin (a marker's
    # `at` is its transaction's start, not its commit): `after`, or a heartbeat marker the PITR
    # cron job wrote between the target and `after` (one a minute)
    first_after = sql(testbed, db, "SELECT min(id) FROM superapp_pitr.marker "  # noqa: S608
                                   f"WHERE at > '{pitr_sql.iso(target + pitr_sql.MARKER_MARGIN)}'")
    assert int(before) < int(first_after) <= int(after)
    assert f"0 row(s) newer than the target; id {first_after} not restored" in absent
    assert int(before) <= int(present.split("id ")[1].split()[0]) < int(first_after)
    compared = [ln for ln in lines if ln.startswith("rows ") and ln.split()[-1] == "ok"]
    assert compared, "no database was compared with its dump"
    metrics = testbed.ssh(backup, "cat /var/lib/node_exporter/textfile/"
                                  "superapp_restore_drill_pitr*.prom").stdout
    assert 'superapp_restore_drill_success{kind="pitr"} 1' in metrics
    assert 'superapp_restore_drill_last_success_timestamp_seconds{kind="pitr"}' in metrics
    assert testbed.ssh(backup, "ls -A /var/lib/superapp/drill").stdout.strip() == ""


def test_the_latest_point_holds_a_marker_written_just_before(testbed, hosts):
    result = drill()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "restored to latest" in out
    [present] = [ln for ln in out.splitlines() if ln.startswith("marker before")]
    assert present.split()[-1] == "ok"


def test_a_target_before_the_oldest_backup_is_refused_with_the_oldest_restorable_time(hosts):
    result = drill("target_time=2020-01-01T00:00:00Z")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "target 2020-01-01 00:00:00+00 is before the oldest restorable time 20" in out
    result = drill("target_time=2026-12-03T02:40:00")
    assert result.returncode != 0 and "has no time zone" in result.stdout + result.stderr


def test_a_wrong_passphrase_fails_naming_the_repository_and_changes_nothing(testbed, hosts):
    db, backup = hosts
    conf = pitr.PGBR_CONF
    wrong = f"repo1-cipher-pass=wrong-{secrets.token_hex(8)}"
    testbed.ssh(backup, f"cp -p {conf} {conf}.it && "
                        f"sed -i 's/^repo1-cipher-pass=.*/{wrong}/' {conf}")
    try:
        result = drill()
    finally:
        testbed.ssh(backup, f"mv -f {conf}.it {conf}")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "PITR DRILL FAILED: repository s3://superapp-pitr/local on host3" in out, out[-3000:]
    # production still archives into the same repository, and the drill left nothing behind
    archived_now(testbed, db)
    testbed.ssh(db, "docker exec -u postgres postgres pgbackrest --stanza=superapp check",
                timeout=180)
    assert testbed.ssh(backup, "ls -A /var/lib/superapp/drill 2>/dev/null; "
                               "docker ps -aq --filter name=sa-pitr-drill").stdout.strip() == ""


def test_with_the_repository_host_down_a_migration_runs_while_the_archive_is_fresh_then_not(
        testbed, hosts, tmp_path):
    """The backup host's S3 stops (its host down, as far as the db host can tell). A release
    whose migration comes right after the last archived segment proceeds; once the archive is
    older than the limit, the next migration is refused naming the repository's host, and
    nothing changes. With the repository back, the repo's release rolls again. Gated here as
    in prod (`backups.gate_migrations`), with a 90 s limit so the test waits that long."""
    db, backup = hosts
    local = load_environment("local")
    limit = 90
    settings = {
        "backups": repr({**local.settings["backups"], "gate_migrations": True}),
        "pitr": repr({**local.settings["pitr"], "archive_max_age_seconds": limit}),
    }
    v2 = release_copy(tmp_path / "v2", {**settings, "image_tags": '{"food": "v2"}'})
    v1 = release_copy(tmp_path / "v1", settings)
    metrics = f"{pitr.PITR_SCRIPT} metrics"
    archived_now(testbed, db)
    t0 = time.time()
    testbed.ssh(db, metrics, timeout=180)
    archived_at = time.time()
    print(f"archived, metrics written in {archived_at - t0:.0f} s")
    testbed.ssh(backup, f"docker kill {pitr.S3_CONTAINER}")  # abruptly, as a host goes down
    try:
        fresh = deploy(v2)
        assert fresh.returncode == 0, output(fresh)[-4000:]
        assert "food: running migrations once" in output(fresh)
        assert set(versions(testbed, "food").values()) == {"v2"}
        print(f"fresh deploy done {time.time() - archived_at:.0f} s after the last archive")
        # archiving now fails: the last success the db host reports stays where it was
        time.sleep(max(0.0, archived_at + limit + 5 - time.time()))
        stale = deploy(v1)
        text = output(stale)
        assert stale.returncode != 0
        assert f"the last WAL segment reached the backup repository on {backup.name}" in text
        assert f"more than the {limit}s limit: {backup.name} may be down" in text, text[-4000:]
        assert "food: running migrations once" not in text
        assert set(versions(testbed, "food").values()) == {"v2"}  # nothing moved
    finally:
        testbed.ssh(backup, f"docker start {pitr.S3_CONTAINER}")  # archiving catches up alone
    back = deploy(REPO)
    assert back.returncode == 0, output(back)[-4000:]
    assert set(versions(testbed, "food").values()) == {"v1"}


REAL = "/tmp/it-s3-real"  # the repository's own directory, reachable while a tmpfs hides it
FILL = f"""set -e
docker stop -t 10 {pitr.S3_CONTAINER} >/dev/null
mkdir -p {REAL} && mount --bind {pitr.S3_DATA} {REAL}
size=$(( $(du -sb {REAL} | cut -f1) + 32 * 1024 * 1024 ))
mount -t tmpfs -o size=$size,mode=0700,uid={{uid}},gid={{uid}} it-s3-full {pitr.S3_DATA}
cp -a {REAL}/. {pitr.S3_DATA}/
docker start {pitr.S3_CONTAINER} >/dev/null
sleep 5
dd if=/dev/zero of={pitr.S3_DATA}/it-filler bs=64k 2>/dev/null || true
df -B1 --output=avail {pitr.S3_DATA} | tail -n 1"""
# back to the real directory with everything the server wrote meanwhile (nothing is lost)
UNFILL = f"""set -e
docker stop -t 10 {pitr.S3_CONTAINER} >/dev/null
rm -f {pitr.S3_DATA}/it-filler
find {REAL} -mindepth 1 -delete
cp -a {pitr.S3_DATA}/. {REAL}/
umount {pitr.S3_DATA} && umount {REAL} && rmdir {REAL}
docker start {pitr.S3_CONTAINER} >/dev/null"""


def rule_holds(monitoring, alert: str, timeout: float = 90) -> list[dict]:
    """Wait until the live Prometheus evaluates `alert`'s expression (as loaded from the
    rendered rules) to a non-empty result; return it. The `for` is promtool's business."""
    base = f"http://{monitoring.address}:9090/api/v1"
    with urllib.request.urlopen(f"{base}/rules?type=alert", timeout=10) as r:
        groups = json.loads(r.read())["data"]["groups"]
    [query] = {rule["query"] for g in groups for rule in g["rules"] if rule["name"] == alert}
    deadline = time.time() + timeout
    while True:
        url = f"{base}/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=10) as r:
            result = json.loads(r.read())["data"]["result"]
        if result or time.time() > deadline:
            assert result, f"{alert} ({query}) never held within {timeout:.0f} s"
            return result
        time.sleep(3)


def test_with_the_repository_disk_full_archiving_fails_its_alerts_hold_and_migrations_wait(
        testbed, hosts, tmp_path):
    """The repository's filesystem fills up (a tmpfs holding a copy of the repository, then a
    filler file, under the running S3 server). Under a stream of database requests: WAL
    archiving fails while the db host keeps serving; the live Prometheus evaluates
    BackupVolumeFilling and PitrArchiveFailing as true; once the archive is older than the
    limit, a release with a migration is refused naming the repository's host. With space
    back, every segment written meanwhile reaches the repository: no WAL is lost."""
    db, backup = hosts
    monitoring = next(h for h in testbed.hosts if "monitoring" in h.roles)
    local = load_environment("local")
    limit = 60  # the schema's minimum
    v2 = release_copy(tmp_path / "v2", {
        "backups": repr({**local.settings["backups"], "gate_migrations": True}),
        "pitr": repr({**local.settings["pitr"], "archive_max_age_seconds": limit}),
        "image_tags": '{"food": "v2"}'})
    archived_now(testbed, db)
    failed_before = int(sql(testbed, db, "SELECT failed_count FROM pg_stat_archiver"))
    load = BackendLoad(testbed, "food", "/api/db-session")
    load.start()
    uid = local.settings["data_uids"]["seaweedfs"]
    filled = False
    try:
        avail = testbed.ssh(backup, FILL.replace("{uid}", str(uid)), timeout=300).stdout
        filled = True
        assert int(avail.split()[-1]) < 1024 * 1024, avail
        during = marker(testbed, db, "it-disk-full")
        segment = sql(testbed, db, "SELECT pg_walfile_name(pg_switch_wal())")
        for _ in range(60):
            if int(sql(testbed, db, "SELECT failed_count FROM pg_stat_archiver")) > failed_before:
                break
            time.sleep(1)
        else:
            raise AssertionError("archiving did not fail with the repository's disk full")
        testbed.ssh(backup, pitr.VOLUME_SCRIPT)
        testbed.ssh(db, f"{pitr.PITR_SCRIPT} metrics", timeout=180)
        rule_holds(monitoring, "BackupVolumeFilling")
        rule_holds(monitoring, "PitrArchiveFailing")
        last = float(sql(testbed, db, "SELECT extract(epoch FROM last_archived_time) "
                                      "FROM pg_stat_archiver"))
        time.sleep(max(0.0, last + limit + 2 - time.time()))
        testbed.ssh(db, f"{pitr.PITR_SCRIPT} metrics", timeout=180)
        refused = deploy(v2)
        text = output(refused)
        assert refused.returncode != 0
        assert f"more than the {limit}s limit: {backup.name} may be down or archiving failing" \
            in text, text[-4000:]
        assert "food: running migrations once" not in text
        assert set(versions(testbed, "food").values()) == {"v1"}
    finally:
        if filled:
            testbed.ssh(backup, UNFILL, timeout=300)
        load.stop.set()
        load.join()
    archived_now(testbed, db)  # catches up through the segments written while full
    done = sql(testbed, db, "SELECT last_archived_wal FROM pg_stat_archiver")
    assert done[8:] >= segment[8:], f"{segment} (marker {during}) never reached the repository"
    assert not load.failures, load.failures[:5]
    assert load.results[200] > 0
    print(f"disk full: {sum(load.results.values())} requests, 0 failed; marker {during} "
          f"archived in {segment}")
    back = deploy(REPO)  # whatever the refused run wrote before its gate, the repo's again
    assert back.returncode == 0, output(back)[-4000:]
