"""What a host holds now, read in ONE command: managed files' hashes, containers, images, lock.

A no-op deploy must cost little more than connecting (each SSH command costs about 120 ms on
the testbed), so the deploy never asks a host file by file: it reads this snapshot and compares
it with what it rendered. Pure: the script is text and the parser a function tested against a
recorded run; the pyinfra fact that runs it is `ops.host.facts.SuperappHostState`.

Never reads file contents: only sha256 sums, so no secret value crosses the wire back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ops.images.refs import parse_ref

MANAGED_DIRS = ("/opt/superapp", "/etc/superapp")
CRON_GLOB = "/etc/cron.d/superapp-*"
LEDGER_PATH = "/var/lib/superapp/releases.jsonl"
SERVICE_STATE_DIR = "/var/lib/superapp/services"
INTENT_SUFFIX = ".next"  # `<service>.json.next`: the slot a swap in progress moves to
ROUTES_DIR = "/opt/superapp/traefik/dynamic"
LIVE_SLOT_MARK = "# superapp-live-slot: "  # the route file's line naming the slot it serves
CANARY_MARK = "# superapp-canary: "  # ... and, during a canary, the new slot and its weight
# The rollout's slot/version info for Prometheus (ops/render/slot_metrics.py): hashed like the
# managed files, so a host whose file is missing or stale is a change
SLOT_INFO_PATH = "/var/lib/node_exporter/textfile/superapp_services.prom"

# "lock": recordings made when the lock lived on a host (ignored)
SECTIONS = ("files", "containers", "container_images", "images", "services", "intents",
            "routes", "canaries", "ledger", "lock")


def state_script(root: str = "") -> str:
    """One POSIX sh script; each section starts with a marker line. Missing docker or dirs are
    fine (a fresh host): the section is then empty. `root` prefixes every path (tests run the
    script against a directory tree made for them; hosts use "")."""
    managed = " ".join(root + d for d in MANAGED_DIRS)
    return "; ".join([
        "echo '@@files'",
        f"find {managed} -type f -exec sha256sum {{}} + 2>/dev/null",
        f"for f in {root}{CRON_GLOB} {root}{SLOT_INFO_PATH}; do [ -f \"$f\" ] && "
        "sha256sum \"$f\"; done",
        "echo '@@containers'",
        "docker ps -a --format '{{json .}}' 2>/dev/null",
        # the reference each container was created from (`docker ps` shows a local tag of the
        # image instead, which hides a `tag@sha256:` pin)
        "echo '@@container_images'",
        "docker ps -aq 2>/dev/null | xargs -r docker inspect --format "
        "'{{.Name}} {{.Config.Image}}' 2>/dev/null",
        "echo '@@images'",
        "docker image ls --digests --format '{{json .}}' 2>/dev/null",
        "echo '@@services'",
        f"for f in {root}{SERVICE_STATE_DIR}/*.json; do [ -f \"$f\" ] && cat \"$f\" && echo; "
        "done",
        "echo '@@intents'",
        f"for f in {root}{SERVICE_STATE_DIR}/*.json{INTENT_SUFFIX}; do [ -f \"$f\" ] && "
        "cat \"$f\" && echo; done",
        "echo '@@routes'",
        f"grep -H '^{LIVE_SLOT_MARK}' {root}{ROUTES_DIR}/*.yml 2>/dev/null",
        "echo '@@canaries'",
        f"grep -H '^{CANARY_MARK}' {root}{ROUTES_DIR}/*.yml 2>/dev/null",
        "echo '@@ledger'",
        f"cat {root}{LEDGER_PATH} 2>/dev/null",  # all of it: history is never compacted
        "true",
    ])


STATE_SCRIPT = state_script()


def held_percent(intent: dict) -> int | None:
    """The percent a held canary stays at (`--data canary=hold` marks its swap intents so);
    None for the intent of a swap in progress or interrupted."""
    held = intent.get("held")
    return held if isinstance(held, int) and not isinstance(held, bool) else None


@dataclass
class Container:
    name: str
    image: str
    state: str  # running, exited, created...
    status: str  # "Up 3 minutes (healthy)"
    labels: dict[str, str]

    @property
    def health(self) -> str:
        for word in ("healthy", "unhealthy", "starting"):
            if f"({word})" in self.status or f"(health: {word})" in self.status:
                return word
        return "none" if self.state == "running" else self.state


@dataclass
class HostState:
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    containers: dict[str, Container] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)  # "repo:tag" present on the host
    digests: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> "sha256:..."
    repo_digests: set[str] = field(default_factory=set)  # "repo@sha256:..." present
    services: dict[str, dict] = field(default_factory=dict)  # service -> live slot record
    # service -> record of the slot a swap in progress moves to (written before it starts)
    intents: dict[str, dict] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # service -> slot its route serves
    canaries: dict[str, str] = field(default_factory=dict)  # service -> "<new slot> <weight>"
    ledger: list[dict] = field(default_factory=list)


def has_image(state: HostState, ref: str) -> bool:
    """Whether the host holds `ref`: by its digest when pinned (`repo:tag@sha256:...`: Docker
    pulls those by digest, untagged), by `repo:tag` otherwise."""
    image = parse_ref(ref)
    return image.by_digest in state.repo_digests if image.digest else ref in state.images


def parse_host_state(lines: list[str]) -> HostState:
    """Parses STATE_SCRIPT's output. Unknown or broken lines are ignored, never fatal."""
    state = HostState()
    section = None
    created_from: dict[str, str] = {}  # container -> the reference it was created from
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith("@@") and line[2:] in SECTIONS:
            section = line[2:]
            continue
        if not line.strip():
            continue
        if section == "files":
            digest, _, path = line.partition("  ")
            if len(digest) == 64 and path:
                state.files[path] = digest
        elif section == "containers":
            row = _json(line)
            if row:
                labels = dict(
                    kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv
                )
                state.containers[row["Names"]] = Container(
                    row["Names"], row.get("Image", ""), row.get("State", ""),
                    row.get("Status", ""), labels)
        elif section == "images":
            row = _json(line)
            digest = (row or {}).get("Digest", "<none>")
            if row and digest not in (None, "<none>"):
                state.repo_digests.add(f"{row['Repository']}@{digest}")
            if row and row.get("Tag") not in (None, "<none>"):
                ref = f"{row['Repository']}:{row['Tag']}"
                state.images.add(ref)
                if digest not in (None, "<none>"):
                    state.digests[ref] = digest
        elif section == "services":
            row = _json(line)
            if row and "service" in row:
                state.services[row["service"]] = row
        elif section == "intents":
            row = _json(line)
            if row and "service" in row:
                state.intents[row["service"]] = row
        elif section == "routes":
            path, _, slot = line.partition(":" + LIVE_SLOT_MARK)
            name = path.rsplit("/", 1)[-1].removesuffix(".yml")
            if path.endswith(".yml") and slot.strip():
                state.routes[name] = slot.strip()
        elif section == "canaries":
            path, _, mark = line.partition(":" + CANARY_MARK)
            if path.endswith(".yml") and mark.strip():
                state.canaries[path.rsplit("/", 1)[-1].removesuffix(".yml")] = mark.strip()
        elif section == "container_images":
            name, _, image = line.strip().partition(" ")
            created_from[name.lstrip("/")] = image
        elif section == "ledger":
            row = _json(line)
            if row:
                state.ledger.append(row)
    for name, image in created_from.items():
        if name in state.containers and image:
            state.containers[name].image = image
    return state


def _json(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
