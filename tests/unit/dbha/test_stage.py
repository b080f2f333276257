"""The deploy's database cluster stage (ops/dbha/stage.py) and the plan that feeds it, against
scripted hosts: with `db_ha` the cluster's files and the roles' provisioning are no host's
rollout (HostPlan.cluster_files); the stage converges the cluster, then provisions on the
member that leads, the script on every member first and each marker only after it ran. (The
real thing: tests/integration/test_dbha_stage.py.)"""

from __future__ import annotations

import json

import pytest

from ops.dbha import commands
from ops.dbha.stage import cluster_leader, cluster_stage, provision
from ops.host.state import HostState
from ops.render.databases import PROVISION_SQL, PROVISIONED_MARKER
from ops.rollout.plan import plan_host, plan_lines
from ops.rollout.steps import RolloutError
from tests.unit.dbha.cluster_data import ClusterSecrets, add_cluster


def cluster_json(leader: str | None, members: tuple[str, ...] = ("db-1", "db-2")) -> str:
    return json.dumps({"members": [
        {"name": n, "state": "running", "timeline": 1,
         "role": "leader" if n == leader else "sync_standby", "lag": 0}
        for n in members]})


class Host:
    """A host that answers like a healthy one; `/cluster` says `leader` leads, and lists
    `members`."""

    def __init__(self, name: str, log: list[tuple[str, str]], leader: str | None = "db-1",
                 members: tuple[str, ...] = ("db-1", "db-2"), settings: str = ""):
        self.name, self.log, self.leader, self.members = name, log, leader, members
        self.settings = settings  # what `patronictl show-config` prints
        self.uploaded: dict[str, str] = {}

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.log.append((self.name, command))
        if "/cluster" in command:
            return True, cluster_json(self.leader, self.members), ""
        if "show-config" in command:
            return True, self.settings, ""
        return True, "", ""

    def put(self, content: bytes, path: str) -> bool:
        self.log.append((self.name, f"PUT {path}"))
        self.uploaded[path] = content.decode()
        return True

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        self.log.append((self.name, f"FRESH {command}"))  # the firewall's confirmation
        return True, "", ""


def installs(command: str, path: str) -> bool:
    """`command` moves an uploaded file into place at `path` (ops.rollout.steps.upload)."""
    return not command.startswith("PUT ") and "psql" not in command and path in command


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.unit.conftest import RepoCopy

    repo = RepoCopy(tmp_path_factory.mktemp("repo") / "repo")
    add_cluster(repo)
    return repo.load()


@pytest.fixture
def plans(environment):
    """Every host's plan against an empty host: a first deploy."""
    secrets = ClusterSecrets(environment)
    return [plan_host(environment, h.name, secrets, HostState()) for h in environment.hosts]


def test_with_db_ha_the_cluster_and_the_provisioning_are_no_hosts_rollout(plans) -> None:
    db1 = next(p for p in plans if p.host == "db-1")
    units = {f.unit for f in db1.cluster_files}
    assert units == {"dbha", "databases"}
    assert not {"dbha", "databases"} & set(db1.infra_units)
    assert not [f for f in db1.infra_files if f.unit in units]
    assert f"update {PROVISION_SQL} (the database cluster's stage)" in plan_lines(db1)
    app = next(p for p in plans if p.host == "app-1")  # a router, no member
    assert {f.unit for f in app.cluster_files} == {"dbha"}


def test_without_db_ha_the_provisioning_stays_the_db_hosts() -> None:
    from tests.unit.rollout.test_plan import ENV, SECRETS

    plan = plan_host(ENV, ENV.db_host.name, SECRETS, HostState())
    assert plan.cluster_files == []
    assert "databases" in plan.infra_units


def test_a_run_without_cluster_files_never_touches_the_cluster(environment, plans) -> None:
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log) for h in environment.hosts}
    quiet = [type(p)(**{**p.__dict__, "cluster_files": []}) for p in plans]
    assert cluster_stage(environment, quiet, hosts, ClusterSecrets(environment)) is False
    assert log == []


