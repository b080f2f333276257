"""What a deploy must do on each host: rendered desired state compared with the host's snapshot.

Pure: the environment, the secret values, the rendered files and a `HostState` in, a `HostPlan`
out. The same plan drives the real rollout, the dry run's report and the no-op check, so they
can never disagree about what "changed" means.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ops.catalog.model import Environment
from ops.host.state import HostState, has_image, held_percent
from ops.images.refs import pinned
from ops.render import render_host, service_content_hash, slot_metrics
from ops.render.compose import SLOTS, project_name
from ops.render.files import RenderedFile
from ops.render.host import host_directories
from ops.render.secrets import SecretValues
from ops.render.traefik import render_dynamic, server_url

# Files an interrupted run leaves: `.prev` copies, upload temp files (staged or beside).
LEFTOVER = re.compile(r"\.(prev|tmp-[0-9a-f]+)$|/\.staging/")
# Units whose files are applied in place (not slot-swapped), in the order they are applied.
INFRA_UNITS = ("firewall", "edge", "data", "redis-acl", "databases", "backup-repo", "monitoring",
               "prometheus", "alertmanager", "blackbox", "grafana", "backup", "pitr",
               "sidecar-metrics")


# The database cluster's files (db_ha): never a host's unit to apply alone. Its first start
# needs etcd's quorum across hosts before any Patroni can bootstrap, and a change must keep
# quorum and one member serving: its own stage, across the hosts, owns them (issue 19).
CLUSTER_UNIT = "dbha"
# ... and with db_ha, the roles and databases: provisioned on whichever member leads, once the
# cluster serves and before any service of the release migrates (ops/dbha/stage.py)
PROVISION_UNIT = "databases"


def cluster_units(environment: Environment) -> frozenset[str]:
    """The units the cluster stage applies across the hosts, never one host's rollout."""
    return frozenset({CLUSTER_UNIT, PROVISION_UNIT} if environment.db_ha else {CLUSTER_UNIT})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def other_slot(slot: str | None) -> str:
    if slot is None:
        return SLOTS[0]
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


class Reason(StrEnum):
    """Why a service is swapped on a host. The rollout, the dry run and the rotation decide on
    these members; `describe_reasons` turns them into the text an operator reads."""

    NOT_DEPLOYED = "not deployed yet"
    IMAGE = "image changed"
    DIGEST = "image tag points to other bits (re-pushed)"
    CONFIG = "configuration or secrets changed"
    NOT_RUNNING = "container not running"
    DRIFTED = "files on the host differ from the release"
    UNRECORDED = "what runs in the live slot is not recorded (an interrupted run)"


# Reasons that put other bits in the slot: their migrations run (once per environment).
NEW_BITS = {Reason.IMAGE, Reason.DIGEST, Reason.NOT_DEPLOYED, Reason.UNRECORDED}


@dataclass
class ServiceChange:
    """One service to swap on one host: start `new_slot`, move traffic, stop `old_slot`."""

    service: str
    old_slot: str | None
    new_slot: str
    reasons: list[Reason]
    image: str
    old_image: str | None
    config_hash: str
    files: list[RenderedFile]  # compose + env files, rendered for the new slot
    route: RenderedFile  # the Traefik dynamic file pointing at the new slot
    new_project: str
    old_project: str | None
    migrate: bool = False
    digest: str = ""  # "sha256:..." the new slot runs (resolved by this run), "" if unknown
    old_digest: str = ""
    route_changed: bool = True  # False when the host's Traefik file already says this
    has_singleton: bool = False  # a singleton sidecar runs with it here (starts after the swap)
    # a canary held at this percent (`--data canary=hold`) already runs this change in
    # `new_slot`: the swap continues from there (files staged, migrated, containers up)
    held: int | None = None

    @property
    def bits(self) -> str:
        """The image this change runs, by digest when known (what "already migrated" means)."""
        return pinned(self.image, self.digest)

    @property
    def compose_file(self) -> str:
        return next(f.path for f in self.files if f.path.endswith(".yml"))

    def describe(self) -> list[str]:
        return describe_reasons(self)


