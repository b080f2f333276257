"""group_data `db_ha`: loaded into `Environment.db_ha` with the hosts' addresses, the app hosts
as routers; errors name the file and key; deploy.py takes such an environment on to its checks
like any other."""

from __future__ import annotations

import pytest

from ops.catalog import ConfigError
from tests.unit.dbha.cluster_data import add_cluster, add_db_2


def error_of(repo) -> str:
    with pytest.raises(ConfigError) as info:
        repo.load("prod")
    return str(info.value)


def test_the_cluster_is_loaded_with_addresses_and_the_app_hosts_as_routers(repo_copy) -> None:
    add_cluster(repo_copy)
    cluster = repo_copy.load().db_ha
    assert [(n.name, n.address) for n in cluster.members] == [("db-1", "10.10.1.11"),
                                                              ("db-2", "10.10.1.12")]
    assert [n.name for n in cluster.etcd] == ["db-1", "db-2", "mon-1"]
    assert [n.name for n in cluster.routers] == ["app-1", "app-2", "app-3", "app-4"]
    assert cluster.synchronous and cluster.ttl == 30


def test_without_db_ha_there_is_no_cluster_and_one_db_host(repo_copy) -> None:
    assert repo_copy.load().db_ha is None
    add_db_2(repo_copy)
    assert "needs exactly one host with role 'db', found 2" in error_of(repo_copy)


def test_the_members_must_be_the_db_hosts(repo_copy) -> None:
    add_cluster(repo_copy, members=["db-2", "mon-1"])
    assert error_of(repo_copy) == ("group_data/prod.py: db_ha.members: must be the hosts with "
                                   "role 'db' (db-1, db-2)")


def test_every_fault_is_named_with_its_file_and_key(repo_copy) -> None:
    add_cluster(repo_copy, etcd=["db-1", "db-2", "db-9"], ttl_seconds=10)
    message = error_of(repo_copy)
    assert "group_data/prod.py: db_ha.etcd.2: 'db-9' is not a host of this environment" \
        in message
    assert "group_data/prod.py: db_ha.ttl_seconds: must be at least loop_wait_seconds + 2 x " \
        "retry_timeout_seconds (30)" in message


def test_a_schema_fault_is_named_before_anything_else(repo_copy) -> None:
    add_cluster(repo_copy, replication="sync")
    assert "group_data/prod.py: db_ha.replication: must be one of asynchronous, synchronous" \
        in error_of(repo_copy)


def test_deploy_takes_an_environment_with_a_cluster_on_to_its_checks(repo_copy,
                                                                     monkeypatch) -> None:
    """prepare_run (deploy.py's first stage) no longer refuses `db_ha`: the environment goes on
    to the audit like any other (the cluster's own stage: ops/dbha/stage.py)."""
    from ops.rollout import run

    add_cluster(repo_copy)
    environment = repo_copy.load()
    monkeypatch.setattr(run, "env_name", lambda: "prod")
    monkeypatch.setattr(run, "load_environment", lambda name: environment)
    audited = []

    def audit(name, settings, *args, **kwargs):
        audited.append(settings.get("db_ha"))
        raise run.DeployRefused("stop here: the audit was reached")

    monkeypatch.setattr(run, "audit_unless_passed", audit)
    with pytest.raises(run.DeployRefused, match="the audit was reached"):
        run.prepare_run("deploy")
    assert audited and audited[0]["members"] == ["db-1", "db-2"]
