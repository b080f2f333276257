"""Host-by-host rollout: executes the plans made by `ops.rollout.plan`, one host at a time.

pyinfra runs an operation on every host at once; a rollout must do the opposite (one host, in a
fixed order, stop at the first failure, touch nothing after it). So the whole rollout is one
callback run once on the controller, driving each host's SSH connection in turn through the
`Remote` protocol (ops/host/remote.py). Commands come from `ops.host.commands` (pure builders);
no secret value is ever part of a command: secret files are uploaded over SFTP.

The environment's lock is taken once for the run (ops/rollout/lock.py). Per host: directories
-> leftovers of an interrupted run removed -> pull every image (nothing restarted yet) ->
in-place infra files -> migrations (once per release) -> the slot swap (ops/rollout/swap.py)
-> record. If a new slot never becomes healthy, the new slots of that host are removed,
traffic never moved, and the rollout stops there. The release goes to the ledger
(ops/rollout/ledger.py) whatever the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ops.backup.commands import first_backups_command
from ops.backup.freshness import check_backup_freshness
from ops.catalog.model import Environment
from ops.console import format_table
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.host.state import SERVICE_STATE_DIR
from ops.render.backup import databases as all_databases
from ops.rollout.interrupt import Interrupted, interruptible
from ops.rollout.ledger import Release, record_ledger
from ops.rollout.lock import acquire_locks, release_locks
from ops.rollout.plan import HostPlan, ServiceChange, describe_reasons
from ops.rollout.steps import RolloutError, must, say, upload
from ops.rollout.swap import (
    record_services,
    stage_service_files,
    start_new_slots,
    stop_old_slots,
    switch_traffic,
    undo_new_slots,
    wait_healthy,
)


@dataclass
class HostResult:
    host: str
    changed: list[str] = field(default_factory=list)
    result: str = "unchanged"
    seconds: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # service -> image it runs after


def apply_infra(remote: Remote, plan: HostPlan) -> None:
    if not plan.infra_files:
        return
    say(remote.name, f"updating {len(plan.infra_files)} config file(s): "
                     + ", ".join(plan.infra_units))
    upload(remote, plan.infra_files)
    actions = {
        "edge": cmd.compose_up("/opt/superapp/compose/edge.yml"),
        "data": cmd.compose_up("/opt/superapp/compose/data.yml"),
        "monitoring": cmd.compose_up("/opt/superapp/compose/monitoring.yml"),
        "prometheus": cmd.signal_container("prometheus", "HUP"),
        "alertmanager": cmd.signal_container("alertmanager", "HUP"),
    }
    # backup: nothing to restart (cron reads /etc/cron.d); the first backups run at the end
    # of the host's rollout, once the databases have their schema (see roll_host).
    changed_paths = {f.path for f in plan.infra_files}
    for unit in plan.infra_units:
        command = actions.get(unit)
        if unit == "edge" and "/opt/superapp/traefik/traefik.yml" in changed_paths:
            # Traefik reads its static config only at start.
            command = cmd.compose_up("/opt/superapp/compose/edge.yml", force_recreate=True)
        if unit in ("prometheus", "alertmanager") and "monitoring" in plan.infra_units:
            continue  # just (re)created with the new files
        if command:
            must(remote, command, f"applying {unit}", timeout=300)


def run_migrations(remote: Remote, environment: Environment, change: ServiceChange) -> None:
    service = environment.services[change.service]
    say(remote.name, f"{change.service}: running migrations once for {change.image}")
    command = cmd.compose_run(change.compose_file, service.name,
                              environment.migrate_command(service) or [],
                              env={"AUTO_CREATE_SCHEMA": "false"})
    out = must(remote, command, f"migration of {change.service}", timeout=900)
    for line in out.strip().splitlines()[-10:]:
        say(remote.name, f"  migrate: {line}")


def pull(remote: Remote, plan: HostPlan) -> dict[str, str]:
    """Pull what the host lacks (before anything restarts); return every image's digest."""
    if plan.missing_images:
        say(remote.name, f"pulling {len(plan.missing_images)} image(s)")
        must(remote, cmd.pull_images(plan.missing_images), "pulling images", timeout=1800)
    out = must(remote, cmd.image_digests(plan.images), "reading image digests")
    digests = {}
    for line in out.splitlines():
        ref, _, digest = line.partition(" ")
        if "@" in digest:
            digests[ref] = digest.split("@", 1)[1]
    return digests


