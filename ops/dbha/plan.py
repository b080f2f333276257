"""The cluster stage's plan (group_data `db_ha`): which part to start or recreate on which
host, in which order, from what each host runs. Pure: observations in, steps out.

Why a stage of its own, across hosts, rather than each host's rollout applying its part:

- etcd grants no lease without a majority of its members: on a first start (or after every
  member stopped) one host's etcd alone waits forever, so every etcd member starts together;
- with etcd up, every Patroni member may start together too: the first to take etcd's
  `initialize` key bootstraps the cluster, the others wait for it and join as replicas;
- a change to a running cluster takes one container down at a time, each back healthy before
  the next: etcd keeps its quorum; Patroni's replicas go first and the leader last, after a
  switchover hands its lease to a healthy replica (a restart of the leader in place would be a
  failover after the lease's TTL); each app host's router is recreated alone, and only its own
  host's connections wait the second it takes.

A container is "current" when its `FILES_LABEL` (the digest of its files, which is part of
its compose definition: ops/render/dbha.py) is what this run renders; `docker compose up` on
that service then recreates it, or leaves it alone when current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ops.dbha.model import Cluster, DbHaError

PARTS = ("etcd", "patroni", "router")
# compose service key -> part (ops/render/dbha.py names the containers)
SERVICES = {"etcd": "etcd", "patroni": "patroni", "db-router": "router"}


@dataclass(frozen=True)
class Observed:
    """One part's container on one host, as `docker ps -a` shows it."""

    present: bool = False
    running: bool = False
    current: bool = False  # its files' digest is the one this run renders

    @property
    def settled(self) -> bool:
        return self.running and self.current


@dataclass(frozen=True)
class Step:
    """Start or recreate `part` on `hosts` (together only for a first start), then wait until
    it is healthy. `switchover_first`: the member leads; hand its lease over before."""

    part: str
    hosts: tuple[str, ...]
    why: str
    switchover_first: bool = False

    def line(self) -> str:
        return f"{self.part} on {', '.join(self.hosts)}: {self.why}"


def cluster_plan(cluster: Cluster, observed: Mapping[tuple[str, str], Observed],
                 leader: str | None = None) -> list[Step]:
    """The steps, in order; [] when every part runs current. `observed`: (host, part) ->
    Observed, missing means absent. `leader`: the member leading now, if any answers.
    DbHaError when the change needs an operator (see `etcd_membership_refusal`)."""
    def seen(host: str, part: str) -> Observed:
        return observed.get((host, part), Observed())

    steps: list[Step] = []
    etcd = [n.name for n in cluster.etcd]
    if not any(seen(h, "etcd").running for h in etcd):
        steps.append(Step("etcd", tuple(etcd), "first start of every member together (a "
                                               "quorum needs a majority at once)"))
    else:
        refusal = etcd_membership_refusal(cluster, {h: seen(h, "etcd") for h in etcd})
        if refusal:
            raise DbHaError([refusal])
        steps += [Step("etcd", (h,), why(seen(h, "etcd"))) for h in etcd
                  if not seen(h, "etcd").settled]

    members = [n.name for n in cluster.members]
    if not any(seen(h, "patroni").running for h in members):
        steps.append(Step("patroni", tuple(members), "first start of every member together "
                                                     "(one bootstraps, the others join it)"))
    else:
        stopped = [h for h in members if not seen(h, "patroni").running]
        changed = [h for h in members if h not in stopped and not seen(h, "patroni").current]
        # replicas first (a member that does not run is no replica to lose), the leader last
        changed.sort(key=lambda h: h == leader)
        steps += [Step("patroni", (h,), why(seen(h, "patroni")),
                       switchover_first=h == leader and len(members) > 1)
                  for h in [*stopped, *changed]]

    steps += [Step("router", (n.name,), why(seen(n.name, "router")))
              for n in cluster.routers if not seen(n.name, "router").settled]
    return steps


def why(seen: Observed) -> str:
    if not seen.present:
        return "not there yet"
    if not seen.running:
        return "stopped: started again"
    return "its files changed: recreated"


def etcd_membership_refusal(cluster: Cluster, seen: Mapping[str, Observed]) -> str | None:
    """A member that etcd does not know yet (no container while the others run) must be
    added with `etcdctl member add` before it starts, or it forms a cluster of its own:
    an operator's step (ops/runbooks/db-failover.md), never the deploy's."""
    new = [h for h, s in seen.items() if not s.present]
    if not new:
        return None
    return (f"{cluster.scope}: etcd runs without {', '.join(new)}: adding an etcd member to a "
            "running cluster is a membership change (`etcdctl member add`, then its first "
            "start with ETCD_INITIAL_CLUSTER_STATE=existing): see ops/runbooks/db-failover.md; "
            "the deploy changed nothing")


def parse_observed(text: str, host: str,
                   wanted: Mapping[str, str]) -> dict[tuple[str, str], Observed]:
    """The output of `commands.observe_parts()` on `host` (one line per container of the
    cluster's project: `<compose service> <docker state> <files digest>`) against the digests
    this run renders for it (`wanted`: part -> digest)."""
    out: dict[tuple[str, str], Observed] = {}
    for line in text.splitlines():
        fields = line.split()
        part = SERVICES.get(fields[0]) if fields else None
        if part is None or len(fields) < 2:
            continue
        digest = fields[2] if len(fields) > 2 else ""
        out[(host, part)] = Observed(present=True, running=fields[1] == "running",
                                     current=bool(digest) and digest == wanted.get(part))
    return out


def parts_of(cluster: Cluster, host: str) -> Sequence[str]:
    """The parts `host` runs, in PARTS order."""
    names = {"etcd": cluster.etcd, "patroni": cluster.members, "router": cluster.routers}
    return [p for p in PARTS if any(n.name == host for n in names[p])]