def describe_reasons(change: ServiceChange) -> list[str]:
    """The reasons as an operator reads them (`image reg/x:v1 -> reg/x:v2`)."""
    def text(r: Reason) -> str:
        if r == Reason.IMAGE:
            return f"image {change.old_image} -> {change.image}"
        if r == Reason.DIGEST:
            return moved(change)
        return str(r)
    return [text(r) for r in change.reasons]


def moved(change: ServiceChange) -> str:
    """A re-pushed tag, as an operator reads it."""
    return f"image {change.image} moved: {short(change.old_digest)} -> {short(change.digest)}"


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12] or "?"


@dataclass
class HostPlan:
    host: str
    address: str
    dirs: list[tuple[str, int, int]]
    images: set[str]
    missing_images: set[str]
    infra_files: list[RenderedFile]  # changed in-place files
    infra_units: list[str]  # units whose files changed (apply in this order)
    services: list[ServiceChange]
    unchanged: list[str]
    slots: dict[str, str] = field(default_factory=dict)  # service -> slot after the rollout
    images_after: dict[str, str] = field(default_factory=dict)  # service -> image after it
    digests_after: dict[str, str] = field(default_factory=dict)  # service -> its digest
    # left by an interrupted run: containers of a slot that is not live (by compose project
    # when they have one: stopped gracefully), `.prev`/`.tmp-` files, intents of swaps that
    # never switched traffic
    leftover_containers: list[str] = field(default_factory=list)
    leftover_projects: list[str] = field(default_factory=list)
    leftover_files: list[str] = field(default_factory=list)
    stale_intents: list[str] = field(default_factory=list)
    # swaps an interrupted run left after moving traffic: their intent becomes the record
    promote: dict[str, str] = field(default_factory=dict)  # service -> server URL now live
    singletons: list[str] = field(default_factory=list)  # live slots missing their singleton
    # routes an interrupted canary left sharing traffic: the plain route of the live slot,
    # put back before anything else (leftover containers may be the canary's new slot)
    canary_routes: list[RenderedFile] = field(default_factory=list)
    canary_servers: dict[str, str] = field(default_factory=dict)  # service -> live server URL
    # live files a swap that never switched left as `<path>.prev` (the staged ones in their
    # place): moved back, so the host's files describe what runs again
    restore_files: list[str] = field(default_factory=list)
    prestaged: bool = False  # the missing images were pulled before any host changed
    # the slot/version info for Prometheus after the rollout, and whether the host's differs
    slot_info: RenderedFile | None = None
    slot_info_stale: bool = False
    # the database cluster's changed files on this host (cluster_units): its own stage's
    cluster_files: list[RenderedFile] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.missing_images or self.infra_files or self.cluster_files or self.services
                    or self.leftovers or self.promote or self.singletons or self.canary_routes
                    or self.restore_files or self.slot_info_stale)

    @property
    def leftovers(self) -> list[str]:
        """What an interrupted run left, by name (containers, projects, files, intents)."""
        return [*self.leftover_projects, *self.leftover_containers, *self.leftover_files,
                *(f"the swap intent of {name}" for name in self.stale_intents)]

    @property
    def changed_units(self) -> set[str]:
        units = set(self.infra_units)
        for c in self.services:
            units |= {f"service:{c.service}", f"route:{c.service}"}
        return units


def file_changed(f: RenderedFile, state: HostState) -> bool:
    return state.files.get(f.path) != sha256(f.content)


def service_names(environment: Environment, host: str) -> list[str]:
    return [s.name for s in environment.services_on(host)]


def compose_images(files: list[RenderedFile]) -> set[str]:
    """Every image the host's compose files reference (services, sidecars, infra)."""
    images = set()
    for f in files:
        if f.path.endswith(".yml") and "/compose/" in f.path:
            for line in f.content.splitlines():
                key, _, value = line.strip().partition(":")
                if key == "image":
                    images.add(value.strip().strip('"'))
    return images


