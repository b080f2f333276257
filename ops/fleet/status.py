"""Fleet status (`pyinfra inventories/<env>.py tasks/status.py`): one table of every service.

Pure: the environment, each host's `HostState` (service records, image digests, ledger) and
`ContainerDetail`s in; rows and the table out. One row per service (and infra container) per
host: running version and image digest, health, since when, and the host's last release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ops.catalog.model import Environment
from ops.console import format_table
from ops.host.reads import ContainerDetail
from ops.host.state import HostState, held_percent
from ops.images.refs import parse_ref
from ops.rollout.ledger import last_release

INFRA_PROJECTS = ("sa-edge", "sa-data", "sa-monitoring")


@dataclass(frozen=True)
class StatusRow:
    host: str
    service: str
    container: str
    version: str
    digest: str
    health: str  # up (healthy), up, down (exited 137), missing, unreachable
    since: str
    release: str


def health_of(detail: ContainerDetail | None) -> str:
    if detail is None:
        return "missing"
    if detail.state == "running":
        return f"up ({detail.health})" if detail.health else "up"
    return f"down ({detail.state} {detail.exit_code})"


def since_of(detail: ContainerDetail | None) -> str:
    if detail is None:
        return "-"
    stamp = detail.started if detail.state == "running" else detail.finished
    return stamp[:19].replace("T", " ") + "Z" if stamp and not stamp.startswith("0001") else "-"


def release_of(state: HostState) -> str:
    entry = last_release(state.ledger)
    if entry is None:
        return "-"
    return f"{entry['release']} ({entry.get('kind', 'deploy')}, {entry.get('finished', '?')[:16]})"


def host_rows(environment: Environment, host: str, state: HostState,
              details: Mapping[str, ContainerDetail], only: str | None = None) -> list[StatusRow]:
    rows = []
    release = release_of(state)
    for service in environment.services_on(host):
        if only and service.name != only:
            continue
        record = state.services.get(service.name) or {}
        slot = record.get("slot")
        if slot:
            container = service.container_name(slot)
        else:  # no record: whatever serve container of it is there
            container = next((n for n, d in details.items()
                              if d.labels.get("superapp.service") == service.name
                              and d.labels.get("superapp.role") == "serve"),
                             service.container_name("a"))
        detail = details.get(container)
        ref = parse_ref(detail.image if detail else record.get("image", ""))
        digest = ref.digest or state.digests.get(ref.tagged) or record.get("digest") or ""
        rows.append(StatusRow(host, service.name, container, ref.tag or "-",
                              digest.removeprefix("sha256:")[:12] or "-", health_of(detail),
                              since_of(detail), release))
        # its sidecars in the same slot: a dead Celery worker shows as down or missing
        for sidecar in environment.sidecars_on(service, host):
            name = service.container_name(slot or "a", sidecar.name)
            side = details.get(name)
            rows.append(StatusRow(host, f"{service.name}/{sidecar.name}", name, ref.tag or "-",
                                  digest.removeprefix("sha256:")[:12] or "-", health_of(side),
                                  since_of(side), release))
    if not only:
        for name, detail in sorted(details.items()):
            if detail.labels.get("com.docker.compose.project") in INFRA_PROJECTS:
                digest = state.digests.get(detail.image, "")
                rows.append(StatusRow(host, name, name, detail.image.rpartition(":")[2],
                                      digest.removeprefix("sha256:")[:12] or "-",
                                      health_of(detail), since_of(detail), release))
    return rows


def unreachable_rows(host: str) -> list[StatusRow]:
    return [StatusRow(host, "-", "-", "-", "-", "unreachable", "-", "-")]


def format_status(rows: Sequence[StatusRow]) -> str:
    return format_table(
        ("host", "service", "container", "version", "digest", "health", "since",
         "last release"),
        [(r.host, r.service, r.container, r.version, r.digest, r.health, r.since, r.release)
         for r in rows])


def canary_lines(states: Mapping[str, HostState]) -> list[str]:
    """One line per service whose traffic a canary shares on a host: held on purpose
    (`--data canary=hold`, its intent marked `held`) or left by an interrupted run."""
    lines = []
    for host, state in states.items():
        for service, mark in sorted(state.canaries.items()):
            slot, _, weight = mark.partition(" ")
            intent = state.intents.get(service) or {}
            tag = (intent.get("image") or "?").rpartition(":")[2]
            if held_percent(intent) is not None:
                lines.append(f"{host} {service}: canary held at {weight}% ({tag} in slot {slot} "
                             f"since {intent.get('at', '?')[:16]}, release "
                             f"{intent.get('release', '?')}): re-run the deploy to continue, "
                             "or run the rollback to put it back")
            else:
                lines.append(f"{host} {service}: {weight}% of its traffic goes to slot {slot}, "
                             "left by an interrupted canary: the next deploy or rollback puts "
                             "it back")
    return lines
