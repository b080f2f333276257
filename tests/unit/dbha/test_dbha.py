"""ops.dbha: the db_ha block's checks, the rendered files (checked by Patroni's and HAProxy's
own validators), the cluster status reader and the deploy's refusal during a failover."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ops import yamlio
from ops.dbha import commands
from ops.dbha.model import DbHaError, cluster_from_settings
from ops.dbha.render import (
    Archive,
    Passwords,
    etcd_environment,
    haproxy_cfg,
    patroni_yaml,
    pgbackrest_conf,
)
from ops.dbha.status import ClusterStatusError, parse_cluster
from tests.unit.dbha.cluster_data import ADDRESSES, SETTINGS

PASSWORDS = Passwords(superuser="su-CANARY-x1", replication="rep-CANARY-x2", rewind="rw-CANARY-x4",
                      rest_api="rest-CANARY-x3")


def cluster(**changes):
    return cluster_from_settings({**SETTINGS, **changes}, ADDRESSES, routers=["app-1"],
                                 source="group_data/prod.py")


def test_defaults_give_patronis_own_timings() -> None:
    c = cluster()
    assert (c.ttl, c.loop_wait, c.retry_timeout) == (30, 10, 10)
    assert c.synchronous and not c.synchronous_strict and c.failsafe
    assert [n.address for n in c.members] == ["10.0.0.11", "10.0.0.12"]


@pytest.mark.parametrize("changes, expected", [
    ({"members": ["db-1"]}, "db_ha.members: must have at least 2"),
    ({"etcd": ["db-1", "db-2", "db-3", "app-1"]}, "db_ha.etcd: 4 members: an even count"),
    ({"members": ["db-1", "db-9"]}, "db_ha.members.1: 'db-9' is not a host"),
    ({"members": ["db-1", "db-1"]}, "db_ha.members: names a host twice"),
    ({"replication": "sync"}, "db_ha.replication: must be one of asynchronous, synchronous"),
    ({"ttl_seconds": 20, "loop_wait_seconds": 10, "retry_timeout_seconds": 10},
     "db_ha.ttl_seconds: must be at least loop_wait_seconds + 2 x retry_timeout_seconds (30)"),
    ({"ttl_second": 30}, "unknown key 'ttl_second' (did you mean 'ttl_seconds'?)"),
])
def test_a_bad_block_is_refused_naming_the_file_and_key(changes, expected) -> None:
    with pytest.raises(DbHaError) as err:
        cluster(**changes)
    assert expected in str(err.value)
    assert str(err.value).startswith("group_data/prod.py: db_ha")


def test_postgres_accepts_the_members_the_routers_hosts_and_its_own_loopback_only() -> None:
    c = cluster()
    hba = yamlio.load(patroni_yaml(c, c.members[0], PASSWORDS))["postgresql"]["pg_hba"]
    assert hba == [
        "local all all trust",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host all all ::1/128 scram-sha-256",
        "host replication replicator 127.0.0.1/32 scram-sha-256",
        "host replication replicator ::1/128 scram-sha-256",
        "host replication replicator 10.0.0.11/32 scram-sha-256",
        "host replication replicator 10.0.0.12/32 scram-sha-256",
        "host postgres rewinder 10.0.0.11/32 scram-sha-256",
        "host postgres rewinder 10.0.0.12/32 scram-sha-256",
        "host all all 10.0.0.21/32 scram-sha-256",
    ]
    # the cluster's first member writes the same rules into the bootstrap configuration
    assert yamlio.load(patroni_yaml(c, c.members[1], PASSWORDS))["bootstrap"]["pg_hba"] == hba
    six = cluster_from_settings(SETTINGS, {**ADDRESSES, "app-1": "fd00::21"}, routers=["app-1"])
    assert "host all all fd00::21/128 scram-sha-256" in \
        yamlio.load(patroni_yaml(six, six.members[0], PASSWORDS))["postgresql"]["pg_hba"]
    # the member host's own containers (its exporter; a router where it is an app host too)
    local = cluster_from_settings(SETTINGS, ADDRESSES, routers=["app-1"],
                                  local_network="172.30.0.0/24")
    assert yamlio.load(patroni_yaml(local, local.members[0], PASSWORDS))["postgresql"][
        "pg_hba"] == [*hba, "host all all 172.30.0.0/24 scram-sha-256"]


def test_a_router_host_the_environment_does_not_have_is_refused() -> None:
    with pytest.raises(DbHaError) as err:
        cluster_from_settings(SETTINGS, ADDRESSES, routers=["app-9"], source="inventories/prod.py")
    assert str(err.value) == ("inventories/prod.py: db_ha: router host 'app-9' is not a host of "
                              "this environment")


def test_etcd_members_know_every_peer_and_advertise_their_own_address() -> None:
    c = cluster()
    env = etcd_environment(c, c.etcd[2])
    assert env["ETCD_INITIAL_CLUSTER"] == ("db-1=https://10.0.0.11:2380,db-2=https://10.0.0.12:2380,"
                                           "db-3=https://10.0.0.13:2380")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://10.0.0.13:2379"
    assert env["ETCD_NAME"] == "db-3"


def test_etcd_speaks_mutual_tls_only_and_patroni_brings_its_certificate() -> None:
    c = cluster()
    env = etcd_environment(c, c.etcd[0])
    assert all(env[k].startswith("https://") for k in env if k.endswith("_URLS"))
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_TRUSTED_CA_FILE"] == env["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/etcd/tls/ca.crt"
    etcd3 = yamlio.load(patroni_yaml(c, c.members[0], PASSWORDS))["etcd3"]
    assert etcd3 == {"hosts": ["10.0.0.11:2379", "10.0.0.12:2379", "10.0.0.13:2379"],
                     "protocol": "https", "cacert": "/etc/patroni/tls/ca.crt",
                     "cert": "/etc/patroni/tls/etcd-client.crt",
                     "key": "/etc/patroni/tls/etcd-client.key"}


@pytest.mark.parametrize("replication, strict", [("synchronous", False), ("synchronous", True),
                                                 ("asynchronous", True)])
def test_patroni_yml_carries_the_replication_mode(replication, strict) -> None:
    c = cluster(replication=replication, synchronous_strict=strict)
    dcs = yamlio.load(patroni_yaml(c, c.members[0], PASSWORDS))["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is (replication == "synchronous")
    # strict only means something with synchronous replication
    assert dcs["synchronous_mode_strict"] is (replication == "synchronous" and strict)
    assert dcs["failsafe_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True


@pytest.mark.parametrize("archive", [None, Archive("superapp", 30)])
def test_patroni_yml_passes_patronis_own_validator(tmp_path: Path, archive) -> None:
    c = cluster()
    for node in c.members:
        conf = tmp_path / f"{node.name}.yml"
        conf.write_text(patroni_yaml(c, node, PASSWORDS, archive))
        res = subprocess.run(["patroni", "--validate-config", str(conf)], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), \
            res.stdout + res.stderr


def test_with_an_archive_the_leader_archives_and_replicas_start_from_the_repository() -> None:
    c = cluster()
    conf = yamlio.load(patroni_yaml(c, c.members[1], PASSWORDS, Archive("superapp", 30)))
    parameters = conf["bootstrap"]["dcs"]["postgresql"]["parameters"]
    # `on`, not `always`: only the primary archives, so a promoted standby takes over alone
    assert parameters["archive_mode"] == "on" and parameters["archive_timeout"] == 30
    assert parameters["archive_command"] == "pgbackrest --stanza=superapp archive-push %p"
    pg = conf["postgresql"]
    assert pg["create_replica_methods"] == ["pgbackrest", "basebackup"]  # basebackup: fallback
    # --type=standby: no recovery.signal left behind to outlive a promotion (render.py)
    assert pg["pgbackrest"] == {"command": "pgbackrest --stanza=superapp --delta --type=standby "
                                           "restore",
                                "keep_data": True, "no_params": True}
    assert pg["recovery_conf"]["restore_command"] == \
        'pgbackrest --stanza=superapp archive-get %f "%p"'
    without = yamlio.load(patroni_yaml(c, c.members[1], PASSWORDS))
    assert "archive_command" not in without["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert "create_replica_methods" not in without["postgresql"]


def test_pgbackrest_conf_names_the_stanzas_data_directory_and_the_repository() -> None:
    text = pgbackrest_conf(Archive("superapp"), {"repo1-path": "/var/lib/pgbackrest"})
    assert text.splitlines()[:2] == ["[global]", "repo1-path=/var/lib/pgbackrest"]
    assert "[superapp]\npg1-path=/var/lib/postgresql/data/pgdata\n" in text


def test_patroni_validator_would_see_a_broken_file(tmp_path: Path) -> None:
    conf = tmp_path / "broken.yml"
    data = yamlio.load(patroni_yaml(cluster(), cluster().members[0], PASSWORDS))
    data["restapi"]["listen"] = "no-port-here"
    conf.write_text(yamlio.dump(data))
    res = subprocess.run(["patroni", "--validate-config", str(conf)], capture_output=True,
                         text=True, timeout=60)
    assert "restapi.listen" in res.stdout + res.stderr


def test_haproxy_cfg_passes_haproxys_check_and_follows_patronis_primary(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    text = haproxy_cfg(cluster())
    cfg.write_text(text)
    res = subprocess.run([shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "option httpchk OPTIONS /primary" in text
    assert "server db-2 10.0.0.12:5432 check port 8008" in text
    assert "on-marked-down shutdown-sessions" in text
    # its own exporter, for ops.dbha.monitoring's DbRouterNoPrimary
    exporter = "    http-request use-service prometheus-exporter if { path /metrics }"
    assert f"    bind *:8404\n{exporter}" in text
    broken = tmp_path / "broken.cfg"
    broken.write_text(text.replace("mode tcp", "mode tcpx"))
    assert subprocess.run(["haproxy", "-c", "-f", str(broken)], capture_output=True,
                          timeout=60).returncode != 0


def test_no_password_in_the_routers_file_or_in_any_command_line() -> None:
    c = cluster()
    text = haproxy_cfg(c) + json.dumps(etcd_environment(c, c.etcd[0]))
    argvs = [commands.switchover("db-1", "db-2"), commands.cluster_status("10.0.0.11"),
             commands.reinit("superapp", "db-2")]
    for secret in (PASSWORDS.superuser, PASSWORDS.replication, PASSWORDS.rewind,
                   PASSWORDS.rest_api):
        assert secret not in text and all(secret not in " ".join(a) for a in argvs)
        assert secret not in repr(PASSWORDS)
    # ...while patroni.yml does carry them (it is written 0600 for postgres only)
    assert PASSWORDS.replication in patroni_yaml(c, c.members[0], PASSWORDS)


def doc(*members, **extra):
    return json.dumps({"members": list(members), **extra})


LEADER = {"name": "db-1", "role": "leader", "state": "running", "timeline": 3}
SYNC = {"name": "db-2", "role": "sync_standby", "state": "streaming", "timeline": 3, "lag": 0}


def test_a_healthy_cluster_lets_a_deploy_run_and_reads_as_rows() -> None:
    st = parse_cluster(doc(LEADER, SYNC))
    assert st.deploy_refusal("superapp") is None
    assert st.leader and st.leader.name == "db-1"
    assert st.lines() == ["db-1: leader, running, timeline 3",
                          "db-2: sync_standby, streaming, timeline 3, lag 0 B"]


@pytest.mark.parametrize("members, extra, expected", [
    ([{**SYNC, "role": "replica"}], {}, "has no leader: a failover is in progress"),
    ([LEADER, {**SYNC, "state": "stopped"}], {}, "member db-2 is stopped"),
    ([LEADER, {**SYNC, "state": "creating replica"}], {}, "member db-2 is creating replica"),
    ([{**LEADER, "state": "starting"}, SYNC], {}, "leader db-1 is starting"),
    ([LEADER, {**SYNC, "role": "leader"}], {}, "reports 2 leaders (db-1, db-2)"),
    ([LEADER, SYNC], {"pause": True}, "is paused"),
    ([LEADER, SYNC], {"scheduled_switchover": {"at": "x"}}, "switchover scheduled"),
])
def test_a_deploy_during_a_failover_is_refused_with_the_reason(members, extra, expected) -> None:
    refusal = parse_cluster(doc(*members, **extra)).deploy_refusal("superapp")
    assert refusal and expected in refusal and "superapp" in refusal


def test_a_member_that_stopped_reporting_refuses_a_deploy_until_it_rejoins() -> None:
    st = parse_cluster(doc(LEADER))  # db-2's key expired: its host is down
    assert st.deploy_refusal("superapp") is None  # nothing to compare with
    refusal = st.deploy_refusal("superapp", expected=["db-1", "db-2"])
    assert refusal and "member db-2 does not report" in refusal
    assert parse_cluster(doc(LEADER, SYNC)).deploy_refusal("superapp", ["db-1", "db-2"]) is None


@pytest.mark.parametrize("text", ["", "[]", '{"members": [{"role": "leader"}]}', "<html>"])
def test_a_non_patroni_answer_is_one_clear_error(text) -> None:
    with pytest.raises(ClusterStatusError):
        parse_cluster(text)