@dataclass(frozen=True)
class Live:
    """The slot a service serves from on a host, and the record of what runs there."""

    slot: str
    record: dict | None  # None: nothing recorded for that slot (an interrupted run)
    promote: bool = False  # the record is the intent of a swap whose route already moved


def live_state(environment: Environment, host: str, state: HostState) -> dict[str, Live]:
    """Per service: the live slot and its record.

    The route file on the host is the truth of which slot is live (Traefik serves what it
    says); the service record says what runs in that slot. A swap writes its intent before it
    starts and turns it into the record once Traefik serves the new slot, so a run that died
    between the route switch and the record leaves an intent matching the route: that intent
    is what runs. Hosts without a route line fall back to the record's slot.
    """
    out = {}
    for name in service_names(environment, host):
        record, intent = state.services.get(name), state.intents.get(name)
        slot = state.routes.get(name)
        if slot not in SLOTS:
            slot = (record or {}).get("slot")
        if slot not in SLOTS:
            continue
        if record and record.get("slot") == slot:
            out[name] = Live(slot, record)
        elif intent and intent.get("slot") == slot:
            out[name] = Live(slot, intent, promote=True)
        else:
            out[name] = Live(slot, None)
    return out


def live_slots(environment: Environment, host: str, state: HostState) -> dict[str, str]:
    """Slot each service serves from now (see `live_state`)."""
    return {name: live.slot for name, live in live_state(environment, host, state).items()}


def service_running(environment: Environment, name: str, slot: str, state: HostState) -> bool:
    container = environment.services[name].container_name(slot)
    c = state.containers.get(container)
    return bool(c and c.state == "running")


