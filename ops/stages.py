"""The stages of `deploy.py`, each a pyinfra `@deploy`.

pyinfra executes the deploy file once per host to prepare, then runs the queued operations. The
work that belongs to the whole run (load and validate the environment, audit, read Vault, render,
validate with the real tools) happens once, during preparation, before any host is changed; the
rollout itself is one callback that drives the hosts one at a time (see ops/rollout.py).

Never prints or logs a secret value: the secret source is opaque, plans name files not contents.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state
from pyinfra.operations import python

from ops.audit import run_audit
from ops.catalog import ConfigError, load_environment
from ops.catalog.model import Environment
from ops.hoststate import HostState, SuperappHostState
from ops.plan import HostPlan, plan_host
from ops.preview import dry_run_mode, preview_host
from ops.render import PlaceholderSecrets, render_host
from ops.render.files import write_tree
from ops.rollout import (
    PyinfraRemote,
    Release,
    RolloutError,
    previous_release,
    rollout,
    summary_table,
)
from ops.validate import ValidationError, validate_tree
from ops.vault import VaultError
from ops.vault import fetch_secrets as vault_fetch

REPO = Path(__file__).resolve().parent.parent


class DeployRefused(PyinfraError):
    """Stops the run before any host is changed, with one message naming what and where."""


@dataclass
class Run:
    """Everything computed once per `pyinfra` invocation."""

    environment: Environment
    release: Release
    states: dict[str, HostState] = field(default_factory=dict)
    secrets: object = None
    pinned_versions: dict[str, int] | None = None  # rollback: exact KV versions to read
    plans: dict[str, HostPlan] = field(default_factory=dict)


_run: Run | None = None
_lock = threading.RLock()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "-uno"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.strip() + ("-dirty" if dirty else "")


def current_run() -> Run:
    if _run is None:
        raise DeployRefused("internal: the check_invariants stage did not run")
    return _run


def env_name() -> str:
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
    report = run_audit(name)
    if report.blocking:
        raise DeployRefused(
            f"refusing to deploy {name}: the audit found {len(report.blocking)} blocking "
            f"finding(s):\n{report.format_table(only_blocking=True)}")
    failed = ctx_state.get().failed_hosts
    if failed:
        down = ", ".join(sorted(h.name for h in failed))
        raise DeployRefused(f"refusing to deploy {name}: cannot reach {down} (see the "
                            "connection errors above); no host was changed")
    return Run(environment, Release(env=name, commit=git_commit(), kind=kind))


@deploy("Check the environment and its production invariants")
def check_invariants(kind: str = "deploy") -> None:
    """Validate catalog + group_data, audit the rendered config, read every host's state.

    Refuses (before any change) on invalid data, a blocking audit finding, or a host that
    could not be reached.
    """
    global _run
    with _lock:
        if _run is None:
            _run = prepare_run(kind)
    # One command reads everything the deploy needs to know about this host.
    state = host.get_fact(SuperappHostState)
    with _lock:
        _run.states[host.name] = state


@deploy("Pick the release to go back to")
def pick_previous_release() -> None:
    """Rollback: the last successful release before the current one, from the ledgers.

    Every release is recorded on every host it ran on, so each host's ledger names the same
    target; a host whose ledger disagrees stops the rollback before anything changes.
    """
    run = current_run()
    wanted = host.data.get("release")  # --data release=<id> picks one explicitly
    try:
        target = previous_release(run.states[host.name].ledger, wanted)
    except LookupError as e:
        raise DeployRefused(f"cannot roll back {run.environment.name} ({host.name}): {e}") \
            from None
    with _lock:
        if run.release.rolled_back_to is not None:
            if run.release.rolled_back_to != target["release"]:
                raise DeployRefused(
                    f"cannot roll back: {host.name}'s ledger points at release "
                    f"{target['release']}, another host's at {run.release.rolled_back_to}")
            return
        run.environment = run.environment.with_images(target["images"])
        run.pinned_versions = dict(target.get("secret_versions", {}))
        run.release.rolled_back_to = target["release"]
        logger.info(f"--> rolling back to release {target['release']} of {target['started']} "
                    f"(commit {target.get('commit')}, by {target.get('user')})")


@deploy("Read every secret from Vault")
def read_secrets() -> None:
    """Every secret the environment needs, read before any host is changed (one error listing
    every missing path and key otherwise)."""
    run = current_run()
    with _lock:
        if run.secrets is not None:
            return
        try:
            fetched = vault_fetch(run.environment, versions=run.pinned_versions)
        except VaultError as e:
            raise DeployRefused(str(e)) from None
        run.secrets = fetched
        run.release.secret_versions = fetched.versions()


@deploy("Read the host and plan the changes")
def plan_changes() -> None:
    """Compare each host with what it should run; validate what will be uploaded."""
    run = current_run()
    plan = plan_host(run.environment, host.name, run.secrets, run.states[host.name])
    with _lock:
        run.plans[host.name] = plan
    validate_changed(run, plan)
    dry, diff = dry_run_mode()
    if dry or diff:
        preview_host(run, plan, diff)  # the dry run's report: reasons, masked diffs, summary
    else:
        print_plan(plan)


def validate_changed(run: Run, plan: HostPlan) -> None:
    """Check every unit about to change with its real tool (compose, promtool, amtool, Traefik).

    The check runs on the same files rendered with placeholder secrets (the layout and syntax
    are identical), so no secret value is ever written to the controller's disk.
    """
    units = plan.changed_units
    if not units:
        return
    if any(u == "edge" or u.startswith("route:") for u in units):
        units |= {"edge"} | {f"route:{n}" for n in plan.slots}  # Traefik needs all its files
    files = [f for f in render_host(run.environment, plan.host, PlaceholderSecrets(), plan.slots)
             if f.unit in units]
    with tempfile.TemporaryDirectory(prefix="superapp-validate-") as tmp:
        write_tree(Path(tmp), {plan.host: files})
        try:
            validate_tree(Path(tmp), run.environment)
        except ValidationError as e:
            raise DeployRefused(f"{plan.host}: a rendered file fails validation:\n{e}") from None


def print_plan(plan: HostPlan) -> None:
    if not plan.changed:
        logger.info(f"{host.print_prefix}nothing to change")
        return
    for c in plan.services:
        logger.info(f"{host.print_prefix}{c.service}: swap slot {c.old_slot or '-'} -> "
                    f"{c.new_slot} ({'; '.join(c.reasons)})"
                    + (" + migrations" if c.migrate else ""))
    for f in plan.infra_files:
        logger.info(f"{host.print_prefix}update {f.path}")
    if plan.missing_images:
        logger.info(f"{host.print_prefix}pull {', '.join(sorted(plan.missing_images))}")
    for leftover in plan.leftover_containers + plan.leftover_files:
        logger.info(f"{host.print_prefix}remove {leftover} (left by an interrupted run)")


@deploy("Roll out host by host")
def roll_out() -> None:
    """One callback, run once, drives every host in rollout order (ops/rollout.py)."""
    python.call(name="Roll out host by host, zero downtime", function=_rollout_callback,
                _run_once=True)


def _rollout_callback(state, host) -> bool:  # noqa: ARG001 - pyinfra passes both
    run = current_run()
    active = {h.name: h for h in state.inventory.get_active_hosts()}
    order = [h.name for h in run.environment.hosts if h.name in active]
    plans = [run.plans[name] for name in order if name in run.plans]
    if not any(p.changed for p in plans):
        print("--> nothing to change on any host", flush=True)
        return True
    remotes = [PyinfraRemote(active[name]) for name in order]
    break_lock = str(state.inventory.get_host(order[0]).data.get("break_lock", "")).lower() in (
        "1", "true", "yes")
    migrated = {(name, rec.get("image")) for st in run.states.values()
                for name, rec in st.services.items()}
    try:
        results = rollout(run.environment, plans, remotes, run.release, break_lock=break_lock,
                          migrated=migrated)
    except RolloutError as e:
        print(f"\nDEPLOY FAILED: {e}", file=sys.stderr, flush=True)
        return False
    print("\n" + summary_table(results), flush=True)
    return True
