"""ops.dbha.hosts: the cluster through its members' hosts (scripted `Remote`s), and the shell
text `commands.on_host` builds, run for real against a stand-in `docker` that records what it
was given."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ops.dbha import commands
from ops.dbha.hosts import HostMembers, status_lines
from ops.dbha.model import cluster_from_settings
from tests.unit.dbha.cluster_data import ADDRESSES, SETTINGS

CLUSTER = cluster_from_settings(SETTINGS, ADDRESSES, routers=["app-1"])
HEALTHY = json.dumps({"members": [
    {"name": "db-1", "role": "leader", "state": "running", "timeline": 3},
    {"name": "db-2", "role": "sync_standby", "state": "streaming", "timeline": 3, "lag": 0}]})


class Host:
    def __init__(self, name: str, answer: tuple[bool, str, str] = (True, HEALTHY, ""),
                 put_ok: bool = True):
        self.name, self.answer, self.put_ok = name, answer, put_ok
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.commands.append(command)
        return self.answer

    def put(self, content: bytes, path: str) -> bool:
        self.files[path] = content
        return self.put_ok

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        raise AssertionError("not used")


def test_state_is_read_inside_the_first_member_that_answers() -> None:
    down = Host("db-1", (False, "", "Error response from daemon: container patroni is not "
                                    "running"))
    up = Host("db-2")
    state = HostMembers(CLUSTER, {"db-1": down, "db-2": up}).state()
    assert state.leader.name == "db-1"
    assert up.commands == [commands.on_host("patroni", commands.cluster_status("10.0.0.12"))]
    assert len(down.commands) == 1


def test_no_member_answering_names_each_failure() -> None:
    garbled = Host("db-1", (True, "<html>", ""))
    members = HostMembers(CLUSTER, {"db-1": garbled})  # db-2 left out of the run
    try:
        members.state()
    except OSError as e:
        assert str(e).startswith("no member of the database cluster superapp answers "
                                 "/cluster: db-1: not a Patroni /cluster answer")
    else:
        raise AssertionError("no error")


def test_a_command_with_input_uploads_it_and_reads_it_from_that_file() -> None:
    host = Host("db-1", (True, "ok", ""))
    code, out = HostMembers(CLUSTER, {"db-1": host}).run("db-1", commands.edit_config(),
                                                          stdin="postgresql: {}\n")
    assert (code, out) == (0, "ok")
    [(path, content)] = host.files.items()
    assert content == b"postgresql: {}\n" and path.startswith("/tmp/superapp-dbha-")
    assert host.commands == [commands.on_host("patroni", commands.edit_config(), path)]


def test_a_member_outside_the_run_fails_without_a_command() -> None:
    code, out = HostMembers(CLUSTER, {}).run("db-2", commands.show_config())
    assert code != 0 and "db-2: its host is not in this run" in out


def test_status_lines_say_healthy_or_why_not() -> None:
    assert status_lines(CLUSTER, {"db-1": Host("db-1")}) == [
        "database cluster superapp: healthy",
        "  db-1: leader, running, timeline 3",
        "  db-2: sync_standby, streaming, timeline 3, lag 0 B"]
    lagging = HEALTHY.replace('"streaming"', '"starting"')
    assert status_lines(CLUSTER, {"db-1": Host("db-1", (True, lagging, ""))})[0] == (
        "database cluster superapp: NOT READY: the database cluster superapp: member db-2 is "
        "starting (a failover or a rejoin is in progress); deploy once it is running")
    assert status_lines(CLUSTER, {})[0] == (
        "database cluster superapp: UNKNOWN: no member of the database cluster superapp "
        "answers /cluster: no member host in this run")


FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$@" > "$RECORD.argv"
cat > "$RECORD.stdin"
exit 3
"""


def run_on_host(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "RECORD": str(tmp_path / "record")}
    return subprocess.run(["sh", "-c", text], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_on_host_keeps_the_exit_status_and_removes_the_input_file(tmp_path: Path) -> None:
    patch = tmp_path / "patch it.yml"  # a space: the path must be quoted
    patch.write_text("postgresql:\n  parameters: {max_connections: 250}\n")
    res = run_on_host(tmp_path, commands.on_host("patroni", commands.edit_config(), str(patch)))
    assert res.returncode == 3
    assert (tmp_path / "record.argv").read_text().split("\n")[:4] == \
        ["exec", "-i", "patroni", "patronictl"]
    assert (tmp_path / "record.stdin").read_text() == \
        "postgresql:\n  parameters: {max_connections: 250}\n"
    assert not patch.exists()


def test_on_host_without_input_passes_arguments_unchanged(tmp_path: Path) -> None:
    argv = commands.cluster_status("10.0.0.11")
    res = run_on_host(tmp_path, commands.on_host("patroni", argv))
    assert res.returncode == 3
    assert (tmp_path / "record.argv").read_text().rstrip("\n").split("\n") == \
        ["exec", "patroni", *argv]
