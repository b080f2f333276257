"""The cluster reached through its members' hosts: `Members` (ops.dbha.maintenance) over the
SSH connections a pyinfra run already holds (`Remote`), for `tasks/failover.py` and the
cluster rows of `make status`.

Every command runs inside the member host's Patroni container (`commands.MEMBER_CONTAINER`),
where patronictl reads the REST API's credentials from the member's own patroni.yml: no
password is on a command line or leaves the host.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from ops.dbha import commands
from ops.dbha.model import Cluster
from ops.dbha.status import ClusterState, ClusterStatusError, parse_cluster
from ops.host.remote import Remote

COMMAND_TIMEOUT = 180  # a switchover waits for the old leader's checkpoint and shutdown


class HostMembers:
    """`remotes`: member name -> its host; members missing from it are out of this run's
    reach (`--limit`): commands for them fail, `/cluster` is asked of the others.
    `containers`: member name -> its Patroni container, where not `MEMBER_CONTAINER` (the
    testbed runs several members on one host)."""

    def __init__(self, cluster: Cluster, remotes: Mapping[str, Remote],
                 containers: Mapping[str, str] | None = None):
        self.cluster, self.remotes = cluster, dict(remotes)
        self.containers = dict(containers or {})

    def run(self, member: str, argv: list[str], stdin: str = "") -> tuple[int, str]:
        ok, out, err = self._exec(member, argv, stdin)
        return (0 if ok else 1), out + err

    def _exec(self, member: str, argv: list[str], stdin: str = "") -> tuple[bool, str, str]:
        remote = self.remotes.get(member)
        if remote is None:
            return False, "", f"{member}: its host is not in this run (--limit?)"
        stdin_file = None
        if stdin:
            stdin_file = f"/tmp/superapp-dbha-{secrets.token_hex(6)}.yml"
            if not remote.put(stdin.encode(), stdin_file):
                return False, "", f"{member}: could not upload the command's input"
        container = self.containers.get(member, commands.MEMBER_CONTAINER)
        return remote.run(commands.on_host(container, argv, stdin_file),
                          timeout=COMMAND_TIMEOUT)

    def state(self) -> ClusterState:
        """Patroni's `/cluster`, from the first member that answers (any member knows the
        whole cluster from etcd); OSError naming each member's failure when none does."""
        failures = []
        for node in self.cluster.members:
            if node.name not in self.remotes:
                continue
            ok, out, err = self._exec(node.name, commands.cluster_status(node.address))
            if ok:
                try:
                    return parse_cluster(out)
                except ClusterStatusError as e:
                    failures.append(f"{node.name}: {e}")
                    continue
            failures.append(f"{node.name}: {(err or out).strip()[-200:] or 'no answer'}")
        raise OSError(f"no member of the database cluster {self.cluster.scope} answers "
                      f"/cluster: {'; '.join(failures) or 'no member host in this run'}")


def status_lines(cluster: Cluster, remotes: Mapping[str, Remote],
                 containers: Mapping[str, str] | None = None) -> list[str]:
    """`make status`'s rows for the cluster: leader, replicas, timeline, lag; or why not."""
    title = f"database cluster {cluster.scope}"
    try:
        state = HostMembers(cluster, remotes, containers).state()
    except OSError as e:
        return [f"{title}: UNKNOWN: {e}"]
    verdict = state.deploy_refusal(cluster.scope, [m.name for m in cluster.members])
    head = f"{title}: " + ("healthy" if verdict is None else f"NOT READY: {verdict}")
    return [head, *(f"  {line}" for line in state.lines())]
