"""Changing a running cluster the way Patroni expects: its settings through `patronictl
edit-config` (one write to etcd, checked against the version read, that every member applies),
never by editing a member's files; and the restarts that some settings need, one member at a
time, never two at once.

Why this order: a replica restarts first, and the next member restarts only once the last one
is back streaming (Patroni's `/cluster` says `running`/`streaming`, no restart pending), so
the cluster always keeps a member that can take over. The leader restarts last, in place
(Patroni holds the lease through it: no failover); its restart is the only window in which
writes fail. A replica may briefly run with a lower `max_connections` than
the leader after an increase: Patroni starts a replica with the higher of the two, which is
why replicas first is safe both ways.

The planning (`config_changes`, `restart_order`) is pure; `apply_config` and `rolling_restart`
take the calls that reach the cluster as arguments (`Members`), so the same code runs against
the testbed's containers and an environment's hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ops import yamlio
from ops.dbha import commands
from ops.dbha.model import Cluster, DbHaError
from ops.dbha.status import HEALTHY_STATES, ClusterState


class Members(Protocol):
    """How the caller reaches the cluster: `run(member, argv, stdin)` runs argv inside that
    member's Patroni container and returns (exit code, output); `state()` reads `/cluster`."""

    def run(self, member: str, argv: list[str], stdin: str = "") -> tuple[int, str]: ...

    def state(self) -> ClusterState: ...


def config_changes(current: Mapping[str, Any], desired: Mapping[str, Any],
                   prefix: str = "") -> dict[str, Any]:
    """`key.path -> desired value` for every managed setting the cluster does not hold yet.
    Settings the cluster has and `desired` does not name are left alone (an operator's
    `patronictl edit-config` of something this tool does not manage stays)."""
    changes: dict[str, Any] = {}
    for key, want in desired.items():
        have = current.get(key) if isinstance(current, Mapping) else None
        path = f"{prefix}{key}"
        if isinstance(want, Mapping):
            changes.update(config_changes(have if isinstance(have, Mapping) else {}, want,
                                          f"{path}."))
        elif not _same(have, want):
            changes[path] = want
    return changes


def _same(have: Any, want: Any) -> bool:
    """Equal, or the same number written as text (an operator's edit may hold "200" where
    this tool writes 200); a boolean only equals a boolean."""
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    return have == want or (have is not None and str(have) == str(want))


def patch(changes: Mapping[str, Any]) -> dict:
    """The nested document `patronictl edit-config --apply` merges into the cluster's."""
    doc: dict = {}
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return doc


def restart_order(state: ClusterState) -> list[str]:
    """Members with a restart pending: replicas first (by name), the leader last."""
    pending = [m for m in state.members if m.pending_restart]
    return ([m.name for m in sorted(pending, key=lambda m: m.name) if not m.is_leader]
            + [m.name for m in pending if m.is_leader])


def apply_config(members: Members, cluster: Cluster, desired: Mapping[str, Any]) -> dict:
    """Write the settings that differ, through one member's patronictl; return them."""
    state = _ready(members, cluster)
    via = state.leader.name if state.leader else state.members[0].name
    code, out = members.run(via, commands.show_config())
    if code != 0:
        raise DbHaError([f"{cluster.scope}: patronictl show-config on {via} failed: "
                         f"{out.strip()[-300:]}"])
    changes = config_changes(yamlio.load(out) or {}, desired)
    if changes:
        code, out = members.run(via, commands.edit_config(), stdin=yamlio.dump(patch(changes)))
        if code != 0:
            raise DbHaError([f"{cluster.scope}: patronictl edit-config on {via} failed: "
                             f"{out.strip()[-300:]}"])
    return changes


@dataclass
class Restart:
    """One member's restart: when it began and ended (time.time(), to compare with a load's
    clock), the other members' states when it began, and the leader and its timeline before
    and after (a new timeline: PostgreSQL was promoted again)."""

    member: str
    started: float
    ended: float = 0.0
    others: dict[str, str] = field(default_factory=dict)
    leader: tuple[str | None, int | None] = (None, None)
    leader_after: tuple[str | None, int | None] = (None, None)


