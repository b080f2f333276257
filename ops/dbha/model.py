"""The `db_ha` block of group_data: who runs Patroni, who runs etcd, how replication commits.

Pure: the checked settings and the hosts' addresses in, a frozen `Cluster` out. Errors name the
key (`db_ha.members: ...`), collected before anything is raised, like the catalog's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ops.catalog.db_ha_schema import DB_HA
from ops.catalog.errors import ConfigError, Problems
from ops.catalog.schema import Errors


class DbHaError(ConfigError):
    """The `db_ha` block cannot describe a safe cluster; the message names every key at fault."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str


@dataclass(frozen=True)
class Cluster:
    scope: str
    members: tuple[Node, ...]
    etcd: tuple[Node, ...]
    routers: tuple[Node, ...]  # the hosts whose router connects to PostgreSQL (the app hosts)
    synchronous: bool
    synchronous_strict: bool
    ttl: int
    loop_wait: int
    retry_timeout: int
    maximum_lag_on_failover: int
    failsafe: bool
    # the containers' network on each member's host (group_data docker_network.subnet): the
    # member's metrics exporter, and a router on a host that is also an app host, connect
    # from there (a bridge network's containers reach the published port from its gateway)
    local_network: str | None = None

    def member(self, name: str) -> Node:
        for node in self.members:
            if node.name == name:
                return node
        raise KeyError(f"{name} is not a member of the Patroni cluster {self.scope}")


def cluster_from_settings(raw: Any, addresses: Mapping[str, str], *, routers: Sequence[str],
                          source: str = "group_data",
                          local_network: str | None = None) -> Cluster:
    """Check `db_ha` and resolve its host names; raise one DbHaError naming every fault.

    `routers`: the hosts that run a router to the leader (the inventory's app hosts, not a
    group_data key): with the members, the only addresses PostgreSQL accepts connections from.
    """
    errors: Errors = []
    data = DB_HA.check(raw, "db_ha", errors)
    if not errors:
        errors += _consistency(data, addresses)
    errors += [("db_ha", f"router host {name!r} is not a host of this environment")
               for name in routers if name not in addresses]
    problems = Problems()
    problems.extend(source, errors)
    if problems.lines:
        raise DbHaError(problems.lines)

    def nodes(key: str) -> tuple[Node, ...]:
        return tuple(Node(name, addresses[name]) for name in data[key])

    return Cluster(
        scope=data["scope"], members=nodes("members"), etcd=nodes("etcd"),
        routers=tuple(Node(name, addresses[name]) for name in routers),
        synchronous=data["replication"] == "synchronous",
        synchronous_strict=data["synchronous_strict"], ttl=data["ttl_seconds"],
        loop_wait=data["loop_wait_seconds"], retry_timeout=data["retry_timeout_seconds"],
        maximum_lag_on_failover=data["maximum_lag_on_failover_bytes"], failsafe=data["failsafe"],
        local_network=local_network)


def _consistency(data: Mapping[str, Any], addresses: Mapping[str, str]) -> Errors:
    errors: Errors = []
    for key in ("members", "etcd"):
        names = data[key]
        for i, name in enumerate(names):
            if name not in addresses:
                errors.append((f"db_ha.{key}.{i}", f"{name!r} is not a host of this environment"))
        if len(set(names)) != len(names):
            errors.append((f"db_ha.{key}", "names a host twice"))
    if len(data["etcd"]) % 2 == 0:
        errors.append(("db_ha.etcd", f"{len(data['etcd'])} members: an even count tolerates no "
                                     "more failures than one fewer; use an odd number"))
    # Patroni's own rule: the leader must be able to retry a failed lease update twice within
    # the lease, or a slow etcd demotes a healthy primary.
    if data["loop_wait_seconds"] + 2 * data["retry_timeout_seconds"] > data["ttl_seconds"]:
        errors.append(("db_ha.ttl_seconds",
                       f"must be at least loop_wait_seconds + 2 x retry_timeout_seconds "
                       f"({data['loop_wait_seconds'] + 2 * data['retry_timeout_seconds']})"))
    return errors
