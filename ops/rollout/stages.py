"""The stages of `deploy.py` (and, with ops/rollout/rollback.py, of `tasks/rollback.py`), each a
pyinfra `@deploy`.

pyinfra executes the deploy file once per host to prepare, then runs the queued operations. The
work that belongs to the whole run (load and validate the environment, audit, read Vault, render,
validate with the real tools) happens once, during preparation, before any host is changed; the
rollout itself is one callback that drives the hosts one at a time (ops/rollout/engine.py).
`check_invariants` returns the run context (ops/rollout/run.py); every later stage takes it.

Never prints or logs a secret value: the secret source is opaque, plans name files not contents.
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import python

from ops.canary.steps import Canary
from ops.dbha.stage import cluster_leader, cluster_stage
from ops.host.facts import SuperappHostState
from ops.host.remote import PyinfraRemote
from ops.host.state import STATE_SCRIPT, parse_host_state
from ops.images.refs import pinned
from ops.images.registry import Registry, RegistryError
from ops.preview.stage import dry_run_mode, preview_host
from ops.render import PlaceholderSecrets, render_host
from ops.render.files import write_tree
from ops.render.secrets import untracked_services
from ops.render.tls import certificate_problems
from ops.rollout.engine import Checkpoints, rollout, summary_table, timeline_table
from ops.rollout.ledger import append_to_ledgers
from ops.rollout.lock import EnvironmentLock, VaultLockStore, lock_path
from ops.rollout.plan import HostPlan, plan_host, plan_lines, plan_signature
from ops.rollout.run import DeployRefused, Run, prepare_run
from ops.rollout.steps import RolloutError
from ops.schema.plan import pending_bootstrap
from ops.scope import current_scope
from ops.secrets.vault import VaultError, VaultSettings
from ops.secrets.vault import fetch_secrets as vault_fetch
from ops.validate import ValidationError, locate_tool, validate_tree
from ops.validate_passed import validate_unless_passed


@deploy("Check the environment and its production invariants")
def check_invariants(kind: str = "deploy") -> Run:
    """Validate catalog + group_data, audit the rendered config, read every host's state.

    Refuses (before any change) on invalid data, a blocking audit finding, or a host that
    could not be reached. Returns the run context the later stages take.
    """
    run = current_scope().once("run", lambda: prepare_run(kind))
    # One command reads everything the deploy needs to know about this host.
    run.states[host.name] = host.get_fact(SuperappHostState)
    return run


@deploy("Resolve image tags to registry digests")
def resolve_images(run: Run) -> None:
    """Every service's image tag -> the digest the registry holds for it now, read once from
    the controller before any host changes; compose files then run `image:tag@sha256:...`, so
    every host runs the same bits and the ledger records exactly which. Digests a rollback
    took from the ledger are kept (only services without a recorded one are resolved)."""
    current_scope().once("digests", lambda: resolve_into(run))


def resolve_into(run: Run) -> bool:
    environment = run.environment
    wanted = {s.name: environment.image(s) for s in environment.services.values()
              if s.name not in environment.digests}
    try:
        found = Registry.from_settings(environment.settings).digests(wanted.values())
    except RegistryError as e:
        users = {ref: sorted(n for n, r in wanted.items() if r == ref) for ref in wanted.values()}
        where = environment.setting_files.get("image_tags") or \
            environment.setting_files.get("default_image_tag") or "group_data"
        named = "".join(f"\n  {ref} is the image of {', '.join(users[ref])}" for ref in e.refs
                        if ref in users)
        raise DeployRefused(f"{e}{named}\n(tags come from image_tags / default_image_tag in "
                            f"{where}); no host was changed") from None
    run.environment = environment.with_digests({n: found[ref] for n, ref in wanted.items()})
    return True


@deploy("Read every secret from Vault")
def read_secrets(run: Run) -> None:
    """Every secret the environment needs, read before any host is changed (one error listing
    every missing path and key otherwise)."""
    current_scope().once("secrets", lambda: fetch_into(run))


def fetch_into(run: Run) -> bool:
    try:
        if run.pinned_versions is not None and not run.force_old_secrets:
            refuse_rotated(run, vault_fetch(run.environment).versions())
        fetched = vault_fetch(run.environment, versions=run.pinned_versions)
    except VaultError as e:
        raise DeployRefused(str(e)) from None
    if problems := certificate_problems(run.environment, fetched):
        raise DeployRefused("refusing to deploy: Vault's edge certificates are not usable "
                            "(ops/runbooks/tls.md):\n  - " + "\n  - ".join(problems))
    run.secrets = fetched
    run.release.secret_versions = fetched.versions()
    if untracked := untracked_services(run.environment, fetched):
        print(f"--> warning: no SENTRY_DSN in Vault for {', '.join(untracked)} "
              f"({run.environment.vault_path('<service>')}#SENTRY_DSN, kind url): "
              "their errors reach no error tracker", flush=True)
    return True


def refuse_rotated(run: Run, current: dict[str, int]) -> None:
    """`secrets=as-recorded` would bring back versions replaced since the target release
    (perhaps because they leaked): refuse, naming the paths, unless `--data force=true`."""
    rotated = sorted(p for p, v in (run.pinned_versions or {}).items() if current.get(p) != v)
    if rotated:
        raise DeployRefused(
            f"--data secrets=as-recorded would restore older versions of {len(rotated)} secret "
            f"path(s) rotated since release {run.release.rolled_back_to}: "
            + ", ".join(f"{p} (v{run.pinned_versions[p]}, now v{current.get(p, '?')})"
                        for p in rotated)
            + ". A rotated secret may have leaked: keep the current versions (the default), or "
            "add --data force=true to restore them anyway")


@deploy("Read the host and plan the changes")
def plan_changes(run: Run) -> None:
    """Compare each host with what it should run; validate what will be uploaded."""
    plan = plan_host(run.environment, host.name, run.secrets, run.states[host.name])
    run.plans[host.name] = plan
    current_scope().once("schema-pending", lambda: warn_schema_pending(run, host.name))
    validate_changed(run, plan)
    dry, diff = dry_run_mode()
    if dry or diff:
        preview_host(run, plan, diff)  # the dry run's report: reasons, masked diffs, summary
    else:
        for line in plan_lines(plan):
            logger.info(f"{host.print_prefix}{line}")


def warn_schema_pending(run: Run, host_name: str) -> None:
    """Name the services whose schema bootstrap no ledger records (every host of a run keeps
    the whole ledger, so the first host's is enough): they serve an empty database."""
    pending = pending_bootstrap(run.environment, run.states[host_name].ledger)
    if pending:
        logger.warning(
            f"--> {len(pending)} service(s) have no schema yet (no migrations, and their "
            f"bootstrap job is not in the ledger): {', '.join(pending)}; run once each: pyinfra "
            f"-y inventories/{run.environment.name}.py tasks/bootstrap_schema.py "
            "--data service=<name>")


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
            validate_unless_passed(Path(tmp), run.environment, validate_tree, locate_tool)
        except ValidationError as e:
            raise DeployRefused(f"{plan.host}: a rendered file fails validation:\n{e}") from None


@deploy("Roll out host by host")
def roll_out(run: Run) -> None:
    """One callback, run once, drives every host in rollout order (ops/rollout/engine.py)."""

    def callback(state, host) -> bool:  # noqa: ARG001 - pyinfra passes both
        return rollout_callback(state, run)

    python.call(name="Roll out host by host, zero downtime", function=callback, _run_once=True)


def take_lock(state, run: Run) -> EnvironmentLock:
    """The environment's lock for this run (RolloutError naming the holder when it is held);
    a broken lock is written to the ledger of every host this run reaches."""
    active = {h.name: h for h in state.inventory.get_active_hosts()}
    first = state.inventory.get_host(run.ordered(active)[0])
    store = VaultLockStore(VaultSettings.from_environment(run.environment),
                           lock_path(run.environment))
    lock = EnvironmentLock.take(
        store, run.environment.name, run.release.kind, run.release.id,
        run.environment.settings["deploy_lock_lease_seconds"],
        break_prefix=str(first.data.get("break_lock") or "") or None)
    if lock.broke is not None:
        b = lock.broke
        print(f"--> broke the {run.environment.name} deploy lock of {b.user} (pid {b.pid}, "
              f"{b.kind} of release {b.release}, last heartbeat {b.heartbeat})", flush=True)
        failed = append_to_ledgers(
            [PyinfraRemote(active[n]) for n in run.ordered(active)],
            {"kind": "lock-broken", "by": lock.holder.user, "release": run.release.id,
             "holder": b.user, "holder_pid": b.pid, "holder_release": b.release,
             "holder_token": b.shown_token, "holder_heartbeat": b.heartbeat,
             "at": lock.holder.started})
        if failed:
            warning = lock.release()
            raise RolloutError("the lock break could not be recorded: " + "; ".join(failed)
                               + (f"\n{warning}" if warning else ""))
    lock.start_heartbeat()
    return lock


def release_lock(lock: EnvironmentLock) -> None:
    """Release the lock; a release that failed is said (the lease frees it anyway)."""
    warning = lock.release()
    if warning:
        print(warning, file=sys.stderr, flush=True)


def replan_under_lock(run: Run, remotes: list[PyinfraRemote]) -> None:
    """Read every host again now that the lock is held and refuse if the plan moved: another
    run may have changed the fleet while this one was planning (its "new" slot could be the
    other run's live one). Nothing has been changed when this refuses."""
    moved = []
    for remote in remotes:
        ok, out, err = remote.run(STATE_SCRIPT)
        if not ok:
            raise RolloutError(f"{remote.name}: cannot read the host's state: "
                               f"{(err or out).strip()[-300:]}")
        state = parse_host_state(out.splitlines())
        fresh = plan_host(run.environment, remote.name, run.secrets, state)
        if plan_signature(fresh) != plan_signature(run.plans[remote.name]):
            moved.append(remote.name)
        run.states[remote.name] = state
        run.plans[remote.name] = fresh
    if moved:
        raise RolloutError(
            f"{', '.join(moved)} changed since this run planned (another deploy, or a change "
            "by hand, while this one was planning or waiting for confirmation); nothing was "
            "changed: re-run to plan again")


def rollout_callback(state, run: Run, lock: EnvironmentLock | None = None) -> bool:
    """Roll `run.plans` over the active hosts in rollout order; False (printed) on failure.

    Takes the environment's lock unless the caller holds it (a rotation holds it across its
    phases), then re-reads every host before acting.
    """
    active = {h.name: h for h in state.inventory.get_active_hosts()}
    order = run.ordered(active)
    if not any(run.plans[name].changed for name in order if name in run.plans):
        print("--> nothing to change on any host", flush=True)  # no lock needed to do nothing
        return True
    remotes = [PyinfraRemote(active[name]) for name in order]
    own_lock = lock is None
    try:
        if own_lock:
            lock = take_lock(state, run)
        try:
            replan_under_lock(run, remotes)
            plans = [run.plans[name] for name in order if name in run.plans]
            if not any(p.changed for p in plans):
                print("--> nothing to change on any host", flush=True)
                return True
            checkpoints = Checkpoints(lock)
            began = time.monotonic()
            by_name = {r.name: r for r in remotes}
            cluster_stage(run.environment, plans, by_name, run.secrets, checkpoints.reach)
            leader = cluster_leader(run.environment, by_name)
            migrated = {(name, pinned(rec.get("image") or "", rec.get("digest")))
                        for st in run.states.values()
                        for name, rec in st.services.items()}
            canary = Canary.for_environment(run.environment, run.canary) if run.canary else None
            results = rollout(run.environment, plans, remotes, run.release, migrated=migrated,
                              checkpoints=checkpoints, canary=canary,
                              parallel_hosts=run.parallel_hosts, leader=leader)
        finally:
            if own_lock and lock is not None:
                release_lock(lock)
    except RolloutError as e:
        print(f"\nDEPLOY FAILED: {e}", file=sys.stderr, flush=True)
        return False
    except Exception:  # noqa: BLE001 - a bug in this tool: say so, with the traceback
        print("\nDEPLOY FAILED: a bug in the deploy tool (not a host or network problem); "
              "please report it with this traceback:\n" + traceback.format_exc(),
              file=sys.stderr, flush=True)
        return False
    print("\n" + summary_table(results), flush=True)
    print(f"--> rolled {len(results)} host(s) in {time.monotonic() - began:.1f}s "
          f"(parallel_hosts {run.parallel_hosts})", flush=True)
    timeline = timeline_table(results)
    if timeline:
        print("\nseconds since each host's rollout began, per step:\n" + timeline, flush=True)
    return True