def rolling_restart(members: Members, cluster: Cluster, timeout: float = 120,
                    clock: Callable[[], float] = time.time,
                    sleep: Callable[[float], None] = time.sleep) -> list[Restart]:
    """Restart every member with a restart pending, one at a time (see the module docstring).
    Waits for the settings to reach every member first (Patroni applies a change at its next
    loop), and for each member to be back before the next; refuses to begin, or to go on, while
    the cluster is not healthy (a failover, a member down): one error naming it."""
    state = _settled(members, cluster, timeout, clock, sleep)
    done: list[Restart] = []
    for name in restart_order(state):
        state = _ready(members, cluster)
        others = {m.name: m.state for m in state.members if m.name != name}
        restart = Restart(name, clock(), others=others, leader=_leader(state))
        code, out = members.run(name, commands.restart(cluster.scope, name))
        if code != 0:
            raise DbHaError([f"{cluster.scope}: restart of {name} failed: {out.strip()[-300:]}"])
        back = wait_for(members, cluster, timeout, clock, sleep,
                     lambda st, name=name: _back(st, name, cluster),
                     f"{name} back after its restart")
        restart.ended = clock()
        restart.leader_after = _leader(back)
        done.append(restart)
    return done


def _ready(members: Members, cluster: Cluster) -> ClusterState:
    state = members.state()
    refusal = state.deploy_refusal(cluster.scope, [m.name for m in cluster.members])
    if refusal:
        raise DbHaError([refusal])
    return state


def _leader(state: ClusterState) -> tuple[str | None, int | None]:
    return (state.leader.name, state.leader.timeline) if state.leader else (None, None)


def _back(state: ClusterState, name: str, cluster: Cluster) -> bool:
    """`name` runs again with its new settings (see `serving`): not the moment to restart
    another member before."""
    member = next((m for m in state.members if m.name == name), None)
    return member is not None and not member.pending_restart and serving(state, cluster, (name,))


def serving(state: ClusterState, cluster: Cluster, names: Sequence[str]) -> bool:
    """Each of `names` runs as a member, a leader leads, and a synchronous cluster has its
    synchronous standby (until then a leader's crash could lose acknowledged writes)."""
    running = {m.name for m in state.members if m.state in HEALTHY_STATES}
    synced = not cluster.synchronous or any(m.role == "sync_standby" for m in state.members)
    return set(names) <= running and state.leader is not None and synced


def _settled(members: Members, cluster: Cluster, timeout: float, clock: Callable[[], float],
             sleep: Callable[[float], None]) -> ClusterState:
    """The cluster once every member has seen the latest settings: Patroni flags a pending
    restart at its next loop, so a restart plan read at once could miss a member."""
    deadline = clock() + max(timeout, 3 * cluster.loop_wait)
    _ready(members, cluster)
    sleep(cluster.loop_wait + 1)
    previous = None
    while True:
        state = _ready(members, cluster)
        order = restart_order(state)
        if order == previous:
            return state
        if clock() > deadline:
            raise DbHaError([f"{cluster.scope}: the restart plan did not settle ({order})"])
        previous = order
        sleep(cluster.loop_wait + 1)


def wait_for(members: Members, cluster: Cluster, timeout: float, clock: Callable[[], float],
             sleep: Callable[[float], None], done: Callable[[ClusterState], bool],
             what: str, consequence: str = "the next member was not restarted") -> ClusterState:
    """The cluster's state once `done` holds; DbHaError naming `what` and the last state seen
    after `timeout` seconds (a member that does not answer is waited for, not an error)."""
    deadline = clock() + timeout
    last: object = None
    while clock() < deadline:
        try:
            state = members.state()
            last = state.lines()
            if done(state):
                return state
        except (DbHaError, ValueError, OSError) as exc:
            last = exc
        sleep(1)
    raise DbHaError([f"{cluster.scope}: {what}: not after {timeout:.0f} s (last seen: {last}); "
                     f"{consequence}"])
