"""The stages of `tasks/rotate_secrets.py`, around the deploy's own (ops/rollout/stages.py).

    run = check_invariants(kind="rotate") -> read_secrets(run)
    -> rotation = prepare_rotation(run) -> plan_changes(run) -> report_rotation(run, rotation)
    -> roll_out_rotation(run, rotation)

`prepare_rotation` (prepare phase) only reads Vault and makes the new values in memory;
`roll_out_rotation` queues one callback (execution phase, never under `--dry`) that writes the
new versions with check-and-set, then rolls out through `ops.rollout.stages.rollout_callback`,
and for internal-hmac writes and rolls out each next phase the same way. Why the writes wait
for execution, and the phases: ops/secrets/rotation.py. Never prints a value.
"""

from __future__ import annotations

import sys
import time

import gevent
from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.context import ctx_state
from pyinfra.operations import python

from ops.host.remote import PyinfraRemote
from ops.host.state import STATE_SCRIPT, parse_host_state
from ops.preview.stage import dry_run_mode
from ops.rollout.ledger import Release, append_to_ledgers, now_iso
from ops.rollout.lock import EnvironmentLock
from ops.rollout.plan import plan_host, plan_lines
from ops.rollout.run import DeployRefused, Run
from ops.rollout.stages import rollout_callback, take_lock, validate_changed
from ops.rollout.steps import RolloutError
from ops.scope import current_scope
from ops.secrets.rotation import (
    HmacRotation,
    RotatedSecrets,
    RotationError,
    RotationPlan,
    ledger_entry,
    parse_selection,
    phase3_wait_seconds,
    plan_rotation,
    resumed_services,
    services_swapped_in_phase,
    unrelated_changes,
)
from ops.secrets.rotation import (
    plan_lines as rotation_plan_lines,
)
from ops.secrets.rotation_writes import advance_hmac, drop_previous, write_planned
from ops.secrets.vault import VaultError, VaultSettings, fetch_secrets, open_session, read_kv


def refuse_partial_inventory(environment_hosts: list[str]) -> None:
    state = ctx_state.get()
    limited = state.limit_hosts
    if isinstance(limited, list) and {h.name for h in limited} != set(environment_hosts):
        raise DeployRefused("a rotation must reach every host (a new secret value on some "
                            "hosts only splits the fleet): run it without --limit/--exclude")


@deploy("Choose the secrets to rotate and make their new values")
def prepare_rotation(run: Run) -> RotationPlan:
    """Once per run, after every check passed: selection, new values in memory, plan input."""
    return current_scope().once("rotation", lambda: make_rotation(run))


def make_rotation(run: Run) -> RotationPlan:
    refuse_partial_inventory([h.name for h in run.environment.hosts])
    try:
        selection = parse_selection(run.environment, host.data.get("rotate"))
        settings = VaultSettings.from_environment(run.environment)
        with open_session(settings) as session:
            plan = plan_rotation(
                run.environment, selection, run.secrets.versions(),
                lambda path, version: read_kv(session, path, version),
                rotation_id=f"rot-{run.release.id}", user=run.release.user, now=now_iso())
    except (RotationError, VaultError) as e:
        raise DeployRefused(f"cannot rotate ({run.environment.name}): {e}") from None
    stop_after = host.data.get("hmac_stop_after")
    if stop_after not in (None, 1, 2):
        raise DeployRefused(f"--data hmac_stop_after={stop_after}: must be 1 or 2")
    plan.stop_after_phase = stop_after
    run.secrets = RotatedSecrets(run.secrets, plan.overrides)
    for line in rotation_plan_lines(run.environment, plan, dry=dry_run_mode()[0]):
        logger.info(f"--> {line}")
    return plan


