"""One host's slot swap, as a state machine whose every step a later run can resume or undo.

Each service runs in one of two slots (`a`/`b`, compose project `sa-<service>-<slot>`);
Traefik's file provider holds one route file per service naming the live slot's server, and
that file on the host is the truth of which slot is live. The steps, for all the host's
changed services at once:

    staged    new compose/env files uploaded (the live ones kept as `.prev`), and an intent
              record `<service>.json.next` naming the new slot, image and config hash
    started   the new slot's containers up beside the live ones
    healthy   every new container answers its health URL, as Traefik will reach it
    canary-N  (the canary host only, ops/canary) the route files share the traffic, N% to the
              new slots, and Prometheus judged the step; a failure is undone like any other
    held      (`--data canary=hold`) the run stops after the last judged step, traffic shared,
              each intent marked `held`; a later run making the same changes resumes at
              `healthy` and goes on to `switched`; any other run puts the route back
    switched  the route files name the new slots
    serving   Traefik reports every new server up (`traefik_service_server_up`): traffic moved
    recorded  each intent becomes the service's record (`<service>.json`)
    stopped   the old slots drained and removed, singleton sidecars started in the new slots

A failure or Ctrl-C before `recorded` is undone in the safe order: route files back, wait until
Traefik serves the old servers again, then remove the new containers and put the files back.
A run that dies anywhere is finished by the next one (ops/rollout/plan.py reads the route
files and intents): before `switched` the new containers are leftovers; after it the intent
matches the route and is promoted to the record; after `recorded` the old slot is a leftover.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ops.canary.steps import Canary, run_canary
from ops.catalog.model import Environment
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.host.state import INTENT_SUFFIX, SERVICE_STATE_DIR
from ops.render.compose import SINGLETON_PROFILE
from ops.render.files import RenderedFile
from ops.render.traefik import HEALTH_INTERVAL_SECONDS
from ops.rollout.interrupt import Interrupted
from ops.rollout.plan import ServiceChange, server_url
from ops.rollout.steps import RolloutError, must, say, upload

TRAEFIK_CONTAINER = "traefik"
TRAEFIK_METRICS_URL = "http://127.0.0.1:8082/metrics"
SERVING_TIMEOUT = 60  # file-provider throttle + a health-check interval, with room to spare
# Traefik's file provider applies a change at most this long after the file changed
# (providersThrottleDuration, default 2s; not set in traefik.yml).
FILE_PROVIDER_THROTTLE_SECONDS = 2
# How long an undo waits after putting a route file back before it may trust the metrics: a
# Traefik that already loaded the new route still sends requests to the new containers until
# it reloads the old file (one throttle), and the old server's `server_up` line may be a stale
# 1 from before the switch until a health check ran on the reloaded config (one interval).
UNDO_SETTLE_SECONDS = FILE_PROVIDER_THROTTLE_SECONDS + HEALTH_INTERVAL_SECONDS + 1

Checkpoint = Callable[[str], None]


def record_path(service: str) -> str:
    return f"{SERVICE_STATE_DIR}/{service}.json"


def intent_path(service: str) -> str:
    return record_path(service) + INTENT_SUFFIX


def swapped_paths(changes: Sequence[ServiceChange]) -> list[str]:
    """Every file a swap rewrites: each service's compose and env files and its route."""
    return [f.path for c in changes for f in (*c.files, c.route)]


