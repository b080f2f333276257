"""The db host's PITR metrics, for node-exporter's textfile collector (ops/render/pitr.py).

Runs inside the postgres container as postgres (`pitr.sh metrics`, every minute): writes a
heartbeat row (so an idle cluster still fills a WAL segment that archive_timeout ships, and the
restore drill has markers on both sides of any target time), then prints the archiver's state
from pg_stat_archiver and the repository's backups from `pgbackrest info`.
"""

import json
import subprocess
import sys
import time

HEARTBEAT = """
CREATE SCHEMA IF NOT EXISTS superapp_pitr;
CREATE TABLE IF NOT EXISTS superapp_pitr.marker (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    note text NOT NULL DEFAULT 'heartbeat');
INSERT INTO superapp_pitr.marker DEFAULT VALUES;
DELETE FROM superapp_pitr.marker WHERE at < now() - interval '45 days';
"""
ARCHIVER = """SELECT coalesce(extract(epoch FROM last_archived_time)::bigint::text, ''),
       failed_count, coalesce(extract(epoch FROM last_failed_time)::bigint::text, '')
FROM pg_stat_archiver"""


def psql(sql: str) -> str:
    return subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h",
                           "/var/run/postgresql", "-U", "postgres", "-d", "postgres", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def repository(stanza: str) -> tuple[int, list[dict]]:
    """(1 when the repository answered, its backups oldest first)."""
    try:
        res = subprocess.run(["pgbackrest", f"--stanza={stanza}", "--output=json", "info"],
                             capture_output=True, text=True, timeout=60)
        data = json.loads(res.stdout)[0]
    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
        return 0, []
    if res.returncode != 0 or data.get("status", {}).get("code") == 99:
        return 0, []
    return 1, data.get("backup", [])


def main() -> None:
    stanza = sys.argv[1]
    out = ["# superapp PITR state (pg_stat_archiver, pgbackrest info)"]
    psql(HEARTBEAT)
    last_ok, failed, last_failed = psql(ARCHIVER).strip().split("|")
    if last_ok:
        out.append(f"superapp_pitr_archive_last_success_timestamp_seconds {last_ok}")
    if last_failed:
        out.append(f"superapp_pitr_archive_last_failure_timestamp_seconds {last_failed}")
    out.append(f"superapp_pitr_archive_failed_total {failed}")
    up, backups = repository(stanza)
    out.append(f"superapp_pitr_repo_up {up}")
    for kind in ("full", "diff"):
        newest = [b for b in backups if b.get("type") == kind][-1:]
        for b in newest:
            out.append(f'superapp_pitr_last_backup_timestamp_seconds{{type="{kind}"}} '
                       f'{b["timestamp"]["stop"]}')
            out.append(f'superapp_pitr_backup_size_bytes{{type="{kind}"}} '
                       f'{b["info"]["repository"]["delta"]}')
    out.append(f"superapp_pitr_metrics_timestamp_seconds {int(time.time())}")
    print("\n".join(out))


main()
