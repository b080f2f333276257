"""The deploy's database cluster stage (group_data `db_ha`): run under the environment's lock,
after every host was re-read and before the first host rolls.

0. each of the cluster's hosts whose firewall changes gets its new ruleset first (commit-
   confirmed, as its rollout would: ops/firewall/apply.py): etcd's peers, Patroni's
   replication and the routers cross hosts on ports an older ruleset closes; its rollout
   then has no firewall left to apply;
1. `converge` (ops/dbha/converge.py) brings etcd, Patroni and the routers to what this run
   renders, one healthy step at a time;
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

from collections.abc import Callable, Mapping, Sequence

from ops.catalog.model import Environment
from ops.dbha import commands
from ops.dbha.converge import cluster_hosts, converge
from ops.dbha.hosts import HostMembers
from ops.dbha.model import DbHaError
from ops.dbha.plan import parts_of
from ops.firewall.apply import apply_firewall
from ops.firewall.ruleset import RULESET_PATH
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.render.databases import PROVISION_DIR, PROVISION_SQL, render_provisioning
from ops.render.secrets import SecretValues
from ops.rollout.plan import HostPlan
from ops.rollout.steps import RolloutError, at_once, must, say, upload


def cluster_stage(environment: Environment, plans: Sequence[HostPlan],
                  remotes: Mapping[str, Remote], secrets: SecretValues,
                  checkpoint: Callable[[str, str], None] = lambda step, host: None,
                  timeout: int = 180) -> bool:
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
        open_firewalls(environment, plans, remotes)
        converge(environment, remotes, secrets, timeout=timeout)
        checkpoint("cluster", cluster.members[0].name)
        provision(environment, remotes, secrets)
    except (DbHaError, OSError) as e:  # OSError: no member's Patroni answered
        raise RolloutError(f"the database cluster stage stopped: {e}") from None
    checkpoint("provisioned", cluster.members[0].name)
    return True


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


def cluster_leader(environment: Environment, remotes: Mapping[str, Remote]) -> str | None:
    """The member leading now; None without `db_ha` or when no member's host is in this run
    (`--limit`). RolloutError when the members answer and none leads: the services could not
    write, and no migration may start."""
    cluster = environment.db_ha
    if cluster is None:
        return None
    reached = {n.name: remotes[n.name] for n in cluster.members if n.name in remotes}
    if not reached:
        return None
    try:
        leader = HostMembers(cluster, reached).state().leader
    except OSError as e:
        raise RolloutError(f"the database cluster {cluster.scope} did not answer: {e}; no host "
                           "rolled (ops/runbooks/db-failover.md)") from None
    if leader is None:
        raise RolloutError(f"{cluster.scope}: no member leads the database cluster now; no "
                           "host rolled (ops/runbooks/db-failover.md)")
    return leader.name


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
