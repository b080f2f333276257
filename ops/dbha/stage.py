"""The deploy's database cluster stage (group_data `db_ha`): run under the environment's lock,
after every host was re-read and before the first host rolls.

0. each of the cluster's hosts whose firewall changes gets its new ruleset first (commit-
   confirmed, as its rollout would: ops/firewall/apply.py): etcd's peers, Patroni's
   replication and the routers cross hosts on ports an older ruleset closes; its rollout
   then has no firewall left to apply;
1. `converge` (ops/dbha/converge.py) brings etcd, Patroni and the routers to what this run
   renders, one healthy step at a time; then the cluster-wide settings (Patroni's lease
   timings, replication mode, PostgreSQL's parameters) go through `patronictl edit-config`
   (Patroni reads a member file's `bootstrap.dcs` only when the cluster is created), and the
   members a setting asks to restart restart one at a time (ops/dbha/maintenance.py);
2. the roles and databases of the release (ops/render/databases.py) are provisioned on
   whichever member leads now: the script goes to every member (a later run may find another
   one leading), runs once through the leader's socket, and each member's marker is written
   after it ran (a run that dies between the two provisions again).

Both come before any host rolls: a service's migrations and its new slot need their role and
database, and reach them through their host's router. The stage runs only when some host's
plan holds cluster files (`HostPlan.cluster_files`); a run that changes no file of the cluster
never waits on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from ops.catalog.model import Environment
from ops.dbha import commands
from ops.dbha.converge import cluster_hosts, converge
from ops.dbha.hosts import HostMembers
from ops.dbha.maintenance import apply_config, rolling_restart
from ops.dbha.model import Cluster, DbHaError
from ops.dbha.plan import parts_of
from ops.dbha.render import dcs_config
from ops.dbha.status import ClusterState
from ops.firewall.apply import apply_firewall
from ops.firewall.ruleset import RULESET_PATH
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.render.databases import PROVISION_DIR, PROVISION_SQL, render_provisioning
from ops.render.dbha import archive as archive_of
from ops.render.secrets import SecretValues
from ops.rollout.plan import HostPlan
from ops.rollout.steps import RolloutError, at_once, must, say, upload


def cluster_stage(environment: Environment, plans: Sequence[HostPlan],
                  remotes: Mapping[str, Remote], secrets: SecretValues,
                  checkpoint: Callable[[str, str], None] = lambda step, host: None,
                  timeout: int = 180, sleep: Callable[[float], None] = time.sleep) -> bool:
    """True when it ran (some plan held cluster files). RolloutError names what stopped it;
    a refusal (a host of the cluster missing from the run) comes before anything changed."""
    cluster = environment.db_ha
    if cluster is None or not any(p.cluster_files for p in plans):
        return False
    print("--> the database cluster: " + ", ".join(
        f"{p.host} ({len(p.cluster_files)} file(s))" for p in plans if p.cluster_files),
        flush=True)
    try:
        cluster_hosts(environment, remotes)  # all of them, or nothing changes
        if refusal := unsettled(environment, remotes):
            raise RolloutError(f"refusing to deploy: {refusal}; no host was changed "
                               "(ops/runbooks/db-failover.md)")
        open_firewalls(environment, plans, remotes)
        converge(environment, remotes, secrets, timeout=timeout, sleep=sleep)
        settle_settings(environment, remotes, timeout, sleep)
        checkpoint("cluster", cluster.members[0].name)
        provision(environment, remotes, secrets)
    except (DbHaError, OSError) as e:  # OSError: no member's Patroni answered
        raise RolloutError(f"the database cluster stage stopped: {e}") from None
    checkpoint("provisioned", cluster.members[0].name)
    return True


def settle_settings(environment: Environment, remotes: Mapping[str, Remote], timeout: int,
                    sleep: Callable[[float], None] = time.sleep) -> dict:
    """The cluster-wide settings this run renders, written where they differ; the restarts
    they need, one member at a time. Return what changed ({}: nothing)."""
    cluster = environment.db_ha
    assert cluster is not None
    members = HostMembers(cluster, {n.name: remotes[n.name] for n in cluster.members})
    changed = apply_config(members, cluster, dcs_config(cluster, archive_of(environment)))
    if changed:
        say(cluster.members[0].name, "database cluster: settings changed through Patroni: "
                                     + ", ".join(sorted(changed)))
        for restart in rolling_restart(members, cluster, timeout=timeout, sleep=sleep):
            say(restart.member, f"database cluster: restarted for its settings in "
                                f"{restart.ended - restart.started:.1f} s")
    return changed


def open_firewalls(environment: Environment, plans: Sequence[HostPlan],
                   remotes: Mapping[str, Remote]) -> list[str]:
    """Apply the changed ruleset of every host with a part in the cluster, at once; the unit
    leaves its plan (applied and recorded here). The hosts, in plan order."""
    cluster = environment.db_ha
    changed = [p for p in plans if cluster is not None and parts_of(cluster, p.host)
               and "firewall" in p.infra_units]
    confirm = environment.settings["firewall"]["confirm_seconds"]

    def job(plan: HostPlan) -> Callable[[], None]:
        def run() -> None:
            files = [f for f in plan.infra_files if f.unit == "firewall"]
            ruleset = next(f for f in files if f.path == RULESET_PATH)
            apply_firewall(remotes[plan.host], ruleset, confirm)
            upload(remotes[plan.host], files)  # the record of the confirmed ruleset
        return run

    at_once([(p.host, job(p)) for p in changed], width=max(1, len(changed)))
    for plan in changed:
        plan.infra_files = [f for f in plan.infra_files if f.unit != "firewall"]
        plan.infra_units = [u for u in plan.infra_units if u != "firewall"]
    return [p.host for p in changed]


def unsettled(environment: Environment, remotes: Mapping[str, Remote]) -> str | None:
    """Why the running cluster takes no deploy now (a failover or a rejoin in progress, paused,
    a switchover scheduled: `ClusterState.deploy_refusal`); None when it is settled, or when
    no member answers at all (a first start: converge starts them, or says what failed)."""
    cluster = environment.db_ha
    assert cluster is not None
    try:
        state = reported(cluster, remotes)
    except OSError:
        return None
    return state.deploy_refusal(cluster.scope, [m.name for m in cluster.members])


def reported(cluster: Cluster, remotes: Mapping[str, Remote]) -> ClusterState:
    """Patroni's `/cluster` from the members this run reaches (OSError when none answers)."""
    return HostMembers(cluster, {n.name: remotes[n.name] for n in cluster.members
                                 if n.name in remotes}).state()