def record_of(c: ServiceChange, digests: dict[str, str], release_id: str) -> dict:
    return {"service": c.service, "slot": c.new_slot, "image": c.image,
            "digest": c.digest or digests.get(c.image, ""), "hash": c.config_hash,
            "release": release_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


def wait_serving(remote: Remote, servers: dict[str, str], what: str, settle: int = 0) -> None:
    """Return once Traefik serves `servers` (service -> URL); RolloutError otherwise.
    `settle`: seconds to let Traefik reload before its metrics count (see UNDO_SETTLE_SECONDS)."""
    if servers:
        must(remote, cmd.wait_traefik_serving(TRAEFIK_CONTAINER, TRAEFIK_METRICS_URL, servers,
                                              SERVING_TIMEOUT, settle=settle),
             what, timeout=SERVING_TIMEOUT + settle + 60)


def stage(remote: Remote, changes: Sequence[ServiceChange], digests: dict[str, str],
          release_id: str, checkpoint: Checkpoint) -> None:
    """Keep the live files as `.prev`, upload the new ones, write each intent."""
    must(remote, cmd.backup_files(swapped_paths(changes)), "keeping the current service files")
    upload(remote, [f for c in changes for f in c.files], checkpoint)
    write_intents(remote, changes, digests, release_id)


def start_new_slots(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """One `docker compose up` after another, on purpose: starting containers is CPU-bound,
    and six at once (`steps.at_once`) saved nothing measurable on the testbed while the live
    slots' requests on the same host slowed past the load's 5 s timeout (`make bench`)."""
    ups = [cmd.compose_up(c.compose_file) for c in changes]
    must(remote, cmd.chain(*ups), "starting new containers", timeout=600)


def wait_healthy(remote: Remote, environment: Environment,
                 changes: Sequence[ServiceChange]) -> None:
    """Every new container answers its health URL as Traefik will reach it (probed from the
    host's Traefik container), then every sidecar passes its own check."""
    targets = {}
    for c in changes:
        service = environment.services[c.service]
        targets[service.container_name(c.new_slot)] = (
            server_url(service, c.new_slot) + service.health_path)
    timeout = max(environment.services[c.service].health_timeout_seconds for c in changes)
    ok, out, err = remote.run(cmd.wait_healthy(TRAEFIK_CONTAINER, targets, timeout),
                              timeout=timeout + 60)
    if not ok and not re.search(r"^(ok|fail) ", out, re.M):
        raise RolloutError(f"{remote.name}: could not probe the new containers' health through "
                           f"the {TRAEFIK_CONTAINER} container: {(out + err).strip()[-300:]}; "
                           "traffic stays on the running version and the new containers were "
                           "removed")
    checks = sidecar_checks(remote.name, environment, changes)
    if ok and checks:  # the sidecars started with the new slots (a singleton starts later)
        ok, out, err = remote.run(cmd.wait_exec_ok(checks, timeout), timeout=timeout + 60)
        targets = checks
    if ok:
        return
    failed = [line.split()[1] for line in out.splitlines() if line.startswith("fail ")]
    names = failed or list(targets)
    logs = []
    for name in names[:3]:
        _, tail, _ = remote.run(cmd.container_logs_tail(name, 20))
        logs.append(f"--- last log lines of {name} ---\n{tail.strip()}")
    services = ", ".join(c.service for c in changes if any(
        n.startswith(environment.services[c.service].dns_name + "-") for n in names))
    raise RolloutError(
        f"{remote.name}: {services or 'a service'} did not become healthy within {timeout}s "
        f"({', '.join(names)}); "
        "traffic stays on the running version and the new containers were removed.\n"
        + "\n".join(logs))


def sidecar_checks(host: str, environment: Environment,
                   changes: Sequence[ServiceChange]) -> dict[str, list[str]]:
    """container -> health argv of the new slots' sidecars that have one and start with the
    slot (not the singletons, which start once the old slot is gone)."""
    checks = {}
    for c in changes:
        service = environment.services[c.service]
        for sidecar in environment.sidecars_on(service, host):
            argv = environment.health_command(service, sidecar)
            if argv and not sidecar.singleton:
                checks[service.container_name(c.new_slot, sidecar.name)] = argv
    return checks


def switch_routes(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Point each service's route file at its new slot (an atomic rename per file)."""
    upload(remote, [c.route for c in changes])


def new_servers(environment: Environment, changes: Sequence[ServiceChange]) -> dict[str, str]:
    return {c.service: server_url(environment.services[c.service], c.new_slot)
            for c in changes}


def old_servers(environment: Environment, changes: Sequence[ServiceChange]) -> dict[str, str]:
    return {c.service: server_url(environment.services[c.service], c.old_slot)
            for c in changes if c.old_slot}


def write_slot_info(remote: Remote, slot_info: RenderedFile) -> None:
    """Monitoring's view of the slots: a failure to write it is said, never fatal to a swap
    whose traffic already moved (the next run's plan sees the file differ and writes it)."""
    try:
        upload(remote, [slot_info])
    except RolloutError as e:
        say(remote.name, f"warning: {slot_info.path} not written ({e}); dashboards show the "
            "previous versions of this host until the next run")


def record(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Each intent becomes its service's record: the new slot is live, by the book."""
    must(remote, cmd.chain(*(cmd.sh("mv", "-f", intent_path(c.service), record_path(c.service))
                             for c in changes)), "recording the services' new slots")


def stop_old_slots(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """SIGTERM the old slots (all at once: each drains within its stop_grace_period), then
    start the singleton sidecars in the new slots (never two beats at once), drop `.prev`."""
    downs = [cmd.compose_down(c.old_project) for c in changes if c.old_project]
    if downs:
        must(remote, cmd.in_parallel(*downs), "stopping the previous containers", timeout=600)
    singles = [cmd.compose_up(c.compose_file, profiles=[SINGLETON_PROFILE])
               for c in changes if c.has_singleton]
    if singles:
        must(remote, cmd.chain(*singles), "starting singleton sidecars", timeout=300)
    must(remote, cmd.remove_files(f"{p}.prev" for p in swapped_paths(changes)),
         "removing the previous files")


def undo(remote: Remote, environment: Environment, changes: Sequence[ServiceChange],
         routes_moved: bool) -> list[str]:
    """Put the host back as it was, in the safe order; what could not be undone (empty: all).

    Route files first (with the other files, from `.prev`), then, if the routes had moved,
    wait until Traefik serves the old servers again; only then remove the new containers
    (removing them first would send requests to a container that is going away).
    """
    problems = []
    began = time.monotonic()
    ok, out, err = remote.run(cmd.restore_files(swapped_paths(changes)))
    if not ok:
        problems.append(f"putting the previous files back failed: {(out + err).strip()[-300:]}")
    if routes_moved and not problems:
        try:
            wait_serving(remote, old_servers(environment, changes),
                         "waiting for Traefik to serve the previous containers again",
                         settle=UNDO_SETTLE_SECONDS)
            say(remote.name, "traffic is back on the previous containers "
                             f"({time.monotonic() - began:.1f}s after the failure)")
        except RolloutError as e:
            problems.append(str(e))
    if problems:  # never remove containers Traefik may still send requests to
        return problems + ["the new containers were left running (traffic may be on them)"]
    ok, out, err = remote.run(cmd.each(*(cmd.compose_down(c.new_project, timeout=10)
                                         for c in changes)), timeout=300)
    if not ok:
        problems.append(f"removing the new containers failed: {(out + err).strip()[-300:]}")
    ok, out, err = remote.run(cmd.remove_files(intent_path(c.service) for c in changes))
    if not ok:
        problems.append(f"removing the swap intents failed: {(out + err).strip()[-300:]}")
    return problems


def write_intents(remote: Remote, changes: Sequence[ServiceChange], digests: dict[str, str],
                  release_id: str, held: int | None = None) -> None:
    """Each change's intent; `held`: the percent a held canary stays at (a later run that makes
    the same changes continues from there, see ops/rollout/plan.py `held_changes`)."""
    mark = {} if held is None else {"held": held}
    must(remote, cmd.chain(cmd.sh("mkdir", "-p", SERVICE_STATE_DIR), *(
        cmd.write_json_file(intent_path(c.service), record_of(c, digests, release_id) | mark)
        for c in changes)), "recording the swaps about to start" if held is None
        else "recording the held canary")


class CanaryHeld(Exception):  # noqa: N818 - not an error: the operator asked for it
    """`--data canary=hold`: the canary passed its steps and stays there, traffic shared."""


def swap(remote: Remote, environment: Environment, changes: Sequence[ServiceChange],
         digests: dict[str, str], release_id: str, checkpoint: Checkpoint,
         migrate: Callable[[], None], canary: Canary | None = None,
         slot_info: RenderedFile | None = None) -> None:
    """Run the state machine for `changes` on one host (see the module docstring).

    `migrate` runs between staging and starting (migrations need the new compose file);
    `checkpoint(step)` is called after each step (the lock check and the test fault hook);
    `canary`: this host is the canary, judged step by step before the switch; with
    `canary.policy.hold` it stops after the last judged step (CanaryHeld), traffic shared.
    Changes that continue a held canary (`held`, all of the host's or none) start at `healthy`.
    `slot_info` (ops/render/slot_metrics.py) is written once traffic moved, before the record:
    a run that dies in between leaves it true to the traffic, and its intent promoted next.
    """
    resumed = bool(changes) and all(c.held for c in changes)
    say(remote.name, ("continuing the canary held at "
                      f"{max(c.held or 0 for c in changes)}%: " if resumed else "swapping ")
        + ", ".join(f"{c.service} ({'; '.join(c.describe())})" for c in changes))
    routes_moved = resumed  # a held canary's routes share traffic
    held = False
    try:
        if resumed:  # staged, migrated and started by the run that held: no longer held
            write_intents(remote, changes, digests, release_id)
        else:
            stage(remote, changes, digests, release_id, checkpoint)
            checkpoint("staged")
            migrate()
            checkpoint("migrated")
            start_new_slots(remote, changes)
            checkpoint("started")
        wait_healthy(remote, environment, changes)
        checkpoint("healthy")
        if canary is not None and not resumed:
            routes_moved = True
            run_canary(remote, environment, changes, canary, checkpoint,
                       lambda servers, what: wait_serving(remote, servers, what))
            held = canary.policy.hold
        if held:
            write_intents(remote, changes, digests, release_id, canary.policy.judged_steps[-1])
        else:
            routes_moved = routes_moved or any(c.route_changed for c in changes)
            switch_routes(remote, changes)
            checkpoint("switched")
            wait_serving(remote, new_servers(environment, changes),
                         "waiting for Traefik to serve the new containers")
            checkpoint("serving")
    except BaseException as e:
        problems = undo(remote, environment, changes, routes_moved)
        if problems:
            raise RolloutError(f"{e}\n{remote.name}: the undo did not finish: "
                               + "; ".join(problems)) from None
        raise
    if held:
        checkpoint("held")
        raise CanaryHeld(f"{remote.name}: the canary is held at {canary.policy.judged_steps[-1]}%"
                         " as asked (--data canary=hold): " + ", ".join(
                             f"{c.service} {c.image}" for c in changes)
                         + " beside the live containers. Re-run this deploy (without "
                         "canary=hold) to continue from there, or run the rollback to put "
                         f"{remote.name} back")
    if slot_info is not None:
        write_slot_info(remote, slot_info)
    record(remote, changes)
    try:
        checkpoint("recorded")
        stop_old_slots(remote, changes)
        checkpoint("stopped")
    except (RolloutError, Interrupted) as e:
        why = str(e) if isinstance(e, RolloutError) else "interrupted (Ctrl-C)"
        raise RolloutError(f"{why}\n{remote.name}: traffic is on the new containers and "
                           "recorded; the next run removes whatever is left of the old ones") \
            from None
