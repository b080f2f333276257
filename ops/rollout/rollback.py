"""The rollback's own stage (`tasks/rollback.py`): pick the release to restore from every
host's ledger (ops/rollout/history.py), say what will change, pin the run to it.

The rest of a rollback is the deploy's stages (ops/rollout/stages.py): the same digests, secret
read, plan, lock and swap, recorded in the ledger with `rolled_back_to`.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.context import ctx_state

from ops.host.facts import SuperappHostState
from ops.rollout.history import (
    RollbackTarget,
    head_lines,
    merged_releases,
    rollback_lines,
    rollback_target,
)
from ops.rollout.run import DeployRefused, Run
from ops.scope import current_scope


@deploy("Pick the release to go back to")
def pick_previous_release(run: Run) -> None:
    """Rollback: the newest release every host ran, or the one before it (ops.rollout.history),
    from all hosts' ledgers merged; printed per host and service as `now -> target` before
    anything changes. Secrets keep their current versions unless `--data secrets=as-recorded`."""
    current_scope().once("rollback-target", lambda: pin_release(run, choose_target(run)))


def choose_target(run: Run) -> RollbackTarget:
    """Read every host (the ledgers and what runs) and pick the release to restore."""
    hosts = ctx_state.get().inventory.get_active_hosts()
    for h in hosts:
        if h.name not in run.states:
            run.states[h.name] = h.get_fact(SuperappHostState)
    try:
        return rollback_target(run.environment, run.states, host.data.get("release"))
    except LookupError as e:
        raise DeployRefused(f"cannot roll back {run.environment.name}: {e}") from None


SECRET_MODES = ("current", "as-recorded")


def pin_release(run: Run, chosen: RollbackTarget) -> str:
    """Make `run` deploy the target's images without migrations; the release id."""
    target = chosen.release
    mode = str(host.data.get("secrets") or "current")
    if mode not in SECRET_MODES:
        raise DeployRefused(f"--data secrets={mode}: expected one of {', '.join(SECRET_MODES)}")
    lines = rollback_lines(run.environment, run.states, target)
    heads = head_lines(merged_releases(e for s in run.states.values() for e in s.ledger),
                       target["release"])
    run.environment = run.environment.rolled_back_to(target["images"],
                                                     target.get("image_digests") or {})
    if mode == "as-recorded":
        run.pinned_versions = dict(target.get("secret_versions", {}))
        run.force_old_secrets = str(host.data.get("force") or "").lower() == "true"
    run.release.rolled_back_to = target["release"]
    secrets = (f"as recorded by {target['release']}" if mode == "as-recorded"
               else "current versions (rotations are kept)")
    print(f"--> rolling back to release {target['release']} of {target.get('finished', '?')} "
          f"(commit {target.get('commit')}, by {target.get('user')}): {chosen.reason}\n"
          + "".join(f"    {line}\n" for line in lines or ["(every service already runs it)"])
          + "".join(f"    {line}\n" for line in heads)
          + f"    secrets: {secrets}; no migrations run"
          + ("" if target.get("commit") == run.release.commit else
             f"\n    config: templates and group_data are this checkout's (commit "
             f"{run.release.commit}), not release {target['release']}'s (commit "
             f"{target.get('commit')}); only images and secrets follow the release"),
          flush=True)
    return target["release"]