def cluster_leader(environment: Environment, remotes: Mapping[str, Remote]) -> str | None:
    """The member leading now; None without `db_ha` or when no member's host is in this run
    (`--limit`). RolloutError, before any host rolls, when the cluster is not settled (no
    leader, a member not running or not reporting: a failover in progress) or does not
    answer: the services may not be able to write, and no migration may start."""
    cluster = environment.db_ha
    if cluster is None or not any(n.name in remotes for n in cluster.members):
        return None
    try:
        state = reported(cluster, remotes)
    except OSError as e:
        raise RolloutError(f"the database cluster {cluster.scope} did not answer: {e}; no host "
                           "was changed (ops/runbooks/db-failover.md)") from None
    refusal = state.deploy_refusal(cluster.scope, [m.name for m in cluster.members])
    if refusal or state.leader is None:
        raise RolloutError(f"refusing to deploy: {refusal or 'no leader'}; no host was changed "
                           "(ops/runbooks/db-failover.md)")
    return state.leader.name


def provision(environment: Environment, remotes: Mapping[str, Remote],
              secrets: SecretValues) -> str:
    """The roles and databases on the member leading now; return its name."""
    cluster = environment.db_ha
    assert cluster is not None
    files = {n.name: render_provisioning(environment, environment.host(n.name), secrets)
             for n in cluster.members}

    def stage(name: str) -> Callable[[], None]:
        def run() -> None:
            must(remotes[name], cmd.make_dirs([(PROVISION_DIR, 0o700, 0)]),
                 "creating the provisioning directory")
            upload(remotes[name], [f for f in files[name] if not f.after_apply])
        return run

    at_once([(n, stage(n)) for n in files], width=len(files))
    leader = cluster_leader(environment, remotes)
    assert leader is not None  # every member is in the run: converge refused otherwise
    say(leader, "database cluster: provisioning roles and databases on the leader")
    must(remotes[leader], cmd.run_sql_file(commands.MEMBER_CONTAINER, PROVISION_SQL),
         "provisioning the roles and databases (on the cluster's leader)", timeout=300)
    at_once([(n, lambda n=n: upload(remotes[n], [f for f in files[n] if f.after_apply]))
             for n in files], width=len(files))
    return leader
