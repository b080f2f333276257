"""Rendered-file type, host paths and the jinja2 environment shared by every artifact.

Pure: nothing here touches a host, Vault or a subprocess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

BASE = "/opt/superapp"
COMPOSE_DIR = f"{BASE}/compose"
TRAEFIK_DIR = f"{BASE}/traefik"
TRAEFIK_DYNAMIC_DIR = f"{TRAEFIK_DIR}/dynamic"
PROMETHEUS_DIR = f"{BASE}/prometheus"
ALERTMANAGER_DIR = f"{BASE}/alertmanager"
BLACKBOX_DIR = f"{BASE}/blackbox"
GRAFANA_DIR = f"{BASE}/grafana"
REDIS_DIR = f"{BASE}/redis"
ENV_DIR = "/etc/superapp/env"
DATA_DIR = "/var/lib/superapp"
TEXTFILE_DIR = "/var/lib/node_exporter/textfile"


@dataclass(frozen=True)
class RenderedFile:
    """One file for one host.

    `secret` files hold secret values: never diff, print or log their content. `owner` is the
    uid that must own the file (0 = root); a 0600 file read by a non-root container process is
    owned by that process's uid.
    """

    path: str
    content: str
    mode: int = 0o644
    secret: bool = False
    owner: int = 0
    # What the deploy does when the file changes: `service:<name>` (swap the service's slot),
    # `route:<name>` (Traefik server list, switched by the rollout), or an in-place unit:
    # edge, data, databases, monitoring, prometheus, alertmanager, grafana, backup.
    unit: str = ""
    # Written only once its unit was applied: a record that the apply finished (a run that
    # died before then leaves it stale, so the next run applies the unit again).
    after_apply: bool = False

    def __repr__(self) -> str:  # keep secret content out of tracebacks and test output
        body = "<secret>" if self.secret else f"{len(self.content)} chars"
        return f"RenderedFile({self.path!r}, {body}, mode={oct(self.mode)}, owner={self.owner})"


def quote(value: object) -> str:
    """A YAML scalar that means exactly `value` (JSON is a subset of YAML)."""
    return json.dumps(value, ensure_ascii=False)


@cache
def jinja_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - YAML/shell/conf, not HTML; values go through `q`
    )
    env.filters["q"] = quote
    return env


def render_template(name: str, **context: object) -> str:
    return jinja_env().get_template(name).render(**context)


def relative_to_compose(path: str) -> str:
    """A host path relative to the compose directory.

    Compose resolves relative paths from the compose file's directory, so the same file points
    at `/etc/superapp/env/x.env` on a host and at `<out>/<host>/etc/superapp/env/x.env` in a
    rendered tree, where `docker compose config` can then check it as is.
    """
    depth = len(Path(COMPOSE_DIR).parts) - 1
    return "../" * depth + path.lstrip("/")


def write_tree(root: Path, rendered: dict) -> None:
    """Write files under root/<host>/...; secret files 0600 (owners are the deploy's job)."""
    for host, files in rendered.items():
        for file in files:
            target = root / host / file.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content, encoding="utf-8")
            os.chmod(target, file.mode)


def cron(title: str, lines: list[str], source: str = "ops/render/pitr.py") -> str:
    """An /etc/cron.d file: `title` and `source` (the module that renders it) in its header."""
    return render_template("pitr/cron.j2", title=title, lines=lines, source=source)