def plan_host(environment: Environment, host: str, secrets: SecretValues,
              state: HostState) -> HostPlan:
    """Compare what `host` should run with what it runs; list the work, nothing else."""
    lives = live_state(environment, host, state)
    live = {name: x.slot for name, x in lives.items()}
    records = {name: x.record or {} for name, x in lives.items()}
    services = service_names(environment, host)
    reasons: dict[str, list[Reason]] = {}
    hashes: dict[str, str] = {}
    for name in services:
        hashes[name] = service_content_hash(environment, name, host, secrets)
        record = records.get(name)
        why = []
        if name not in live:
            why.append(Reason.NOT_DEPLOYED)
        elif not record:
            why.append(Reason.UNRECORDED)
        else:
            digest = environment.digests.get(name)
            if record.get("image") != environment.image(environment.services[name]):
                why.append(Reason.IMAGE)
            elif digest and record.get("digest") and record["digest"] != digest:
                why.append(Reason.DIGEST)
            elif record.get("hash") != hashes[name]:
                why.append(Reason.CONFIG)
            if not service_running(environment, name, live[name], state):
                why.append(Reason.NOT_RUNNING)
        if why:
            reasons[name] = why

    def slots_after(changed: dict[str, list[Reason]]) -> dict[str, str]:
        return {n: (other_slot(live.get(n)) if n in changed else live[n])
                for n in services if n in changed or n in live}

    def render(changed: dict[str, list[Reason]]) -> list[RenderedFile]:
        return render_host(environment, host, secrets, slots_after(changed))

    files = render(reasons)
    unswitched = unswitched_files(state, lives, files)
    state = replace(state, files={**state.files, **{p: state.files[f"{p}.prev"]
                                                    for p in unswitched}})
    # A service whose live files were edited on the host is redeployed too (drift repair).
    drifted = {f.unit.partition(":")[2] for f in files
               if f.unit.startswith(("service:", "route:")) and file_changed(f, state)}
    drifted -= set(reasons)
    if drifted:
        for name in drifted:
            reasons[name] = [Reason.DRIFTED]
        files = render(reasons)
    by_unit: dict[str, list[RenderedFile]] = {}
    for f in files:
        by_unit.setdefault(f.unit, []).append(f)

    held = held_changes(environment, host, state, live, reasons, hashes)
    changes = []
    for name in services:
        if name not in reasons:
            continue
        service = environment.services[name]
        old = live.get(name)
        new = other_slot(old)
        record = records.get(name) or {}
        changes.append(ServiceChange(
            service=name, old_slot=old, new_slot=new, reasons=reasons[name],
            image=environment.image(service), old_image=record.get("image"),
            config_hash=hashes[name], files=by_unit[f"service:{name}"],
            route=by_unit[f"route:{name}"][0],
            new_project=project_name(service, new),
            old_project=project_name(service, old) if old else None,
            migrate=environment.migrations and bool(environment.migrate_command(service))
            and bool(NEW_BITS & set(reasons[name])) and name not in held,
            digest=environment.digests.get(name, ""), old_digest=record.get("digest") or "",
            route_changed=file_changed(by_unit[f"route:{name}"][0], state),
            has_singleton=any(sc.singleton for sc in environment.sidecars_on(service, host)),
            held=held.get(name),
        ))

    in_place = [f for f in files if f.unit.split(":")[0] not in ("service", "route")
                and file_changed(f, state)]
    cluster = cluster_units(environment)
    infra_files = [f for f in in_place if f.unit not in cluster]
    infra_units = [u for u in INFRA_UNITS if any(f.unit == u for f in infra_files)]
    images = compose_images(files)
    stale = [c for c in state.containers.values() if c.labels.get("superapp.service")
             and live.get(c.labels["superapp.service"]) != c.labels.get("superapp.slot")
             and not (c.labels["superapp.service"] in held
                      and c.labels.get("superapp.slot") == other_slot(live.get(
                          c.labels["superapp.service"])))]
    leftover_projects = sorted({c.labels["com.docker.compose.project"] for c in stale
                                if c.labels.get("com.docker.compose.project")})
    leftover_containers = sorted(c.name for c in stale
                                 if not c.labels.get("com.docker.compose.project"))
    kept = {f"{f.path}.prev" for c in changes if c.held for f in (*c.files, c.route)}
    held_paths = {f.path for c in changes if c.held for f in (*c.files, c.route)}
    restore = [p for p in unswitched if p not in held_paths]
    kept |= {f"{p}.prev" for p in restore}
    leftover_files = sorted(p for p in state.files if LEFTOVER.search(p) and p not in kept)
    promote = {name: server_url(environment.services[name], x.slot)
               for name, x in lives.items() if x.promote}
    stale_intents = sorted(name for name in state.intents
                           if name not in promote and name not in held)
    shared = [n for n in sorted(state.canaries) if n in live and n not in held]
    images_after = {n: environment.image(environment.services[n]) for n in services}
    slot_info = slot_metrics.render(slots_after(reasons), images_after)
    return HostPlan(
        host=host, address=environment.host(host).address,
        dirs=host_directories(environment, host), images=images,
        missing_images={i for i in images if not has_image(state, i)},
        infra_files=infra_files, infra_units=infra_units, services=changes,
        unchanged=[n for n in services if n not in reasons], slots=slots_after(reasons),
        images_after=images_after,
        digests_after={n: environment.digests[n] for n in services if n in environment.digests},
        leftover_containers=leftover_containers, leftover_projects=leftover_projects,
        leftover_files=leftover_files, stale_intents=stale_intents, promote=promote,
        singletons=missing_singletons(environment, host, state, live, reasons),
        canary_routes=[render_dynamic(environment, environment.services[n],
                                      environment.host(host), live[n]) for n in shared],
        canary_servers={n: server_url(environment.services[n], live[n]) for n in shared},
        restore_files=restore,
        slot_info=slot_info, slot_info_stale=bool(services) and file_changed(slot_info, state),
        cluster_files=[f for f in in_place if f.unit in cluster],
    )


def unswitched_files(state: HostState, lives: dict[str, Live],
                     files: list[RenderedFile]) -> list[str]:
    """Files a swap staged over the live ones and never switched to (its intent is still
    there, for another slot than the live one): each has a `.prev` copy, which is what the
    live slot runs. Left by a crash after `staged`, a canary that died, or a held one."""
    names = {n for n, i in state.intents.items()
             if n in lives and not lives[n].promote and i.get("slot") != lives[n].slot}
    return sorted(f.path for f in files
                  if f.unit.partition(":")[0] in ("service", "route")
                  and f.unit.partition(":")[2] in names and f"{f.path}.prev" in state.files)