def roll_host(remote: Remote, environment: Environment, plan: HostPlan, release: Release,
              migrated: set[tuple[str, str]], db_remote: Remote | None = None) -> HostResult:
    t0 = time.monotonic()
    result = HostResult(plan.host, images=dict(plan.images_after))
    must(remote, cmd.make_dirs([*plan.dirs, ("/opt/superapp/compose", 0o755, 0),
                                ("/opt/superapp/traefik/dynamic", 0o755, 0),
                                (SERVICE_STATE_DIR, 0o755, 0)]), "creating directories")
    if plan.leftover_containers or plan.leftover_files:
        say(remote.name, "removing what an interrupted run left: "
                         + ", ".join(plan.leftover_containers + plan.leftover_files))
        must(remote, cmd.chain(
            cmd.sh("docker", "rm", "-f", *plan.leftover_containers)
            if plan.leftover_containers else "",
            cmd.remove_files(plan.leftover_files)), "removing leftovers")
    result.digests = pull(remote, plan)
    apply_infra(remote, plan)
    changes = plan.services
    if changes:
        say(remote.name, "swapping " + ", ".join(
            f"{c.service} ({'; '.join(describe_reasons(c))})" for c in changes))
        stage_service_files(remote, changes)
        try:
            for c in changes:
                if c.migrate and (c.service, c.image) not in migrated:
                    check_backup_freshness(db_remote or remote, environment, c)
                    run_migrations(remote, environment, c)
                    migrated.add((c.service, c.image))
            start_new_slots(remote, changes)
            wait_healthy(remote, environment, changes)
            switch_traffic(remote, changes)
        except (RolloutError, Interrupted):
            undo_new_slots(remote, changes)
            raise
        stop_old_slots(remote, changes)
        record_services(remote, changes, result.digests, release.id)
    if "backup" in plan.infra_units:
        out = must(remote, first_backups_command(all_databases(environment)), "first backups",
                   timeout=900)
        for line in out.strip().splitlines()[-3:]:
            say(remote.name, f"  backup: {line}")
    result.changed = [c.service for c in changes] + plan.infra_units + (
        ["leftovers"] if plan.leftover_containers or plan.leftover_files else [])
    result.result = "changed" if (result.changed or plan.missing_images) else "unchanged"
    result.seconds = time.monotonic() - t0
    return result


def rollout(environment: Environment, plans: Sequence[HostPlan], remotes: Sequence[Remote],
            release: Release, break_lock: bool = False,
            migrated: set[tuple[str, str]] | None = None,
            on_host_done: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Roll `plans` (already in rollout order) host by host; raise at the first failure.

    `migrated`: (service, image) pairs whose migrations already ran in this environment (some
    host already runs that image), so a release migrates once, not once per host or per run.
    """
    results: list[HostResult] = []
    by_name = {r.name: r for r in remotes}
    # The environment's lock lives on its first host in rollout order (the primary, as Kamal
    # does): every deploy connects to it first, and an unreachable later host cannot strand it.
    primary = [remotes[0]]
    lock = acquire_locks(primary, environment.name,
                         environment.settings["deploy_lock_ttl_minutes"], break_lock)
    migrated = set(migrated or ())
    try:
        for plan in plans:
            remote = by_name[plan.host]
            print(f"--> {plan.host}: " + (
                "nothing to change" if not plan.changed else
                f"{len(plan.services)} service(s) to swap, {len(plan.infra_files)} file(s)"),
                flush=True)
            try:
                with interruptible():
                    result = roll_host(remote, environment, plan, release, migrated,
                                       by_name.get(environment.db_host.name, remote))
            except Interrupted:
                results.append(HostResult(plan.host, result="INTERRUPTED"))
                record_ledger(remotes, results, release, "interrupted")
                raise RolloutError(
                    f"interrupted (Ctrl-C) while rolling {plan.host}: its changes were undone; "
                    + (f"already on the new release: {', '.join(r.host for r in results[:-1])}"
                       if len(results) > 1 else "no host changed")) from None
            except RolloutError as e:
                done = [r.host for r in results if r.result == "changed"]
                failed = HostResult(plan.host, result="FAILED")
                results.append(failed)
                record_ledger(remotes, results, release, "failed")
                rest = [p.host for p in plans[len(results):]]
                raise RolloutError(
                    f"{e}\nRollout stopped at {plan.host}. "
                    + (f"Already on the new release: {', '.join(done)}. " if done else "")
                    + (f"Not touched: {', '.join(rest)}." if rest else "")) from None
            results.append(result)
            if on_host_done:
                on_host_done(result)
        if any(r.result == "changed" for r in results):
            record_ledger(remotes, results, release, "success")
    finally:
        release_locks(primary, lock)
    return results


def summary_table(results: Sequence[HostResult]) -> str:
    return format_table(("host", "services changed", "result", "time"),
                        [(r.host, ", ".join(r.changed) or "-", r.result, f"{r.seconds:.1f}s")
                         for r in results])
