"""group_data `db_ha`: loaded into `Environment.db_ha` with the hosts' addresses, the app hosts
as routers; errors name the file and key; deploy.py refuses such an environment (it does not
deploy the cluster yet) before any host is changed."""

from __future__ import annotations

import pytest

from ops.catalog import ConfigError
from ops.rollout.run import database_cluster_refusal
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


def test_deploy_refuses_an_environment_with_a_cluster(repo_copy) -> None:
    add_cluster(repo_copy)
    message = database_cluster_refusal(repo_copy.load())
    assert message.startswith("refusing to deploy prod: group_data/prod.py: db_ha: this tool "
                              "does not deploy the Patroni cluster yet")
    assert "No host was changed" in message


def test_the_refusal_comes_first_in_the_deploy_checks(repo_copy, monkeypatch) -> None:
    """prepare_run (deploy.py's first stage) refuses before the audit or any host read."""
    from ops.rollout import run

    add_cluster(repo_copy)
    environment = repo_copy.load()
    monkeypatch.setattr(run, "env_name", lambda: "prod")
    monkeypatch.setattr(run, "load_environment", lambda name: environment)

    def no_audit(*args, **kwargs):
        raise AssertionError("the audit ran")

    monkeypatch.setattr(run, "audit_unless_passed", no_audit)
    with pytest.raises(run.DeployRefused) as info:
        run.prepare_run("deploy")
    assert str(info.value) == database_cluster_refusal(environment)
