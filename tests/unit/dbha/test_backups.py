"""Backups with the database cluster (`db_ha`): the nightly dumps on the first db host read its
own member with the cluster's superuser; pgBackRest follows the leader (pitr.sh, rendered for
every member, acts only where its member leads, run here against a stand-in `docker`); the
migration gate reads the WAL archive's state where the leader reports it; the deploy sets up
pgBackRest on the leader and records it on every member."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import pytest

from ops.backup.freshness import archive_freshness_problems, check_backup_freshness
from ops.host.state import HostState
from ops.render import backup, pitr
from ops.render.files import TEXTFILE_DIR
from ops.render.host import render_host
from ops.rollout.engine import setup_pitr
from ops.rollout.plan import ServiceChange, plan_host
from ops.rollout.steps import RolloutError
from tests.unit.dbha.cluster_data import ClusterSecrets, add_cluster


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.unit.conftest import RepoCopy

    repo = RepoCopy(tmp_path_factory.mktemp("repo") / "repo")
    add_cluster(repo)
    return repo.load()


@pytest.fixture(scope="module")
def secrets(environment):
    return ClusterSecrets(environment)


def files_of(environment, secrets, host: str) -> dict[str, str]:
    return {f.path: f.content for f in render_host(environment, host, secrets)}


def test_the_dumps_run_on_the_first_db_host_only_from_its_own_member(environment,
                                                                    secrets) -> None:
    first, second = files_of(environment, secrets, "db-1"), files_of(environment, secrets, "db-2")
    assert backup.BACKUP_SCRIPT in first and backup.BACKUP_SCRIPT not in second
    assert not [p for p in second if p.startswith(backup.CRON_PREFIX)]
    assert "readonly PGHOST_NAME=patroni\n" in first[backup.BACKUP_SCRIPT]
    superuser = secrets.get(environment.dbha_refs()["superuser"])
    assert first[backup.PGPASS_FILE] == backup.pgpass_line("postgres", superuser) + "\n"
    # pgBackRest runs on every member (the one leading acts)
    assert pitr.PITR_SCRIPT in first and pitr.PITR_SCRIPT in second


FAKE_DOCKER = """#!/bin/bash
echo "$*" >> "$LOG"
case "$*" in
  *pg_is_in_recovery*) echo "$RECOVERY" ;;
  *python3*) echo 'superapp_pitr_metrics_timestamp_seconds 1' ;;
