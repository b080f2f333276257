"""One host's slot swap: the new slot starts beside the live one, must be healthy, Traefik's
route moves to it, the old slot drains and stops, the host records which slot is live.

Each service runs in one of two slots (`a`/`b`, compose project `sa-<service>-<slot>`);
Traefik's file provider holds one file per service naming the live slot's server. Until the
route moves, the live slot serves alone and `undo_new_slots` puts the host back as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ops.catalog.model import Environment
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.host.state import SERVICE_STATE_DIR
from ops.render.compose import SINGLETON_PROFILE
from ops.rollout.plan import ServiceChange
from ops.rollout.steps import RolloutError, must, upload

TRAEFIK_CONTAINER = "traefik"
TRAEFIK_METRICS_URL = "http://127.0.0.1:8082/metrics"


def swapped_paths(changes: Sequence[ServiceChange]) -> list[str]:
    """Every file a swap rewrites: each service's compose and env files and its route."""
    return [f.path for c in changes for f in (*c.files, c.route)]


def stage_service_files(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Upload the new compose/env files, keeping the live ones as `.prev` until the swap ends.

    The running containers do not read these files again; the copies let a failed swap put
    the host back exactly as it was.
    """
    must(remote, cmd.backup_files(swapped_paths(changes)), "keeping the current service files")
    for c in changes:
        upload(remote, c.files)


def start_new_slots(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    ups = [cmd.compose_up(c.compose_file) for c in changes]
    must(remote, cmd.chain(*ups), "starting new containers", timeout=600)


def undo_new_slots(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Remove the new containers and put the previous files back: the host is as it was."""
    remote.run(cmd.each(*(cmd.compose_down(c.new_project, timeout=10) for c in changes)),
               timeout=300)
    remote.run(cmd.restore_files(swapped_paths(changes)))


def wait_healthy(remote: Remote, environment: Environment,
                 changes: Sequence[ServiceChange]) -> None:
    targets = {}
    for c in changes:
        service = environment.services[c.service]
        targets[service.container_name(c.new_slot)] = (
            f"http://127.0.0.1:{service.port}{service.health_path}")
    timeout = max(environment.services[c.service].health_timeout_seconds for c in changes)
    ok, out, err = remote.run(cmd.wait_healthy(targets, timeout), timeout=timeout + 60)
    if ok:
        return
    failed = [line.split()[1] for line in out.splitlines() if line.startswith("fail ")]
    names = failed or list(targets)
    logs = []
    for name in names[:3]:
        _, tail, _ = remote.run(cmd.container_logs_tail(name, 20))
        logs.append(f"--- last log lines of {name} ---\n{tail.strip()}")
    services = ", ".join(c.service for c in changes
                         if environment.services[c.service].container_name(c.new_slot) in names)
    raise RolloutError(
        f"{remote.name}: {services or 'a service'} did not become healthy within {timeout}s; "
        "traffic stays on the running version and the new containers were removed.\n"
        + "\n".join(logs))


def switch_traffic(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Point each service's Traefik file at its new slot; return once Traefik has reloaded."""
    count = must(remote, cmd.traefik_reloads(TRAEFIK_CONTAINER, TRAEFIK_METRICS_URL),
                 "reading Traefik's reload count").strip()
    before = int(count or 0)
    upload(remote, [c.route for c in changes])
    if not any(c.route_changed for c in changes):
        return  # Traefik already routes there (a rerun after an interrupted swap)
    must(remote, cmd.wait_traefik_reload(TRAEFIK_CONTAINER, TRAEFIK_METRICS_URL, before),
         "waiting for Traefik to route to the new containers", timeout=120)


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


def record_services(remote: Remote, changes: Sequence[ServiceChange],
                    digests: dict[str, str], release_id: str) -> None:
    """Write each swapped service's record: its live slot, image, digest, config hash."""
    writes = []
    for c in changes:
        writes.append(cmd.write_json_file(f"{SERVICE_STATE_DIR}/{c.service}.json", {
            "service": c.service, "slot": c.new_slot, "image": c.image,
            "digest": digests.get(c.image, ""), "hash": c.config_hash, "release": release_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }))
    must(remote, cmd.chain(cmd.sh("mkdir", "-p", SERVICE_STATE_DIR), *writes),
         "recording the services' state")
