"""Postgres high availability on the testbed (ops.dbha): Patroni on etcd, HAProxy routing to
the leader, with writes running through the router during every fault.

Each fault test prints its RTO (seconds of failed writes, from the first failed INSERT to the
first acknowledged one after the last failure) and its RPO (acknowledged rows the new leader
does not have). Synchronous replication: no acknowledged row may be lost.
"""

from __future__ import annotations

import re
import time
from shlex import quote as q

import pytest

from bench.dbha_cluster import (
    ARCHIVE,
    ETCD,
    MEMBERS,
    ROUTER,
    ContainerMembers,
    DbCluster,
    HostRemote,
    Writes,
)
from ops.catalog import load_environment
from ops.dbha import failover, maintenance, monitoring
from ops.dbha.hosts import HostMembers, status_lines
from ops.dbha.model import DbHaError
from ops.dbha.render import DATA_DIR, dcs_config

# hosts_only: make test runs this module beside the first deploy (tests/run_phases.sh)
pytestmark = [pytest.mark.integration, pytest.mark.hosts_only]


@pytest.fixture(scope="module")
def db(testbed):
    host = testbed.host("host2")
    print("\n[db_ha] starting 3 etcd, 2 Patroni members and a router on host2", flush=True)
    t0 = time.monotonic()
    cluster = DbCluster(lambda command: testbed.ssh_argv(host, command), testbed.registry,
                        replication="synchronous")
    cluster.start()
    print(f"[db_ha] cluster healthy in {time.monotonic() - t0:.1f} s", flush=True)
    yield cluster
    cluster.remove()


def report(what: str, writes: Writes, lost: int) -> None:
    print(f"\n[db_ha] {what}: {len(writes.acked)} writes acknowledged, "
          f"{len(writes.failed)} failed attempts, RTO {writes.outage_seconds:.1f} s, "
          f"RPO {lost} rows", flush=True)


def fault_under_writes(db: DbCluster, inject, seconds: float = 30) -> Writes:
    db.truncate()
    db.start_writer(seconds)
    time.sleep(5)
    inject()
    return db.writer_result()


def survived(db: DbCluster, what: str, inject) -> Writes:
    """Writes through the router around `inject`: they failed, resumed, and lost nothing."""
    writes = fault_under_writes(db, inject)
    lost = db.lost_rows(writes)
    report(what, writes, lost)
    assert writes.failed, f"{what}: no write failed: the fault did not happen"
    assert any(t > max(writes.failed) for _, t in writes.acked), f"{what}: writes never resumed"
    assert lost == 0, f"{what}: {lost} acknowledged rows lost"
    return writes


def test_the_cluster_has_one_leader_and_a_synchronous_standby(db: DbCluster) -> None:
    st = db.wait_healthy(timeout=60)
    assert st.leader is not None
    roles = sorted(m.role for m in st.members)
    assert roles == ["leader", "sync_standby"], st.lines()
    assert db.dcs_config()["synchronous_mode"] is True


def test_postgres_answers_the_router_and_refuses_any_other_address(db: DbCluster) -> None:
    leader = db.wait_healthy(timeout=60).leader.name
    assert db.psql("SELECT 1") == "1"  # through the router
    direct = db.psql_elsewhere(leader, "SELECT 1")  # the right password, the wrong address
    assert direct.returncode != 0 and "no pg_hba.conf entry for host" in direct.stderr, \
        direct.stdout + direct.stderr


def test_etcd_answers_patronis_certificate_only(db: DbCluster) -> None:
    """Whoever writes etcd names the leader: a client on the network without a certificate
    from the cluster's CA gets nothing, over TLS or plain HTTP."""
    db.wait_healthy(timeout=60)
    ok = db.etcd_get("/version")
    assert ok.returncode == 0 and '"etcdserver":"3.4' in ok.stdout, ok.stdout + ok.stderr
    anonymous = db.etcd_get("/version", client_cert=False)
    # the server's TLS alert: "bad certificate" (TLS 1.2), "certificate required" (1.3)
    assert anonymous.returncode != 0 and re.search(
        r"alert (bad certificate|certificate required)", anonymous.stderr), \
        anonymous.stdout + anonymous.stderr
    plain = db.etcd_get("/version", scheme="http", client_cert=False)
    # etcd closes a plain-HTTP connection on a TLS-only port without a word
    assert plain.returncode != 0 and "closed connection without response" in plain.stderr, \
        plain.stdout + plain.stderr


