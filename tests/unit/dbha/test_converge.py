"""ops.dbha.converge against scripted hosts: every host's files are written before anything
starts, a first start goes etcd (together), Patroni (together), then each router alone, each
waited for; a settled cluster is left alone; the run refuses a cluster whose hosts it does
not all reach. (The real thing: tests/integration/test_dbha_stage.py.)"""

from __future__ import annotations

import json

import pytest

from ops.dbha import commands
from ops.dbha.converge import converge, wanted_digests
from ops.dbha.model import DbHaError
from ops.render import dbha as rendered
from tests.unit.dbha.cluster_data import ClusterSecrets, add_cluster

HEALTHY = json.dumps({"members": [
    {"name": "db-1", "role": "leader", "state": "running", "timeline": 1},
    {"name": "db-2", "role": "sync_standby", "state": "streaming", "timeline": 1, "lag": 0}]})


class Host:
    """Answers like a healthy host; `running`: what `docker ps` lists for the project."""

    def __init__(self, name: str, log: list[tuple[str, str]], running: str = ""):
        self.name, self.log, self.running = name, log, running

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.log.append((self.name, command))
        if command == commands.observe_parts():
            return True, self.running, ""
        if "/cluster" in command:
            return True, HEALTHY, ""
        return True, "", ""

    def put(self, content: bytes, path: str) -> bool:
        self.log.append((self.name, f"PUT {path}"))
        return True

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.unit.conftest import RepoCopy

    repo = RepoCopy(tmp_path_factory.mktemp("repo") / "repo")
    add_cluster(repo)
    return repo.load()


def composed(log: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(host, compose service) of every `docker compose up`, in order."""
    return [(host, command.rsplit(" ", 1)[1]) for host, command in log
            if command.startswith("docker compose") and " up " in command]


def test_a_first_start_writes_every_file_then_starts_the_parts_in_order(environment) -> None:
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log) for h in environment.hosts}
    secrets = ClusterSecrets(environment)
    files = sum(len(rendered.render_files(environment, h, secrets)) for h in environment.hosts)
    steps = converge(environment, hosts, secrets, sleep=lambda s: None)
    assert [(s.part, s.hosts) for s in steps] == [
        ("etcd", ("db-1", "db-2", "mon-1")), ("patroni", ("db-1", "db-2")),
        *[("router", (h,)) for h in ("app-1", "app-2", "app-3", "app-4")]]
    first_up = next(i for i, (_, c) in enumerate(log) if c.startswith("docker compose"))
    assert len([c for _, c in log[:first_up] if c.startswith("PUT ")]) == files
    assert not [c for _, c in log[first_up:] if c.startswith("PUT ")], \
        "a file was written after a part started"
    assert composed(log) == [("db-1", "etcd"), ("db-2", "etcd"), ("mon-1", "etcd"),
                             ("db-1", "patroni"), ("db-2", "patroni"),
                             ("app-1", "db-router"), ("app-2", "db-router"),
                             ("app-3", "db-router"), ("app-4", "db-router")]
    # each etcd and router waited for where it runs, before the next step began
    waits = [(h, c) for h, c in log if "etcdctl" in c or "haproxy_backend_active" in c]
    assert [h for h, _ in waits] == ["db-1", "db-2", "mon-1", "app-1", "app-2", "app-3",
                                     "app-4"]
    assert "backup-1" not in {h for h, _ in log}


def test_a_settled_cluster_is_left_alone(environment) -> None:
    secrets = ClusterSecrets(environment)
    log: list[tuple[str, str]] = []
    hosts = {}
    for h in environment.hosts:
        files = rendered.render_files(environment, h, secrets)
        wanted = wanted_digests(files) if files else {}
        keys = {"etcd": "etcd", "patroni": "patroni", "router": "db-router"}
        hosts[h.name] = Host(h.name, log, "".join(f"{keys[p]} running {d}\n"
                                                  for p, d in wanted.items()))
    assert converge(environment, hosts, secrets, sleep=lambda s: None) == []
    assert composed(log) == []


def test_a_run_without_every_host_of_the_cluster_changes_nothing(environment) -> None:
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log) for h in environment.hosts if h.name != "mon-1"}
    with pytest.raises(DbHaError) as err:
        converge(environment, hosts, ClusterSecrets(environment), sleep=lambda s: None)
    assert "the cluster's hosts mon-1 are not in this run (--limit?)" in str(err.value)
    assert log == []
