"""A planned switchover: hand the leader role to a named member (`tasks/failover.py --data
to=<member>`), for a leader host's maintenance or to move the primary back after a failover.

Patroni does the work (`patronictl switchover`: the leader checkpoints, stops accepting writes,
the candidate catches up and is promoted, the old leader rejoins as its replica); this module
decides whether to ask, and says when it is done. It refuses, before anything changes, when:

- the target is not a member of the cluster (the message lists the members);
- the cluster is not healthy now (no or two leaders, a member down or rejoining, paused, a
  switchover already scheduled: `ClusterState.deploy_refusal`, the deploy's own gate);
- the target is further behind than `maximum_lag_on_failover` (Patroni would refuse it, or,
  asynchronous, promote it and lose the rows it lacks), or its lag is unknown;
- synchronous replication and the target is not the synchronous standby: only that member is
  known to hold every acknowledged commit (Patroni refuses the others too, later and vaguer).

A target that already leads changes nothing. Effects come in through `Members` (the same
protocol the rolling restart uses), so the testbed's containers and an environment's hosts
run the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ops.dbha import commands
from ops.dbha.maintenance import Members, wait_for
from ops.dbha.model import Cluster, DbHaError
from ops.dbha.status import ClusterState


@dataclass(frozen=True)
class Switchover:
    """What happened: the leader before and after, and how long until the old leader was back
    as a replica (time.time(), comparable with a load's clock)."""

    old: str
    new: str
    started: float
    ended: float
    timeline_before: int | None
    timeline_after: int | None

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def lines(self) -> list[str]:
        if not self.changed:
            return [f"{self.new} already leads: nothing changed"]
        return [f"leader {self.old} -> {self.new} in {self.ended - self.started:.1f} s "
                f"(timeline {self.timeline_before} -> {self.timeline_after}); {self.old} "
                "follows as a replica"]


def switchover_refusal(state: ClusterState, cluster: Cluster, to: str) -> str | None:
    """Why `to` must not take over now, in one line; None: go ahead (or it already leads)."""
    names = [m.name for m in cluster.members]
    if to not in names:
        return (f"--data to={to}: not a member of the database cluster {cluster.scope} "
                f"(members: {', '.join(names)})")
    refusal = state.deploy_refusal(cluster.scope, names)
    if refusal:
        return refusal
    target = next(m for m in state.members if m.name == to)
    if target.is_leader:
        return None
    if target.lag_bytes is None or target.lag_bytes > cluster.maximum_lag_on_failover:
        behind = "an unknown amount" if target.lag_bytes is None else f"{target.lag_bytes} B"
        return (f"{to} is {behind} behind the leader (db_ha.maximum_lag_on_failover_bytes: "
                f"{cluster.maximum_lag_on_failover}): promoting it could lose committed rows; "
                "wait until it has caught up")
    if cluster.synchronous and target.role != "sync_standby":
        sync = [m.name for m in state.members if m.role == "sync_standby"]
        return (f"{to} is not the synchronous standby ({', '.join(sync) or 'none'}): with "
                "synchronous replication only that member is known to hold every "
                "acknowledged commit")
    return None


def switchover(members: Members, cluster: Cluster, to: str, timeout: float = 120,
               clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep) -> Switchover:
    """Make `to` the leader; return once it leads and every member runs again (the old leader
    as its replica). Raises DbHaError with one line: the refusal, or what did not happen."""
    state = members.state()
    refusal = switchover_refusal(state, cluster, to)
    if refusal:
        raise DbHaError([refusal])
    leader = state.leader
    assert leader is not None  # switchover_refusal checked: exactly one
    started = clock()
    if leader.name == to:
        return Switchover(to, to, started, started, leader.timeline, leader.timeline)
    code, out = members.run(leader.name, commands.switchover(leader.name, to))
    if code != 0:
        raise DbHaError([f"{cluster.scope}: patronictl switchover {leader.name} -> {to} "
                         f"failed: {out.strip()[-300:]}"])
    after = wait_for(members, cluster, timeout, clock, sleep,
                     lambda st: _handed_over(st, cluster, to),
                     f"{to} leading with every member running",
                     consequence="check `make status` and ops/runbooks/db-failover.md")
    return Switchover(leader.name, to, started, clock(), leader.timeline,
                      after.leader.timeline if after.leader else None)


def _handed_over(state: ClusterState, cluster: Cluster, to: str) -> bool:
    return (state.leader is not None and state.leader.name == to
            and state.deploy_refusal(cluster.scope, [m.name for m in cluster.members]) is None)