def test_the_metrics_the_alerts_read_are_the_ones_patroni_and_haproxy_serve(db) -> None:
    """ops.dbha.monitoring's rules are unit-tested on series named like these; here the
    names and labels come from the running exporters, so a rule on a metric that does not
    exist (always silent) fails."""
    st = db.wait_healthy(timeout=60)
    served = {name: db.metrics(name) for name in (*MEMBERS, ROUTER)}
    rules = monitoring.alert_group(db.cluster, "https://runbooks.example")["rules"]
    used = {m for r in rules for m in re.findall(r"\b((?:patroni|haproxy)_[a-z_]+)\b", r["expr"])}
    assert len(used) >= 7, used
    for metric in used:
        where = ROUTER if metric.startswith("haproxy_") else MEMBERS[0]
        assert re.search(rf"^{metric}{{", served[where], re.M), f"{where} serves no {metric}"

    def value(name: str, series: str) -> float:
        match = re.search(rf"^{re.escape(series)} (\S+)$", served[name], re.M)
        assert match, f"{name}: no {series}"
        return float(match.group(1))

    leader = st.leader.name
    standby = next(m for m in MEMBERS if m != leader)
    assert value(leader, 'patroni_primary{scope="superapp"}') == 1
    assert value(standby, 'patroni_primary{scope="superapp"}') == 0
    assert value(standby, 'patroni_sync_standby{scope="superapp"}') == 1
    assert value(standby, 'patroni_xlog_received_location{scope="superapp"}') > 0
    assert value(ROUTER, 'haproxy_backend_active_servers{proxy="primary"}') == 1
    assert value(ROUTER, 'haproxy_backend_active_servers{proxy="replicas"}') == 1


def test_a_killed_leader_is_replaced_no_acknowledged_write_is_lost_and_it_rejoins(db) -> None:
    before = db.wait_healthy(timeout=60)
    old = before.leader.name
    survived(db, f"leader {old} SIGKILLed", lambda: db.sh(f"docker kill {old} >/dev/null"))
    after = db.state()
    assert after.leader is not None and after.leader.name != old
    refusal = db.refusal()
    assert refusal and old in refusal, after.lines()  # a deploy now would be refused
    # the promoted member archives now: a WAL switch there reaches the repository
    db.pgbackrest(after.leader.name, "check")
    db.sh(f"docker start {old} >/dev/null")
    rejoined = db.wait_healthy(timeout=120)
    assert {m.name: m.role for m in rejoined.members}[old] in ("replica", "sync_standby")
    assert rejoined.leader.timeline > before.leader.timeline


def test_a_rebuilt_replica_is_restored_from_the_repository_then_streams(db) -> None:
    """`patronictl reinit` empties the replica's data directory; Patroni creates it again from
    the repository's backup and archived WAL (pgBackRest), not a full copy from the leader,
    and the replica then streams what the leader wrote meanwhile."""
    st = db.wait_healthy(timeout=60)
    replica = next(m.name for m in st.members if m.role != "leader")
    db.truncate()
    db.psql("INSERT INTO ha_probe (id) SELECT generate_series(1, 1000)")
    db.pgbackrest(st.leader.name, "check")  # those rows' WAL is in the repository
    since = db.sh("date -u +%Y-%m-%dT%H:%M:%S").stdout.strip()
    db.reinit(replica)
    log = db.sh(f"docker logs --since {since} {replica} 2>&1").stdout
    assert "replica has been created using pgbackrest" in log, log[-3000:]
    # a standby, not an archive recovery: no recovery.signal to outlive a later promotion
    signals = db.sh(f"docker exec {replica} ls {DATA_DIR}").stdout.split()
    assert "standby.signal" in signals and "recovery.signal" not in signals, signals
    db.psql("INSERT INTO ha_probe (id) SELECT generate_series(1001, 1100)")
    after = db.wait_healthy(timeout=120)
    assert {m.name: m.role for m in after.members}[replica] == "sync_standby", after.lines()
    deadline = time.monotonic() + 30  # synchronous commit waits for the flush, not the replay
    while (count := db.member_sql(replica, "SELECT count(*) FROM ha_probe")) != "1100":
        assert time.monotonic() < deadline, f"{replica} holds {count} of 1100 rows"
        time.sleep(0.5)