def held_changes(environment: Environment, host: str, state: HostState, live: dict[str, str],
                 reasons: dict[str, list[Reason]], hashes: dict[str, str]) -> dict[str, int]:
    """service -> the percent its held canary shares, when this run continues that canary:
    every held intent on the host is exactly a change this run makes (same slot, image,
    digest, configuration) with its new containers running, and this run changes nothing
    else there. Otherwise {}: a held canary this run does not continue is put back like an
    interrupted one (route back to the live slot, then its containers removed)."""
    held = {n: i for n, i in state.intents.items() if held_percent(i) is not None}
    if not held or set(held) != set(reasons):
        return {}
    for name, intent in held.items():
        digest = environment.digests.get(name)
        if (intent.get("slot") != other_slot(live.get(name))
                or intent.get("image") != environment.image(environment.services[name])
                or (digest and intent.get("digest") and intent["digest"] != digest)
                or intent.get("hash") != hashes[name]
                or not service_running(environment, name, intent["slot"], state)):
            return {}
    return {n: held_percent(i) for n, i in held.items()}


def missing_singletons(environment: Environment, host: str, state: HostState,
                       live: dict[str, str], swapping) -> list[str]:
    """Services not swapped here whose live slot should run a singleton sidecar but does not
    (a run that died between stopping the old slot's and starting the new slot's)."""
    out = []
    for service in environment.services_on(host):
        if service.name in swapping or service.name not in live:
            continue
        for sc in environment.sidecars_on(service, host):
            name = service.container_name(live[service.name], sc.name)
            c = state.containers.get(name)
            if sc.singleton and not (c and c.state == "running"):
                out.append(service.name)
    return sorted(set(out))


def plan_lines(plan: HostPlan) -> list[str]:
    """What the rollout will do on the host, one line per action (the plan's printed form)."""
    if not plan.changed:
        return ["nothing to change"]
    lines = [(f"{c.service}: continue the canary held at {c.held}%, " if c.held else
              f"{c.service}: ") + f"swap slot {c.old_slot or '-'} -> {c.new_slot} "
             f"({'; '.join(describe_reasons(c))})" + (" + migrations" if c.migrate else "")
             for c in plan.services]
    lines += [f"update {f.path}" for f in plan.infra_files]
    lines += [f"update {f.path} (the database cluster's stage)" for f in plan.cluster_files]
    if plan.missing_images:
        lines.append(f"pull {', '.join(sorted(plan.missing_images))}")
    lines += [f"{name}: finish the swap an interrupted run left (traffic is on {url})"
              for name, url in sorted(plan.promote.items())]
    lines += [f"restore {path} from {path}.prev (a swap that never switched staged over it)"
              for path in plan.restore_files]
    lines += [f"remove {leftover} (left by an interrupted run)" for leftover in plan.leftovers]
    lines += [f"{name}: start its singleton sidecar" for name in plan.singletons]
    if plan.slot_info_stale and not plan.services:
        lines.append(f"update {slot_metrics.PATH} (the slots and versions for Prometheus)")
    return lines


def plan_signature(plan: HostPlan) -> tuple:
    """Everything a plan would do, comparable: two plans with the same signature change a host
    the same way (the rollout re-plans under the lock and refuses when this moved)."""
    return (
        tuple((c.service, c.old_slot, c.new_slot, c.image, c.config_hash, c.held)
              for c in plan.services),
        tuple(sorted((f.path, sha256(f.content)) for f in plan.infra_files)),
        tuple(sorted((f.path, sha256(f.content)) for f in plan.cluster_files)),
        tuple(sorted(plan.missing_images)), tuple(plan.leftovers),
        tuple(sorted(plan.promote.items())), tuple(plan.singletons),
        tuple(sorted(plan.canary_servers.items())), tuple(plan.restore_files),
        plan.slot_info_stale,
    )