esac
"""


@pytest.fixture
def run_pitr(environment, secrets, tmp_path):
    """pitr.sh as rendered for a member, its paths moved under tmp_path, with a stand-in
    `docker` that logs its arguments and answers pg_is_in_recovery() with `recovery`."""
    script = next(f.content for f in render_host(environment, "db-2", secrets)
                  if f.path == pitr.PITR_SCRIPT)
    script = script.replace(TEXTFILE_DIR, str(tmp_path)).replace(
        "/run/superapp-pitr-backup.lock", str(tmp_path / "lock")).replace(
        pitr.METRICS_SCRIPT, str(tmp_path / "metrics.py"))
    (tmp_path / "metrics.py").write_text("")
    (tmp_path / "pitr.sh").write_text(script)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "bin" / "docker").chmod(0o755)

    def run(recovery: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        log = tmp_path / "docker.log"
        log.unlink(missing_ok=True)
        env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
               "LOG": str(log), "RECOVERY": recovery}
        res = subprocess.run(["bash", str(tmp_path / "pitr.sh"), *args], env=env,
                             capture_output=True, text=True, timeout=30)
        return res, (log.read_text().splitlines() if log.exists() else [])
    return run


def test_on_a_replica_pitr_neither_backs_up_nor_reports(run_pitr, tmp_path: Path) -> None:
    prom = tmp_path / "superapp_pitr.prom"
    prom.write_text("superapp_pitr_metrics_timestamp_seconds 1\n")  # from when it led
    res, calls = run_pitr("t", "metrics")
    assert res.returncode == 0, res.stderr
    assert not prom.exists(), "a former leader's report stayed (it would read as stale)"
    assert not [c for c in calls if "python3" in c]
    res, calls = run_pitr("t", "backup", "full")
    assert res.returncode == 0 and "skipped: this member does not lead" in res.stdout
    assert not [c for c in calls if "pgbackrest" in c]
    res, calls = run_pitr("t", "setup")
    assert res.returncode == 1 and "does not lead" in res.stderr
    assert not [c for c in calls if "pgbackrest" in c]


def test_on_the_leader_pitr_backs_up_in_the_members_container(run_pitr, tmp_path,
                                                              environment) -> None:
    res, calls = run_pitr("f", "backup", "diff")
    assert res.returncode == 0, res.stderr
    stanza = environment.settings["pitr"]["stanza"]
    assert f"exec -u postgres patroni pgbackrest --stanza={stanza} --type=diff backup" in calls
    assert any(c.startswith("exec -i -u postgres patroni python3") for c in calls)
    assert (tmp_path / "superapp_pitr.prom").exists()


class Remote:
    def __init__(self, name: str, answers: dict[str, str] | None = None):
        self.name, self.answers, self.commands = name, answers or {}, []
        self.files: dict[str, bytes] = {}

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.commands.append(command)
        return True, next((out for key, out in self.answers.items() if key in command), ""), ""

    def put(self, content: bytes, path: str) -> bool:
        self.files[path] = content
        return True


def test_the_gate_reads_the_archive_where_the_leader_reports_it(environment) -> None:
    """(prod is gated: a migration waits for fresh dumps and a fresh WAL archive.)"""
    now = int(time.time())
    dumps = "".join(f'superapp_backup_last_success_timestamp_seconds{{database="{d}"}} {now}\n'
                    for d in backup.databases(environment))
    archive = f"superapp_pitr_archive_last_success_timestamp_seconds {now}\n"
    change = ServiceChange(service="payments", old_slot="a", new_slot="b", reasons=[],
                           image="x", old_image="y", config_hash="h", files=[],
                           route=None, new_project="p", old_project="q", migrate=True)
    db1, db2 = Remote("db-1", {"superapp_": dumps}), Remote("db-2", {"superapp_": archive})
    check_backup_freshness(db1, environment, change, db2)  # no error: the leader reports it
    with pytest.raises(RolloutError) as info:
        check_backup_freshness(db1, environment, change, Remote("db-2"))
    assert "on db-2" in str(info.value)
    assert "on db-2)" in archive_freshness_problems(environment, "", dt.datetime.now(dt.UTC),
                                                    "db-2")[0]


def test_pgbackrest_is_set_up_on_the_leader_and_recorded_on_every_member(environment,
                                                                        secrets) -> None:
    plans = [plan_host(environment, h.name, secrets, HostState()) for h in environment.hosts]
    remotes = {h.name: Remote(h.name) for h in environment.hosts}
    setup_pitr(environment, plans, remotes, leader="db-2")
    setups = [n for n, r in remotes.items() if any("pitr.sh setup" in c for c in r.commands)]
    assert setups == ["db-2"]
    recorded = sorted(n for n, r in remotes.items()
                      if any(pitr.READY_MARKER in c for c in r.commands))
    assert recorded == ["db-1", "db-2"]


def test_the_drill_restores_into_a_server_of_its_own_with_no_network(environment) -> None:
    """A replica takes no write: the scratch database lives in the one-off container's own
    server (pg_tools.sh, PG_TOOLS_SCRATCH_SERVER), which reaches no network and no password."""
    from ops.backup.commands import restore_check_command
    from ops.backup.drill import run_drill
    from ops.backup.manifest import Manifest
    from tests.unit.backup.test_backup import COUNTS, LISTING, NOW, ScriptedRemote

    manifest = Manifest(database="payments", created=dt.datetime.now(dt.UTC),
                        file="payments-x.dump", encrypted=False, size=1, sha256="0" * 64,
                        tables={})
    argv = restore_check_command(environment, manifest, "drill_payments_abc").split()
    assert argv[argv.index("--network") + 1] == "none"
    assert "PG_TOOLS_SCRATCH_SERVER=1" in argv
    assert not [a for a in argv if a.startswith(("PGHOST", "PGPASSFILE"))]
    remote = ScriptedRemote([("for d in", (True, LISTING, "")),
                             ("docker run", (True, COUNTS, ""))])
    [row] = run_drill(remote, environment, ["payments"], now=NOW).rows
    assert row.result == "ok"
    assert any("PG_TOOLS_SCRATCH_SERVER=1" in c for c in remote.ran)
    assert not [c for c in remote.ran if "DROP DATABASE" in c]  # no server of ours holds it