def test_the_leaders_postgres_killed_alone_is_restarted_by_patroni_and_loses_nothing(db) -> None:
    before = db.wait_healthy(timeout=60)
    leader = before.leader.name
    # the postmaster SIGKILLed, Patroni left running: it still holds the lease, so it brings
    # PostgreSQL back (crash recovery) on the same member rather than failing over
    kill = f"kill -KILL $(head -1 {DATA_DIR}/postmaster.pid)"
    survived(db, f"PostgreSQL of leader {leader} SIGKILLed",
             lambda: db.sh(f"docker exec {leader} sh -c {q(kill)}"))
    after = db.wait_healthy(timeout=90)
    assert after.leader.name == leader, after.lines()


def test_a_leader_cut_off_the_network_demotes_itself_and_rejoins_rewound(db) -> None:
    before = db.wait_healthy(timeout=60)
    old = before.leader.name
    survivor = next(m for m in MEMBERS if m != old)
    refusals: list[str] = []

    def cut() -> None:
        db.cut(old)
        # while the lease runs out, the survivor's view refuses a deploy
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            refusal = db.refusal(via=survivor)
            if refusal:
                refusals.append(refusal)
            leader = db.state(via=survivor).leader
            if leader and leader.name == survivor:
                break
            time.sleep(0.5)

    survived(db, f"leader {old} cut off the network", cut)
    assert refusals, "no moment of the failover refused a deploy"
    assert db.state(via=survivor).leader.name == survivor
    db.reconnect(old)
    rejoined = db.wait_healthy(timeout=120)
    assert {m.name: m.role for m in rejoined.members}[old] in ("replica", "sync_standby")


def test_each_parts_user_has_the_uid_its_files_are_written_for(db) -> None:
    """ops/render/dbha.py writes patroni.yml, the etcd client key and pgbackrest.conf 0600 for
    `data_uids.patroni`, etcd's key and data directory for `data_uids.etcd`, and runs HAProxy as
    `data_uids.haproxy`: each image's own user must be that uid, or it cannot read them.
    (The cluster the other tests fault runs etcd and HAProxy as these uids, read-only.)"""
    uids = load_environment("local").settings["data_uids"]
    for part, user in (("patroni", "postgres"), ("etcd", "etcd"), ("haproxy", "haproxy")):
        uid = db.sh(f"docker run --rm {db.image(part)} id -u {user}").stdout.strip()
        assert int(uid) == uids[part], part
    shape = "'{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}'"
    running = {name: db.sh(f"docker inspect -f {shape} {name}").stdout.split()
               for name in ("etcd1", "router")}
    assert running == {"etcd1": [f"{uids['etcd']}:{uids['etcd']}", "true"],
                       "router": [f"{uids['haproxy']}:{uids['haproxy']}", "true"]}


def test_a_planned_switchover_fails_writes_only_within_its_window(db) -> None:
    """tasks/failover.py's switchover (ops.dbha.failover through ops.dbha.hosts, as the task
    drives an environment's hosts): refusals change nothing, writes fail only between its
    start and its end, none is lost, and `make status` says healthy after."""
    before = db.wait_healthy(timeout=60)
    old = before.leader.name
    target = next(m for m in MEMBERS if m != old)
    remotes = {m: HostRemote(db) for m in MEMBERS}
    containers = {m: m for m in MEMBERS}  # one host runs both members here
    members = HostMembers(db.cluster, remotes, containers)
    with pytest.raises(DbHaError, match=r"--data to=etcd1: not a member .* \(members: pg1, pg2\)"):
        failover.switchover(members, db.cluster, "etcd1")
    assert not failover.switchover(members, db.cluster, old).changed
    assert db.state().leader.name == old
    done = []
    writes = fault_under_writes(
        db, lambda: done.append(failover.switchover(members, db.cluster, target)))
    lost = db.lost_rows(writes)
    report(f"switchover {old} -> {target}", writes, lost)
    [result] = done
    print(f"[db_ha] {result.lines()[0]}; writes failed from "
          f"{min(writes.failed, default=result.started) - result.started:+.1f} s to "
          f"{max(writes.failed, default=result.started) - result.started:+.1f} s of its start",
          flush=True)
    assert lost == 0
    assert all(result.started <= t <= result.ended for t in writes.failed), \
        "a write failed outside the switchover's window"
    assert (result.old, result.new) == (old, target)
    assert result.timeline_after == result.timeline_before + 1
    assert db.wait_healthy(timeout=60).leader.name == target
    rows = status_lines(db.cluster, remotes, containers)
    print("[db_ha] make status rows:\n" + "\n".join(rows), flush=True)
    assert rows[0] == "database cluster superapp: healthy"
    assert f"  {target}: leader, running, timeline {result.timeline_after}" in rows


