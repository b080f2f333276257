"""What the cluster says about itself (Patroni's REST `GET /cluster`), and whether a deploy may
run now.

A deploy during a failover is the wrong moment: migrations would reach a primary that is about
to be demoted, or none at all, and a rolling restart could take down the member about to be
promoted. So the deploy reads the cluster first and refuses unless exactly one leader is
running, every other member is a running replica, and nothing (pause, scheduled switchover) is
pending. Pure: JSON text in, a `ClusterState` out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

LEADER_ROLES = ("leader", "master", "primary")
REPLICA_ROLES = ("replica", "sync_standby")
# 3.0.2 reports a healthy replica as "running"; later releases say "streaming"
HEALTHY_STATES = ("running", "streaming")


class ClusterStatusError(ValueError):
    """The answer is not a Patroni `/cluster` document."""


@dataclass(frozen=True)
class MemberState:
    name: str
    role: str
    state: str
    timeline: int | None
    lag_bytes: int | None  # None: the leader itself, or unknown
    pending_restart: bool = False  # a setting changed that PostgreSQL reads only at start

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES


@dataclass(frozen=True)
class ClusterState:
    members: tuple[MemberState, ...]
    paused: bool
    scheduled_switchover: bool

    @property
    def leaders(self) -> list[MemberState]:
        return [m for m in self.members if m.is_leader]

    @property
    def leader(self) -> MemberState | None:
        leaders = self.leaders
        return leaders[0] if len(leaders) == 1 else None

    def deploy_refusal(self, scope: str, expected: Sequence[str] = ()) -> str | None:
        """Why a deploy must not start now, in one line naming the cluster and the member.

        `expected`: the members group_data names. One that does not report at all (its key
        expired in etcd: the host or its Patroni is down) is a failover not finished yet.
        """
        where = f"the database cluster {scope}"
        if self.paused:
            return f"{where} is paused (patronictl pause): resume it before deploying"
        if self.scheduled_switchover:
            return f"{where} has a switchover scheduled: let it happen or cancel it first"
        leaders = self.leaders
        if not leaders:
            return (f"{where} has no leader: a failover is in progress (or etcd lost quorum); "
                    "deploy once `make status` shows a leader")
        if len(leaders) > 1:
            names = ", ".join(m.name for m in leaders)
            return f"{where} reports {len(leaders)} leaders ({names}): stop and investigate"
        for m in self.members:
            if m.state not in HEALTHY_STATES:
                what = "leader" if m.is_leader else "member"
                return (f"{where}: {what} {m.name} is {m.state or 'in an unknown state'} "
                        "(a failover or a rejoin is in progress); deploy once it is running")
        missing = [name for name in expected if name not in {m.name for m in self.members}]
        if missing:
            return (f"{where}: member {', '.join(missing)} does not report (down, or not "
                    "rejoined after a failover); deploy once `make status` shows it running")
        return None

    def lines(self) -> list[str]:
        """`make status` rows: member, role, state, timeline, lag."""
        rows = []
        for m in self.members:
            lag = "" if m.is_leader else ("lag unknown" if m.lag_bytes is None
                                          else f"lag {m.lag_bytes} B")
            tl = f"timeline {m.timeline}" if m.timeline is not None else "timeline ?"
            rows.append(f"{m.name}: {m.role}, {m.state}, {tl}" + (f", {lag}" if lag else "")
                        + (", restart pending" if m.pending_restart else ""))
        return rows


def parse_cluster(text: str) -> ClusterState:
    try:
        doc = json.loads(text)
        members = tuple(_member(m) for m in doc["members"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterStatusError(f"not a Patroni /cluster answer: {exc}") from None
    return ClusterState(members=members, paused=bool(doc.get("pause")),
                        scheduled_switchover="scheduled_switchover" in doc)


def _member(m: dict) -> MemberState:
    lag = m.get("lag")
    timeline = m.get("timeline")
    return MemberState(name=str(m["name"]), role=str(m["role"]), state=str(m.get("state", "")),
                       timeline=int(timeline) if isinstance(timeline, int) else None,
                       lag_bytes=lag if isinstance(lag, int) else None,
                       pending_restart=bool(m.get("pending_restart")))