@deploy("Check the host is on the release; show what the rotation swaps there")
def report_rotation(run: Run, rotation: RotationPlan) -> None:
    """Refuse a host that would change without the rotation (run deploy.py first)."""
    assert isinstance(run.secrets, RotatedSecrets)
    base = plan_host(run.environment, host.name, run.secrets.base, run.states[host.name])
    expected = set(services_swapped_in_phase(run.environment, rotation.hmac.phase)) \
        if rotation.hmac and rotation.hmac_resumed else set()
    expected |= resumed_services(run.environment, rotation)
    unrelated = unrelated_changes(base, expected)
    if unrelated:
        raise DeployRefused(
            f"{host.name} is not on this repo's release; a rotation only rotates, so run "
            "deploy.py first. Without the rotation it would: " + "; ".join(unrelated[:8])
            + (f" (+{len(unrelated) - 8} more)" if len(unrelated) > 8 else ""))
    swapped = [c.service for c in run.plans[host.name].services]
    logger.info(f"{host.print_prefix}rotation swaps now: {', '.join(swapped) or 'nothing'}")


@deploy("Rotate: write the new versions, then roll out host by host")
def roll_out_rotation(run: Run, rotation: RotationPlan) -> None:
    def callback(state, host) -> bool:  # noqa: ARG001 - pyinfra passes both
        return rotate_callback(state, run, rotation)

    python.call(name="Write the new secret versions and roll them out host by host",
                function=callback, _run_once=True)


def say(message: str) -> None:
    print(f"--> {message}", flush=True)


def rotate_callback(state, run: Run, plan: RotationPlan) -> bool:
    """Under the environment's lock, held across every phase: write the new versions (CAS),
    roll them out, then each next internal-hmac phase."""
    try:
        lock = take_lock(state, run)
    except RolloutError as e:
        print(f"\nROTATION FAILED: {e}\nNo host was changed and Vault was not written.",
              file=sys.stderr, flush=True)
        return False
    try:
        return rotate_locked(state, run, plan, lock)
    finally:
        warning = lock.release()
        if warning:
            print(warning, file=sys.stderr, flush=True)


def rotate_locked(state, run: Run, plan: RotationPlan, lock: EnvironmentLock) -> bool:
    settings = VaultSettings.from_environment(run.environment)
    remotes = active_remotes(state, run)
    started = now_iso()
    steps: list[dict] = []
    old_versions = {w.path: w.old_version for w in plan.writes}
    if plan.hmac:
        old_versions[plan.hmac_path] = plan.hmac.old_version
    new_versions: dict[str, int] = {}

    def finish(result: str, message: str | None = None) -> bool:
        """Record the rotation in every host's ledger; True unless it failed."""
        if message:
            print(f"\nROTATION FAILED: {message}", file=sys.stderr, flush=True)
        entry = ledger_entry(plan, env=run.environment.name, user=run.release.user,
                             started=started, finished=now_iso(), result=result, steps=steps,
                             old_versions=old_versions, new_versions=new_versions)
        unrecorded = append_to_ledgers(remotes, entry)
        if unrecorded:
            print("ROTATION NOT RECORDED: " + "; ".join(unrecorded), file=sys.stderr, flush=True)
        return result != "failed" and not unrecorded

    try:
        lock.check()
        if plan.writes:
            with open_session(settings) as session:
                new_versions.update(write_planned(session, plan))
            for w in plan.writes:
                say(f"wrote {w.path} version {w.new_version} (was {w.old_version}): "
                    + ", ".join(w.keys))
    except (RotationError, VaultError, DeployRefused, RolloutError) as e:
        return finish("failed", f"{e}\nNo host was changed.")
    run.release.secret_versions = {**run.release.secret_versions, **new_versions}
    ok = roll_step(state, run, lock, steps, plan.hmac)
    record, version = plan.hmac, plan.hmac_version
    while ok and record is not None:
        if record.phase == plan.stop_after_phase:
            say(f"internal-hmac: stopped after phase {record.phase} as asked "
                f"(hmac_stop_after); every signature in use is accepted; re-run to resume")
            return finish(f"stopped after phase {record.phase}")
        if record.phase == 2:
            wait_replay_window(run)
        try:
            with open_session(settings) as session:
                record, version = advance_hmac(session, plan.hmac_path, record, version)
            new_versions[plan.hmac_path] = version
            if record is None:
                say(f"internal-hmac: wrote {plan.hmac_path} version {version}: rotation "
                    f"{plan.hmac.rotation} finished (no previous secret, no record)")
                break
            say(f"internal-hmac: wrote {plan.hmac_path} version {version}: phase "
                f"{record.phase}")
            replan(run, remotes, {plan.hmac_path: version})
        except (RotationError, VaultError, DeployRefused) as e:
            return finish("failed", f"{e}\nEvery signature in use is still accepted; re-run "
                                    "to resume the rotation.")
        ok = roll_step(state, run, lock, steps, record)
    if ok and plan.two_step_paths:
        try:
            ok = finish_two_step(state, run, plan, lock, steps, remotes, new_versions, settings)
        except (RotationError, VaultError, DeployRefused) as e:
            return finish("failed", f"{e}\nThe servers still accept the old password and the "
                                    "new; re-run to finish the rotation.")
    if not ok:
        print("ROTATION STOPPED: the hosts before the failing one run the new values; re-run "
              "to resume (the recorded phase is rolled again).", file=sys.stderr, flush=True)
    return finish("success" if ok else "failed")