def test_etcd_losing_one_member_changes_nothing_and_two_stop_failover_not_the_leader(db) -> None:
    before = db.wait_healthy(timeout=60)
    leader = before.leader.name
    other = next(m for m in MEMBERS if m != leader)
    try:
        db.sh(f"docker stop -t 1 {ETCD[0]} >/dev/null")
        writes = fault_under_writes(db, lambda: None, seconds=12)
        report("one etcd member stopped", writes, db.lost_rows(writes))
        assert not writes.failed and db.lost_rows(writes) == 0
        db.switchover(leader, other)  # failover still works on a quorum of two
        leader, other = other, leader
        assert db.wait_healthy(timeout=60).leader.name == leader

        db.sh(f"docker stop -t 1 {ETCD[1]} >/dev/null")
        writes = fault_under_writes(db, lambda: None, seconds=3 * db.cluster.ttl)
        report("two etcd members stopped (no quorum)", writes, db.lost_rows(writes))
        # failsafe mode: the leader reaches every member, so it stays primary
        assert not writes.failed, f"{len(writes.failed)} writes failed without quorum"
        assert db.lost_rows(writes) == 0
        # patronictl exits 0 either way: what counts is who is primary afterwards
        attempt = db.switchover(leader, other, check=False)
        time.sleep(2 * db.cluster.loop_wait)
        assert db.primary_is(leader) and not db.primary_is(other), attempt.stdout
        # seen: "Switchover failed, details: 503, failed to write switchover key into DCS",
        # or patronictl's own request to etcd failing (timed out, no route to host)
        assert "failed" in (attempt.stdout + attempt.stderr).lower(), attempt.stdout
    finally:
        db.sh(f"docker start {ETCD[0]} {ETCD[1]} >/dev/null")
    db.wait_healthy(timeout=90)


def test_a_setting_that_needs_a_restart_rolls_one_member_at_a_time_under_writes(db) -> None:
    """max_connections through `patronictl edit-config`, then the restarts it asks for: the
    replica first, the leader last and in place, never both at once; writes fail only while
    the leader restarts, and none is lost."""
    before = db.wait_healthy(timeout=60)
    leader = before.leader.name
    replica = next(m for m in MEMBERS if m != leader)
    members = ContainerMembers(db)
    desired = dcs_config(db.cluster, ARCHIVE, {"max_connections": 250})
    restarts: list[maintenance.Restart] = []
    changes: dict = {}
    since = db.sh("date -u +%Y-%m-%dT%H:%M:%S").stdout.strip()

    def change() -> None:
        changes.update(maintenance.apply_config(members, db.cluster, desired))
        restarts.extend(maintenance.rolling_restart(members, db.cluster))

    writes = fault_under_writes(db, change, seconds=60)
    lost = db.lost_rows(writes)
    report("max_connections 200 -> 250, rolling restart", writes, lost)
    for r in restarts:
        print(f"[db_ha] restarted {r.member} in {r.ended - r.started:.1f} s; others: {r.others}; "
              f"leader, timeline: {r.leader} -> {r.leader_after}", flush=True)
    assert changes == {"postgresql.parameters.max_connections": 250}
    assert [r.member for r in restarts] == [replica, leader]
    for r in restarts:  # the other member ran while each one restarted
        assert all(state in ("running", "streaming") for state in r.others.values()), r
    assert restarts[0].ended <= restarts[1].started
    assert lost == 0
    window = restarts[1]
    outside = [t for t in writes.failed if not window.started - 1 <= t <= window.ended + 1]
    assert not outside, f"{len(outside)} writes failed outside the leader's restart"
    after = db.wait_healthy(timeout=60)
    # no failover: the same member leads, on the same timeline (a new one would mean its
    # PostgreSQL ran archive recovery and promoted itself again: the stale recovery.signal
    # that --type=standby removes; the log shows which path it took)
    assert all(r.leader[0] == r.leader_after[0] == leader for r in restarts), restarts
    if after.leader.timeline != before.leader.timeline:
        print(f"[db_ha] {leader} came back on timeline {after.leader.timeline} (was "
              f"{before.leader.timeline}); its log:\n" + db.sh(
                  f"docker logs --since {since} {leader} 2>&1").stdout[-4000:], flush=True)
    assert after.leader.name == leader, after.lines()
    assert after.leader.timeline == before.leader.timeline, after.lines()
    for name in MEMBERS:
        assert db.member_sql(name, "SHOW max_connections") == "250", name
    # once applied, nothing is left to change or restart
    assert maintenance.apply_config(members, db.cluster, desired) == {}
    assert maintenance.rolling_restart(members, db.cluster) == []
