"""`tasks/failover.py`: the pyinfra side of a planned switchover (ops.dbha.failover).

Every host of the run reports in; the last one drives the cluster through the member hosts'
connections (`HostMembers`). Without `--data to=` it only shows the cluster. The switchover
holds the environment's deploy lock (ops/rollout/lock.py) for its whole length: a deploy's
migrations must not meet a primary that is being demoted, and a deploy already running makes
the switchover wait its turn (refused, naming the holder).
"""

from __future__ import annotations

import sys

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from ops.catalog import ConfigError, load_environment
from ops.dbha.failover import switchover, switchover_refusal
from ops.dbha.hosts import HostMembers
from ops.dbha.model import DbHaError
from ops.host.remote import PyinfraRemote
from ops.preview.stage import dry_run_mode
from ops.rollout.lock import EnvironmentLock, VaultLockStore, lock_path
from ops.rollout.steps import RolloutError
from ops.scope import current_scope
from ops.secrets.vault import VaultSettings

RUNBOOK = "ops/runbooks/db-failover.md"


class FailoverError(PyinfraError):
    """One clear message (no cluster, a refusal, a switchover that did not finish); exit 1."""


def say(line: str) -> None:
    print(f"--> {line}", flush=True)


@deploy("Hand the database cluster's leader role to another member")
def fail_over() -> None:
    try:
        environment = load_environment(host.data.get("env"))
    except ConfigError as e:
        raise FailoverError(str(e)) from None
    cluster = environment.db_ha
    if cluster is None:
        where = environment.setting_files.get("hosts", f"group_data/{environment.name}.py")
        raise FailoverError(
            f"{where}: no `db_ha`: {environment.name} runs one PostgreSQL on "
            f"{environment.db_host.name}, with no standby to hand over to ({RUNBOOK})")
    inventory = ctx_state.get().inventory
    active = {h.name: h for h in inventory.get_active_hosts()}
    if current_scope().gather("failover", host.name, True, active) is None:
        return
    missing = [m.name for m in cluster.members if m.name not in active]
    if missing:
        raise FailoverError(f"the member host(s) {', '.join(missing)} are not in this run "
                            "(--limit, or unreachable): a switchover needs every member")
    members = HostMembers(cluster, {m.name: PyinfraRemote(active[m.name])
                                    for m in cluster.members})
    try:
        state = members.state()
    except OSError as e:
        raise FailoverError(str(e)) from None
    for line in state.lines():
        say(line)
    to = host.data.get("to")
    if not to:
        say("no --data to=<member>: nothing changed")
        finish(0)
    refusal = switchover_refusal(state, cluster, str(to))
    if refusal:
        raise FailoverError(f"{refusal}; nothing changed ({RUNBOOK})")
    if state.leader is not None and state.leader.name == to:
        say(f"{to} already leads: nothing changed")
        finish(0)
    if dry_run_mode()[0]:
        say(f"would hand the leader role {state.leader.name} -> {to} (--dry: nothing changed)")
        finish(0)
    lock = take_lock(environment, str(to))
    try:
        result = switchover(members, cluster, str(to))
    except DbHaError as e:
        raise FailoverError(f"{e} ({RUNBOOK})") from None
    finally:
        warning = lock.release()
        if warning:
            print(warning, file=sys.stderr, flush=True)
    for line in result.lines():
        say(line)
    finish(0)


def take_lock(environment, to: str) -> EnvironmentLock:
    store = VaultLockStore(VaultSettings.from_environment(environment), lock_path(environment))
    try:
        lock = EnvironmentLock.take(store, environment.name, "failover", f"switchover to {to}",
                                    environment.settings["deploy_lock_lease_seconds"],
                                    break_prefix=str(host.data.get("break_lock") or "") or None)
    except RolloutError as e:
        raise FailoverError(f"{e}; nothing changed") from None
    lock.start_heartbeat()
    return lock


def finish(code: int) -> None:
    # Everything happened while pyinfra prepared the run: end here, before its empty execute
    # phase and its confirmation prompt (as ops/fleet/stages.py).
    raise SystemExit(code)
