"""The cluster stage's effects (group_data `db_ha`): write every host's files of the cluster,
then walk ops.dbha.plan's steps over the run's SSH connections, each one healthy before the
next, and stop at the first that is not (naming the part, the host and what was seen).

Writing the files first changes nothing that runs: each container reads them only when it
starts, and its compose definition carries their digest, so only the step that recreates it
(`docker compose up` of that one service) puts them to use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ops import yamlio
from ops.catalog.model import Environment
from ops.dbha import commands
from ops.dbha.failover import switchover
from ops.dbha.hosts import HostMembers
from ops.dbha.maintenance import serving, wait_for
from ops.dbha.model import Cluster, DbHaError
from ops.dbha.plan import SERVICES, Observed, Step, cluster_plan, parse_observed, parts_of
from ops.dbha.render import ETCD_TLS, ROUTER_METRICS_PORT
from ops.dbha.status import HEALTHY_STATES
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.render import dbha as files_of
from ops.render.compose import compose_path
from ops.render.files import RenderedFile
from ops.render.secrets import SecretValues
from ops.rollout.steps import at_once, must, say, upload

COMPOSE = compose_path("dbha")
CONTAINERS = {"etcd": "etcd", "patroni": commands.MEMBER_CONTAINER,
              "router": commands.ROUTER_CONTAINER}
KEYS = {part: key for key, part in SERVICES.items()}  # part -> compose service key


def wanted_digests(files: list[RenderedFile]) -> dict[str, str]:
    """part -> the files digest this run renders for it (the label in the compose file)."""
    compose = next(f for f in files if f.path == COMPOSE)
    services = (yamlio.load(compose.content) or {}).get("services") or {}
    return {SERVICES[key]: (s.get("labels") or {}).get(commands.FILES_LABEL, "")
            for key, s in services.items() if key in SERVICES}


def cluster_hosts(environment: Environment, remotes: Mapping[str, Remote]) -> list[str]:
    """The hosts with a part in the cluster, in inventory order; DbHaError when this run does
    not reach them all."""
    cluster = environment.db_ha
    assert cluster is not None
    hosts = [h.name for h in environment.hosts if parts_of(cluster, h.name)]
    missing = [h for h in hosts if h not in remotes]
    if missing:
        raise DbHaError([f"{cluster.scope}: the cluster's hosts {', '.join(missing)} are not in "
                         "this run (--limit?): the cluster changes only with all of them"])
    return hosts


def converge(environment: Environment, remotes: Mapping[str, Remote], secrets: SecretValues,
             timeout: int = 180, clock: Callable[[], float] = time.time,
             sleep: Callable[[float], None] = time.sleep) -> list[Step]:
    """Bring the cluster to what this run renders; return the steps taken ([]: it was)."""
    cluster = environment.db_ha
    if cluster is None:
        return []
    hosts = cluster_hosts(environment, remotes)
    rendered = {h: files_of.render_files(environment, environment.host(h), secrets)
                for h in hosts}

    def write(host: str) -> Callable[[], None]:
        def run() -> None:
            remote = remotes[host]
            must(remote, cmd.make_dirs(files_of.directories(environment, environment.host(host))),
                 "creating the cluster's directories")
            upload(remote, rendered[host])
        return run

    at_once([(h, write(h)) for h in hosts], width=len(hosts))
    observed: dict[tuple[str, str], Observed] = {}
    for h in hosts:
        out = must(remotes[h], commands.observe_parts(), "reading the cluster's containers")
        observed.update(parse_observed(out, h, wanted_digests(rendered[h])))
    members = HostMembers(cluster, {n.name: remotes[n.name] for n in cluster.members})
    leader = None
    if any(observed.get((n.name, "patroni"), Observed()).running for n in cluster.members):
        leader_state = members.state().leader
        leader = leader_state.name if leader_state else None
    steps = cluster_plan(cluster, observed, leader)
    for step in steps:
        say(",".join(step.hosts), f"database cluster: {step.line()}")
        run_step(environment, cluster, remotes, members, step, timeout, clock, sleep)
    return steps


def run_step(environment: Environment, cluster: Cluster, remotes: Mapping[str, Remote],
             members: HostMembers, step: Step, timeout: int, clock: Callable[[], float],
             sleep: Callable[[float], None]) -> None:
    if step.switchover_first:
        state = members.state()
        target = next((m.name for m in state.members if not m.is_leader
                       and m.state in HEALTHY_STATES and (not cluster.synchronous
                                                          or m.role == "sync_standby")), None)
        if target is None:
            raise DbHaError([f"{cluster.scope}: {step.hosts[0]} leads and no replica can take "
                             "over now: its Patroni was not recreated"])
        switchover(members, cluster, target, timeout=timeout, clock=clock, sleep=sleep)
    up = cmd.compose_up(COMPOSE, services=[KEYS[step.part]])
    at_once([(h, lambda h=h: must(remotes[h], up, f"starting the cluster's {step.part}",
                                  timeout=timeout)) for h in step.hosts], width=len(step.hosts))
    if step.part == "patroni":
        wait_for(members, cluster, timeout, clock, sleep,
                 lambda st: serving(st, cluster, step.hosts),
                 f"Patroni on {', '.join(step.hosts)} running with a leader",
                 consequence="the cluster stage stopped there")
        return
    for h in step.hosts:
        check = (commands.etcd_health(environment.host(h).address, ETCD_TLS.ca, ETCD_TLS.cert,
                                      ETCD_TLS.key)
                 if step.part == "etcd" else commands.router_has_primary(ROUTER_METRICS_PORT))
        must(remotes[h], cmd.wait_exec_ok({CONTAINERS[step.part]: check}, timeout=timeout),
             f"waiting for the cluster's {step.part} to be healthy", timeout=timeout + 30)