@pytest.mark.parametrize("leader", ["db-1", "db-2"])
def test_the_stage_converges_then_provisions_on_the_leader_only(environment, plans,
                                                                leader) -> None:
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log, leader) for h in environment.hosts}
    reached: list[str] = []
    assert cluster_stage(environment, plans, hosts, ClusterSecrets(environment),
                         lambda step, host: reached.append(step), timeout=5,
                         sleep=lambda s: None)
    assert reached == ["cluster", "provisioned"]
    psql = [(h, i) for i, (h, c) in enumerate(log) if "psql" in c and PROVISION_SQL in c]
    assert [h for h, _ in psql] == [leader], psql
    assert f"exec -i {commands.MEMBER_CONTAINER} psql" in log[psql[0][1]][1]
    at = psql[0][1]
    ups = [i for i, (_, c) in enumerate(log) if c.startswith("docker compose")]
    assert max(ups) < at, "provisioned before the cluster was up"
    # every host of the cluster got its new firewall (confirmed) before any part started, and
    # its rollout has none left to apply
    # (backup-1 has no part: its rollout applies its own)
    confirmed = {h for h, c in log[:min(ups)] if c.startswith("FRESH ")}
    assert confirmed == {h.name for h in environment.hosts} - {"backup-1"}
    assert [p.host for p in plans if "firewall" in p.infra_units] == ["backup-1"]
    scripts = {h for h, c in log[:at] if installs(c, PROVISION_SQL)}
    assert scripts == {"db-1", "db-2"}, "the script is on every member before it runs"
    markers = [(h, i) for i, (h, c) in enumerate(log) if installs(c, PROVISIONED_MARKER)]
    assert sorted(h for h, _ in markers) == ["db-1", "db-2"]
    assert all(i > at for _, i in markers), "a marker written before the script ran"


def test_no_leader_stops_the_run_before_provisioning(environment) -> None:
    """(A cluster with no leader after converging already stops there: this is one that
    lost it in between.)"""
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log, None) for h in environment.hosts}
    with pytest.raises(RolloutError) as info:
        provision(environment, hosts, ClusterSecrets(environment))
    assert "has no leader: a failover is in progress" in str(info.value)
    assert not [c for _, c in log if "psql" in c and PROVISION_SQL in c]
    assert not [c for _, c in log if installs(c, PROVISIONED_MARKER)]


def test_a_run_missing_a_host_of_the_cluster_is_refused_before_anything_changed(
        environment, plans) -> None:
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log) for h in environment.hosts if h.name != "db-2"}
    with pytest.raises(RolloutError) as info:
        cluster_stage(environment, plans, hosts, ClusterSecrets(environment))
    assert "db-2" in str(info.value) and "--limit" in str(info.value)
    assert log == []


def test_a_deploy_during_a_failover_is_refused_before_anything_changed(environment,
                                                                       plans) -> None:
    """db-2 does not report (its host or Patroni down, not rejoined after a failover): no
    firewall, file or container changes, and the message says why."""
    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log, "db-1", ("db-1",)) for h in environment.hosts}
    with pytest.raises(RolloutError) as info:
        cluster_stage(environment, plans, hosts, ClusterSecrets(environment))
    assert str(info.value).startswith("refusing to deploy: the database cluster superapp: "
                                      "member db-2 does not report")
    assert "no host was changed" in str(info.value)
    assert [c for _, c in log if "/cluster" not in c] == []
    with pytest.raises(RolloutError, match="member db-2 does not report"):
        cluster_leader(environment, hosts)  # a run with no cluster file to change


def settings_of(environment, **changes) -> str:
    """`patronictl show-config` of a cluster holding what this run renders, with `changes`."""
    from ops import yamlio
    from ops.dbha.render import dcs_config
    from ops.render.dbha import archive

    return yamlio.dump({**dcs_config(environment.db_ha, archive(environment)), **changes})


@pytest.mark.parametrize("held, written", [({}, None), ({"ttl": 20}, {"ttl": 30})])
def test_settings_go_through_patroni_only_where_they_differ(environment, plans, held,
                                                            written) -> None:
    """Patroni reads a member file's bootstrap settings only when the cluster is created: a
    running cluster gets a changed setting through `patronictl edit-config`, the rest left."""
    from ops import yamlio

    log: list[tuple[str, str]] = []
    hosts = {h.name: Host(h.name, log, settings=settings_of(environment, **held))
             for h in environment.hosts}
    cluster_stage(environment, plans, hosts, ClusterSecrets(environment), sleep=lambda s: None)
    edits = [c for _, c in log if "edit-config" in c]
    assert len(edits) == (1 if written else 0), edits
    if written:  # the patch goes to patronictl's stdin from a file uploaded for it
        patches = [yamlio.load(text) for h in hosts.values()
                   for path, text in h.uploaded.items() if path.startswith("/tmp/superapp-dbha-")]
        assert patches == [written] and "--apply" in edits[0]
