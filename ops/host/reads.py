"""Extra host reads for the dry run, drift and status: each ONE command (facts in ops.host.facts).

- `FileContents`: the text of named non-secret files (dry run diffs). Refuses any path under
  a directory that holds secrets, so no secret file's content ever crosses the wire back.
- `ContainerDetails`: per container, only name, state, start/finish times, health and image
  (never `docker inspect`'s whole record, whose `Config.Env` holds the env files' secrets).
- `ContainerLogs`: the last lines of named containers' logs (`--data logs=<service>`).

Command building and parsing are pure functions, tested against recorded output; the pyinfra
facts that run them are in `ops.host.facts`.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from ops.render.files import ENV_DIR

# Files under these hold secrets (env files); other secret files are refused by name below.
SECRET_DIRS = (ENV_DIR,)


def file_contents_command(paths: Sequence[str], secret_paths: Sequence[str] = ()) -> str:
    """`@@file <path>` then the file base64-encoded on one line (`@@missing <path>` if absent)."""
    for path in paths:
        if path in secret_paths or any(path.startswith(d + "/") for d in SECRET_DIRS):
            raise ValueError(f"{path} holds secrets: its content is never read from a host")
    parts = [f"if [ -f {q} ]; then echo {shlex.quote('@@file ' + p)}; base64 -w0 {q}; echo; "
             f"else echo {shlex.quote('@@missing ' + p)}; fi"
             for p in paths for q in [shlex.quote(p)]]
    return "; ".join([*parts, "true"])


def parse_file_contents(lines: Sequence[str]) -> dict[str, str | None]:
    """path -> text (None: absent or unreadable)."""
    out: dict[str, str | None] = {}
    current = None
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith("@@missing "):
            out[line[len("@@missing "):]] = None
            current = None
        elif line.startswith("@@file "):
            current = line[len("@@file "):]
            out[current] = ""
        elif current is not None:
            try:
                out[current] = base64.b64decode(line.strip(), validate=True).decode(
                    "utf-8", "replace")
            except (binascii.Error, ValueError):
                out[current] = None
            current = None
    return out



# ---------------------------------------------------------------------------------------------

DETAILS_FORMAT = (
    '{"name":{{json .Name}},"state":{{json .State.Status}},"exit":{{json .State.ExitCode}},'
    '"started":{{json .State.StartedAt}},"finished":{{json .State.FinishedAt}},'
    '"health":{{if .State.Health}}{{json .State.Health.Status}}{{else}}""{{end}},'
    '"image":{{json .Config.Image}},"image_id":{{json .Image}},'
    '"labels":{{json .Config.Labels}}}'
)


def container_details_command() -> str:
    return ("docker ps -aq 2>/dev/null | xargs -r docker inspect --format "
            + shlex.quote(DETAILS_FORMAT) + " 2>/dev/null; true")


@dataclass
class ContainerDetail:
    name: str
    state: str  # running, exited, created, restarting, paused, dead
    exit_code: int
    started: str  # RFC 3339
    finished: str
    health: str  # healthy, unhealthy, starting, "" (no health check)
    image: str
    image_id: str
    labels: dict[str, str] = field(default_factory=dict)


def parse_container_details(lines: Sequence[str]) -> dict[str, ContainerDetail]:
    out = {}
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not row.get("name"):
            continue
        name = row["name"].lstrip("/")
        out[name] = ContainerDetail(
            name, row.get("state", ""), int(row.get("exit") or 0), row.get("started", ""),
            row.get("finished", ""), row.get("health") or "", row.get("image", ""),
            row.get("image_id", ""), row.get("labels") or {})
    return out



# ---------------------------------------------------------------------------------------------

def container_logs_command(containers: Sequence[str], lines: int) -> str:
    parts = [f"echo {shlex.quote('@@logs ' + c)}; "
             f"docker logs --tail {int(lines)} {shlex.quote(c)} 2>&1" for c in containers]
    return "; ".join([*parts, "true"])


def parse_container_logs(lines: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith("@@logs "):
            current = line[len("@@logs "):]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out
