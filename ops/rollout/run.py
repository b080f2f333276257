"""The run context of a deploy, rollback or rotation: what is computed once per `pyinfra`
invocation and handed from stage to stage (environment, release, host states, secrets, plans).

Made once by `check_invariants` through the run's `RunScope` (ops/scope.py) and then passed
explicitly; nothing keeps it in a module global.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from ops.audit import run_audit
from ops.audit.passed import audit_unless_passed
from ops.canary.policy import CanaryInputError, Policy, policy_for_run
from ops.catalog import REPO_ROOT, ConfigError, load_environment
from ops.catalog.model import Environment
from ops.host.known_hosts import explain_unreachable
from ops.host.state import HostState
from ops.render.secrets import SecretValues
from ops.rollout.ledger import Release
from ops.rollout.plan import HostPlan

REPO = Path(__file__).resolve().parents[2]


class DeployRefused(PyinfraError):
    """Stops the run before any host is changed, with one message naming what and where."""


@dataclass
class Run:
    """Everything computed once per `pyinfra` invocation."""

    environment: Environment
    release: Release
    states: dict[str, HostState] = field(default_factory=dict)
    secrets: SecretValues | None = None
    pinned_versions: dict[str, int] | None = None  # rollback as-recorded: KV versions to read
    force_old_secrets: bool = False  # ... even those rotated since (--data force=true)
    plans: dict[str, HostPlan] = field(default_factory=dict)
    canary: Policy | None = None  # a deploy's canary (ops/canary); None: no canary this run
    parallel_hosts: int = 1  # hosts rolled at once after the first (rollout.parallel_hosts)

    def ordered(self, names) -> list[str]:
        """`names` in the environment's rollout order (hosts it does not know are dropped)."""
        return self.environment.in_rollout_order(names)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "-uno"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.strip() + ("-dirty" if dirty else "")


def env_name() -> str:
    """The environment of the inventory pyinfra runs (`env` in its group data)."""
    name = host.data.get("env")
    if not name:
        raise DeployRefused(f"{host.name}: no `env` in its group data: use an inventory from "
                            "inventories/ (prod.py, staging.py, local.py)")
    return name


def prepare_run(kind: str) -> Run:
    """The once-per-run checks: valid data, no blocking audit finding, every host reached."""
    name = env_name()
    try:
        environment = load_environment(name)
    except ConfigError as e:
        raise DeployRefused(str(e)) from None
    report = audit_unless_passed(name, environment.settings, run_audit, REPO_ROOT)
    if report is not None:
        raise DeployRefused(
            f"refusing to deploy {name}: the audit found {len(report.blocking)} blocking "
            f"finding(s):\n{report.format_table(only_blocking=True)}")
    failed = ctx_state.get().failed_hosts
    if failed:
        names = sorted(h.name for h in failed)
        addresses = {h.name: h.address for h in environment.hosts}
        hint = explain_unreachable(environment.settings.get("ssh_known_hosts_file"),
                                   [(n, addresses.get(n, n)) for n in names],
                                   environment.settings.get("ssh_port") or 22)
        raise DeployRefused(f"refusing to deploy {name}: cannot reach {', '.join(names)} (see "
                            f"the connection errors above); no host was changed{hint}")
    return Run(environment, Release(env=name, commit=git_commit(), kind=kind),
               canary=canary_of_run(environment, kind),
               parallel_hosts=parallel_hosts_of_run(environment))


def parallel_hosts_of_run(environment: Environment) -> int:
    """group_data's `rollout.parallel_hosts`, or this run's `--data parallel_hosts=N`."""
    given = host.data.get("parallel_hosts")
    if given in (None, ""):
        return int(environment.settings["rollout"]["parallel_hosts"])
    if isinstance(given, bool) or not str(given).isdigit() or not 1 <= int(given) <= 50:
        raise DeployRefused(f"--data parallel_hosts={given!r}: expected a whole number of "
                            "hosts from 1 to 50")
    return int(given)


def canary_of_run(environment: Environment, kind: str) -> Policy | None:
    """A deploy's canary from group_data, as `--data canary=skip` and `--data canary_steps=`
    change it for this run; rollbacks and rotations go back to what ran or change no code,
    and have none."""
    if kind != "deploy":
        return None
    mode = host.data.get("canary")  # group_data's `canary` settings, unless --data gave one
    try:
        return policy_for_run(environment.settings["canary"],
                              None if isinstance(mode, dict) else mode,
                              host.data.get("canary_steps"))
    except CanaryInputError as e:
        raise DeployRefused(str(e)) from None