def finish_two_step(state, run: Run, plan: RotationPlan, lock: EnvironmentLock,
                    steps: list[dict], remotes: list[PyinfraRemote],
                    new_versions: dict[str, int], settings: VaultSettings) -> bool:
    """Every service now uses its new database/Redis password: remove the old ones (CAS on
    the versions rolled out) and roll that out (only the db host's servers change)."""
    written: dict[str, int] = {}
    with open_session(settings) as session:
        for path, version in plan.two_step_paths.items():
            written[path] = drop_previous(session, path, new_versions.get(path, version))
            new_versions[path] = written[path]
            say(f"wrote {path} version {written[path]}: the old password removed")
    replan(run, remotes, written)
    say("host by host, the old password(s) stop working")
    return roll_step(state, run, lock, steps, None)


def active_remotes(state, run: Run) -> list[PyinfraRemote]:
    active = {h.name: h for h in state.inventory.get_active_hosts()}
    return [PyinfraRemote(active[name]) for name in run.ordered(active)]


def roll_step(state, run: Run, lock: EnvironmentLock, steps: list[dict],
              record: HmacRotation | None) -> bool:
    """One host-by-host rollout of the plans in `run.plans` (the deploy's own callback)."""
    if record is not None:
        say(f"internal-hmac phase {record.phase}: host by host")
    ok = rollout_callback(state, run, lock)
    steps.append({"release": run.release.id, "phase": record.phase if record else None,
                  "secret_versions": dict(run.release.secret_versions),
                  "result": "success" if ok else "failed",
                  "swapped": {n: [c.service for c in p.services]
                              for n, p in run.plans.items() if p.services}})
    return ok


def wait_replay_window(run: Run) -> None:
    seconds = phase3_wait_seconds(run.environment)
    say(f"internal-hmac: every caller signs with the new secret; waiting {seconds} s (replay "
        "window + margin) until no call signed with the old one can still be accepted")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        gevent.sleep(min(30.0, left))  # the lock's heartbeat runs meanwhile
        if left > 30:
            say(f"internal-hmac: {int(deadline - time.monotonic())} s left")


def replan(run: Run, remotes: list[PyinfraRemote], pinned: dict[str, int]) -> None:
    """Read Vault and every host again and plan the next phase, as the prepare stages do."""
    fetched = fetch_secrets(run.environment, versions=pinned)
    run.secrets = fetched
    run.release = Release(env=run.environment.name, commit=run.release.commit, kind="rotate")
    run.release.secret_versions = fetched.versions()
    for remote in remotes:
        ok, out, err = remote.run(STATE_SCRIPT)
        if not ok:
            raise DeployRefused(f"{remote.name}: cannot read the host's state: {err.strip()}")
        run.states[remote.name] = parse_host_state(out.splitlines())
        plan = plan_host(run.environment, remote.name, fetched, run.states[remote.name])
        run.plans[remote.name] = plan
        validate_changed(run, plan)
        for line in plan_lines(plan):
            print(f"    [{remote.name}] {line}", flush=True)
