"""group_data/local.py's `testbed_fleet`: the local environment describes every host the testbed
started (`testbed.py up --hosts N`), and is exactly the three listed hosts when it started no
more (ops/catalog/testbed_fleet.py)."""

from __future__ import annotations

import json

import pytest

from ops.audit import run_audit
from ops.catalog import ConfigError, inventory_groups, load_environment
from ops.catalog.testbed_fleet import STATE_DIR_ENV, STATE_FILE

LISTED = [
    ("host1", "10.231.0.11", ("app", "db")),
    ("host2", "10.231.0.12", ("app",)),
    ("host3", "10.231.0.13", ("app", "monitoring", "backup")),
]
ON_EXTRA_HOSTS = ["payments", "chat"]  # catalog order
LOCAL = "group_data/local.py"


@pytest.mark.parametrize("count", [6, 12])
def test_every_host_started_past_the_third_is_an_app_host_running_two_services(
        testbed_started, count):
    local = testbed_started(count)
    extra = [f"host{i}" for i in range(4, count + 1)]
    assert [(h.name, h.address, h.roles) for h in local.hosts] == LISTED + [
        (name, f"10.231.0.{10 + int(name[4:])}", ("app",)) for name in extra]
    for name in extra:
        assert [s.name for s in local.services_on(name)] == ON_EXTRA_HOSTS
    for service, hosts in local.placement.items():
        assert list(hosts) == ["host1", "host2", "host3",
                               *(extra if service in ON_EXTRA_HOSTS else [])], service
    assert local.singleton_hosts == {"payments.beat": "host1"}
    groups = inventory_groups(local)
    assert [name for name, _ in groups["app"]] == ["host1", "host2", "host3", *extra]
    assert groups["db"] == [("host1", {"ssh_hostname": "10.231.0.11"})]
    assert [name for name, _ in groups["monitoring"]] == ["host3"]
    assert local.in_rollout_order(reversed([h.name for h in local.hosts]))[:4] == [
        "host1", "host2", "host3", "host4"]


@pytest.mark.parametrize("state", [
    None, "", "not json", "[6]", '{"procs": {}}', '{"hosts_count": "6"}',
    '{"hosts_count": true}', '{"hosts_count": 1}', '{"hosts_count": 3}',
])
def test_no_more_hosts_started_is_exactly_todays_environment(tmp_path, monkeypatch,
                                                              environments, state):
    if state is not None:
        (tmp_path / STATE_FILE).write_text(state)
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    local, today = load_environment("local"), environments["local"]
    assert [(h.name, h.address, h.roles) for h in local.hosts] == LISTED
    assert local.hosts == today.hosts
    assert local.placement == today.placement
    assert local.singleton_hosts == today.singleton_hosts
    assert local.settings == today.settings


def test_an_unreadable_state_file_is_no_testbed(tmp_path, monkeypatch, environments):
    (tmp_path / STATE_FILE).mkdir()
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    assert load_environment("local").hosts == environments["local"].hosts


def test_the_state_directory_is_group_datas_unless_the_testbeds_variable_names_one(
        repo_copy, tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text(json.dumps({"hosts_count": 4}))
    repo_copy.replace(LOCAL, r'"state_dir": "/var/lib/superapp-testbed"',
                      f'"state_dir": "{state}"')
    monkeypatch.delenv(STATE_DIR_ENV)
    assert [h.name for h in repo_copy.load("local").hosts][-1] == "host4"
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert [h.name for h in repo_copy.load("local").hosts][-1] == "host3"


def test_an_extra_host_without_payments_is_refused_naming_local(repo_copy, testbed_started):
    testbed_started(4)  # points $SA_TESTBED_STATE at a 4-host testbed
    repo_copy.replace(LOCAL, r'"services": \["payments", "chat"\]', '"services": ["taxi"]')
    with pytest.raises(ConfigError) as info:
        repo_copy.load("local")
    assert ("group_data/local.py: placement.payments: host 'host4' runs taxi, which call "
            "payments, but not payments" in str(info.value))


@pytest.mark.parametrize(("edit", "message"), [
    ('"services": ["payments", "chats"]',
     "testbed_fleet.services.1: unknown service 'chats' (did you mean 'chat'?)"),
    ('"services": []', "testbed_fleet.services: must have at least 1 item"),
])
def test_testbed_fleet_names_known_services(repo_copy, edit, message):
    repo_copy.replace(LOCAL, r'"services": \["payments", "chat"\]', edit)
    with pytest.raises(ConfigError) as info:
        repo_copy.load("local")
    assert f"{LOCAL}: {message}" in str(info.value)


def test_a_bad_address_base_is_named(repo_copy, testbed_started):
    testbed_started(6)
    repo_copy.replace(LOCAL, r'"address_base": "10.231.0.10"', '"address_base": "10.231.0"')
    with pytest.raises(ConfigError) as info:
        repo_copy.load("local")
    assert ("group_data/local.py: testbed_fleet.address_base: '10.231.0' is not an IPv4 "
            "address" in str(info.value))


def test_prod_never_takes_hosts_from_a_testbed(repo_copy):
    repo_copy.append("group_data/prod.py", 'testbed_fleet = {"state_dir": "/var/lib/x", '
                     '"name_prefix": "app-", "address_base": "10.10.0.10", "roles": ["app"], '
                     '"services": ["payments"]}')
    with pytest.raises(ConfigError) as info:
        repo_copy.load("prod")
    assert ("group_data/prod.py: testbed_fleet: prod lists every host it deploys to"
            in str(info.value))


def test_six_hosts_pass_the_audit_the_deploy_runs(testbed_started):
    testbed_started(6)
    report = run_audit("local", repo=False)
    assert report.blocking == [], report.format_table(only_blocking=True)
