"""Point-in-time recovery on the testbed, measured (`make bench`, or `python -m bench.pitr`):

  - RPO of the archive: under a steady pgbench write load on the db host, the seconds between
    a moment's WAL position and that WAL segment reaching the repository on the backup host
    (sampled every second inside the postgres container; median, p95 and max);
  - a full and a differential backup: wall time and size in the repository;
  - the time to restore the whole cluster to the latest point (the real drill CLI).
A benchmark, not a test: nothing asserts. Leaves no bench data behind.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.hosts import ssh_argv

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(REPO / ".venv/bin/pyinfra")
BENCH_DB = "bench_pitr"
LOAD_SECONDS = 180
LOAD_TPS = 50
PSQL = "docker exec -u postgres postgres psql -X -qAt -v ON_ERROR_STOP=1 -d postgres -c"
# one line a second: epoch|segment of the current WAL position|last archived segment
SAMPLER = ("for i in $(seq {n}); do docker exec -u postgres postgres psql -X -qAt -d postgres "
           "-c \"SELECT extract(epoch FROM clock_timestamp())::numeric(16,3) || '|' || "
           "pg_walfile_name(pg_current_wal_lsn()) || '|' || coalesce(last_archived_wal, '') "
           "FROM pg_stat_archiver\"; sleep 1; done")


def progress(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def ssh(status: dict, host: dict, command: str, timeout: int = 1800) -> str:
    res = subprocess.run(
        ssh_argv(status, host, command), capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        sys.exit(f"bench: `{command[:80]}` on {host['name']} failed:\n{res.stderr[-2000:]}")
    return res.stdout


def archive_delays(lines: list[str]) -> list[float]:
    """Samples `t|segment|archived` -> for each, seconds until that segment was archived
    (samples whose segment was never seen archived are left out)."""
    samples = []
    for line in lines:
        parts = line.strip().split("|")
        if len(parts) == 3:
            samples.append((float(parts[0]), parts[1][8:], parts[2][8:]))
    delays = []
    for i, (t, segment, _) in enumerate(samples):
        done = next((u for u, _, archived in samples[i:] if archived and archived >= segment),
                    None)
        if done is not None:
            delays.append(round(done - t, 3))
    return delays


def backup(status: dict, db: dict, kind: str) -> tuple[float, int]:
    """(wall seconds, bytes the new backup added to the repository)."""
    t0 = time.monotonic()
    ssh(status, db, f"/opt/superapp/backup/pitr.sh backup {kind}")
    seconds = time.monotonic() - t0
    info = json.loads(ssh(status, db, "docker exec -u postgres postgres pgbackrest "
                                      "--stanza=superapp --output=json info"))[0]
    newest = [b for b in info["backup"] if b["type"] == kind][-1]
    return round(seconds, 1), int(newest["info"]["repository"]["delta"])


def measure(status: dict) -> dict:
    db = next(h for h in status["hosts"] if "db" in h["roles"])
    out: dict = {}
    progress("PITR: a full backup")
    out["pitr_full_backup_seconds"], out["pitr_full_backup_bytes"] = backup(status, db, "full")
    progress(f"PITR: RPO under pgbench at {LOAD_TPS} tps for {LOAD_SECONDS}s")
    ssh(status, db, f"{PSQL} 'DROP DATABASE IF EXISTS {BENCH_DB}' && {PSQL} "
                    f"'CREATE DATABASE {BENCH_DB}' && docker exec -u postgres postgres "
                    f"pgbench -q -i -s 5 {BENCH_DB} >/dev/null 2>&1")
    try:
        load = subprocess.Popen(
            ssh_argv(status, db, f"docker exec -u postgres postgres pgbench -n -R {LOAD_TPS} "
                                 f"-T {LOAD_SECONDS} {BENCH_DB}"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # sample during the load and 90 s beyond it (archive_timeout ships the last segment)
        lines = ssh(status, db, SAMPLER.format(n=LOAD_SECONDS + 90)).splitlines()
        report, _ = load.communicate(timeout=120)
        tps = re.search(r"tps = ([0-9.]+)", report or "")
        delays = archive_delays(lines)
        out.update(pitr_write_tps=round(float(tps.group(1)), 1) if tps else None,
                   pitr_rpo_samples=len(delays),
                   pitr_rpo_seconds_median=round(statistics.median(delays), 1),
                   pitr_rpo_seconds_p95=round(sorted(delays)[int(len(delays) * 0.95) - 1], 1),
                   pitr_rpo_seconds_max=round(max(delays), 1))
        progress("PITR: a differential backup after the load")
        out["pitr_diff_backup_seconds"], out["pitr_diff_backup_bytes"] = backup(status, db,
                                                                                "diff")
        progress("PITR: restore the whole cluster to the latest point (the drill)")
        t0 = time.monotonic()
        res = subprocess.run([PYINFRA, "-y", "inventories/local.py", "tasks/restore_drill.py",
                              "--data", "only=pitr"], cwd=REPO, capture_output=True, text=True,
                             timeout=1800)
        if res.returncode != 0:
            sys.exit(f"bench: the drill failed:\n{(res.stdout + res.stderr)[-3000:]}")
        restored = re.search(r"restore\s+to latest in (\d+)s", res.stdout)
        out.update(pitr_drill_seconds=round(time.monotonic() - t0, 1),
                   pitr_restore_seconds=int(restored.group(1)) if restored else None)
        query = "SELECT sum(pg_database_size(oid)) FROM pg_database"
        size = ssh(status, db, f"{PSQL} '{query}'")
        out["pitr_cluster_bytes"] = int(size.strip())
    finally:
        ssh(status, db, f"{PSQL} 'DROP DATABASE IF EXISTS {BENCH_DB}'")
    return out


def rows(r: dict) -> list[tuple[str, str]]:
    mb = 1024 * 1024
    return [
        ("PITR RPO under writes, median / p95 / max",
         f"{r['pitr_rpo_seconds_median']}s / {r['pitr_rpo_seconds_p95']}s / "
         f"{r['pitr_rpo_seconds_max']}s ({r['pitr_rpo_samples']} samples, "
         f"{r['pitr_write_tps']} tps)"),
        ("PITR full backup: time, size in repo",
         f"{r['pitr_full_backup_seconds']}s, {r['pitr_full_backup_bytes'] / mb:.1f} MiB"),
        ("PITR diff backup: time, size in repo",
         f"{r['pitr_diff_backup_seconds']}s, {r['pitr_diff_backup_bytes'] / mb:.1f} MiB"),
        ("PITR restore of the cluster (drill)",
         f"{r['pitr_restore_seconds']}s restore, {r['pitr_drill_seconds']}s whole drill, "
         f"{r['pitr_cluster_bytes'] / mb:.0f} MiB cluster"),
    ]


if __name__ == "__main__":  # this part alone: python -m bench.pitr (JSON: bench/results/)
    from datetime import UTC, datetime

    from bench.run import RESULTS, testbed_status
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              **measure(testbed_status())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pitr-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, value in rows(result):
        print(f"{name}: {value}")
