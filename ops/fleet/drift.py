"""Drift: how a host differs from its last release (`make drift ENV=<env>`).

Pure: the environment (with the release's images), a host's `HostState`, the files the release
renders for the host's live slots (with the release's secret versions) and the release's
ledger entry in; one `Drift` row per difference out:

- a file edited, missing or left over on the host (an env file or config edited by hand, a
  missing cron job); secret files are compared by sha256 only, never by content;
- a container missing, stopped, running another image or image digest, not started by the
  deploy (edited or started by hand), or not part of the release at all;
- a service whose record disagrees with the release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from ops.catalog.model import Environment
from ops.console import format_table
from ops.host.state import CRON_GLOB, HostState
from ops.render.files import COMPOSE_DIR, ENV_DIR, TRAEFIK_DYNAMIC_DIR, RenderedFile
from ops.rollout.plan import sha256

# Directories whose every file the deploy owns: a file there that the release does not render
# is drift (a leftover `.prev`, a compose file started by hand...).
OWNED_DIRS = (COMPOSE_DIR, ENV_DIR, TRAEFIK_DYNAMIC_DIR)
CRON_PREFIX = CRON_GLOB.rstrip("*")


@dataclass(frozen=True)
class Drift:
    host: str
    kind: str  # file, cron, container, image, service, release
    subject: str
    detail: str


def expected_containers(files: Sequence[RenderedFile]) -> dict[str, tuple[str, str, str]]:
    """container name -> (image, compose project, unit), from the rendered compose files."""
    out = {}
    for f in files:
        if not (f.path.startswith(COMPOSE_DIR + "/") and f.path.endswith(".yml")):
            continue
        doc = yaml.safe_load(f.content) or {}
        for service in (doc.get("services") or {}).values():
            if service.get("container_name"):
                out[service["container_name"]] = (service.get("image", ""), doc.get("name", ""),
                                                   f.unit)
    return out


def file_drift(host: str, state: HostState, files: Sequence[RenderedFile],
               skip_units: set[str]) -> list[Drift]:
    rows = []
    expected = {f.path: f for f in files}
    for f in files:
        if f.unit in skip_units:
            continue
        kind = "cron" if f.path.startswith(CRON_PREFIX) else "file"
        actual = state.files.get(f.path)
        if actual is None:
            rows.append(Drift(host, kind, f.path, "cron job missing" if kind == "cron"
                              else "missing on the host"))
        elif actual != sha256(f.content):
            rows.append(Drift(host, kind, f.path, "edited on the host: differs from the release"
                              + (" (secret file: compared by hash only)" if f.secret else "")))
    for path in sorted(state.files):
        owned = path.startswith(CRON_PREFIX) or any(path.startswith(d + "/") for d in OWNED_DIRS)
        if owned and path not in expected:
            rows.append(Drift(host, "cron" if path.startswith(CRON_PREFIX) else "file", path,
                              "not part of the release (left over or added by hand)"))
    return rows


def container_drift(host: str, state: HostState, files: Sequence[RenderedFile],
                    skip_units: set[str]) -> list[Drift]:
    rows = []
    expected = expected_containers(files)
    for name, (image, project, unit) in sorted(expected.items()):
        c = state.containers.get(name)
        if unit in skip_units:
            continue
        if c is None:
            rows.append(Drift(host, "container", name, "missing"))
            continue
        if c.state != "running":
            rows.append(Drift(host, "container", name, f"not running: {c.status or c.state}"))
        if c.image != image:
            rows.append(Drift(host, "image", name, f"runs {c.image}, the release has {image}"))
        if c.labels.get("com.docker.compose.project") != project:
            rows.append(Drift(host, "container", name,
                              "not started by the deploy (compose project "
                              f"{c.labels.get('com.docker.compose.project') or 'none'}, "
                              f"expected {project}): edited or started by hand"))
    for name, c in sorted(state.containers.items()):
        if name in expected:
            continue
        service = c.labels.get("superapp.service")
        detail = (f"extra container of {service} (slot {c.labels.get('superapp.slot', '?')}, "
                  f"{c.state})" if service else f"not part of the release ({c.image}, {c.state})"
                  ": started by hand?")
        rows.append(Drift(host, "container", name, detail))
    return rows


def record_drift(environment: Environment, host: str, state: HostState,
                 release: dict | None, content_hashes: dict[str, str]) -> tuple[list[Drift],
                                                                              set[str]]:
    """Service records vs the release; returns rows and services whose files can't be judged
    (the repo renders them differently from what the release deployed)."""
    rows, unjudged = [], set()
    images = (release or {}).get("images") or {}
    for service in environment.services_on(host):
        record = state.services.get(service.name)
        if record is None:
            rows.append(Drift(host, "service", service.name, "never deployed (no service record)"))
            continue
        if service.name in images and record.get("image") != images[service.name]:
            rows.append(Drift(host, "service", service.name,
                              f"runs {record.get('image')}, release {release['release']} "
                              f"deployed {images[service.name]}"))
        digest = state.digests.get(record.get("image", ""))
        if record.get("digest") and digest and digest != record["digest"]:
            rows.append(Drift(host, "image", service.name,
                              f"{record.get('image')} is now {digest[:19]}, the release pulled "
                              f"{record['digest'][:19]}"))
        if record.get("hash") and content_hashes.get(service.name) not in (None, record["hash"]):
            unjudged.add(service.name)
            rows.append(Drift(host, "service", service.name,
                              "the repo renders another configuration than the one deployed "
                              "(an undeployed change?): its files were not compared"))
    return rows, unjudged


def host_drift(environment: Environment, host: str, state: HostState,
               files: Sequence[RenderedFile], release: dict | None,
               content_hashes: dict[str, str]) -> list[Drift]:
    """Every difference between `host` and its last release (`files` rendered for it)."""
    if release is None:
        return [Drift(host, "release", "-", "no successful release in the ledger")]
    rows, unjudged = record_drift(environment, host, state, release, content_hashes)
    skip_units = {f"service:{s}" for s in unjudged} | {f"route:{s}" for s in unjudged}
    rows += file_drift(host, state, files, skip_units)
    rows += container_drift(host, state, files, skip_units)
    return rows


def moved_tags(release: dict, now: dict[str, str]) -> list[Drift]:
    """A tag that points elsewhere in the registry than when the release deployed it: the
    running containers keep the recorded bits (they run by digest); the next deploy of that
    tag would run the new ones. `now`: tag ref -> digest the registry answers today."""
    rows = []
    recorded = release.get("image_digests") or {}
    for service, ref in sorted((release.get("images") or {}).items()):
        then, today = recorded.get(service), now.get(ref)
        if then and today and then != today:
            rows.append(Drift("registry", "tag", service,
                              f"{ref} now points to {today.removeprefix('sha256:')[:12]}; the "
                              f"release runs {then.removeprefix('sha256:')[:12]} (kept: the "
                              "hosts run by digest; the next deploy of this tag would switch)"))
    return rows


def format_drift(rows: Sequence[Drift]) -> str:
    return format_table(("host", "kind", "what", "drift"),
                        [(r.host, r.kind, r.subject, r.detail) for r in rows])
