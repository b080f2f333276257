"""Remember that a rendered tree passed validation, so the same bytes are not checked again.

Every deploy that changes a host checks that host's changed files with the real tools first
(ops.validate: Traefik started on a loopback copy, docker compose, promtool...): 3-6 s per
changed host on the testbed, mostly Traefik starting and stopping, for a verdict that only
depends on the files' bytes, the tools and the checking code. The crash cells, the rotation
phases and every redeploy of the same release check the very same files again. A pass is
remembered as an empty file named by the digest of exactly those inputs (see `tree_digest`);
a failure is never remembered, so a refusal always comes from a fresh check.

Same rules as the audit's remembered passes (ops/passes.py): the user's own 0700
directory (`$SUPERAPP_VALIDATE_CACHE`, default `~/.cache/superapp/validate-passed`), digests
only, and a cache that cannot be read or written only costs the time of the check.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ops import passes
from ops.catalog.model import Environment
from ops.render.prometheus import render_rule_tests

CACHE_ENV = "SUPERAPP_VALIDATE_CACHE"
FORMAT = 1  # bump when what a digest covers changes
OPS = Path(__file__).resolve().parent
# Every validator binary ops.validate may start: a new version of any is a new digest.
TOOLS = ("traefik", "promtool", "amtool", "prometheus-blackbox-exporter", "rsyslogd", "nft",
         "docker-compose")


def cache_dir() -> Path:
    return passes.cache_dir(CACHE_ENV, "validate-passed")


@functools.cache
def code_digest() -> str:
    """The checking code: every Python file of ops/ (the validators' own logic, the rule
    tests' renderer, the Grafana models), read once per process."""
    digest = hashlib.sha256()
    for path in sorted(OPS.rglob("*.py")):
        digest.update(f"\0{path.relative_to(OPS)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tool_identities(find: Callable[[str], str]) -> list[str]:
    """Path, size and modification time of each validator `find` locates ("missing" if not)."""
    out = []
    for name in TOOLS:
        try:
            path = find(name)
        except Exception:  # noqa: BLE001 - any lookup failure: the check itself will say
            out.append(f"{name} missing")
            continue
        try:
            stat = Path(path).stat()
            out.append(f"{name} {path} {stat.st_size} {stat.st_mtime_ns}")
        except OSError:
            out.append(f"{name} {path} unreadable")
    return out


def tree_digest(root: Path, environment: Environment, tools: list[str]) -> str:
    """Every input of `validate_tree(root, environment)`: each file under `root` (its path
    there and its bytes), the environment's name and settings, the alert rule tests rendered
    from its catalog, the validators and the checking code."""
    digest = hashlib.sha256()
    # the rule tests promtool runs beside a prometheus.yml come from the catalog, not the tree
    tests = (render_rule_tests(environment) if any(root.rglob("prometheus.yml")) else {})
    digest.update(json.dumps([FORMAT, environment.name, environment.settings, tools,
                              code_digest(), tests], sort_keys=True, default=str).encode())
    passes.add_files(digest, root,
                     sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()))
    return digest.hexdigest()


def validate_unless_passed(root: Path, environment: Environment,
                           validate: Callable[[Path, Environment], object],
                           find: Callable[[str], str],
                           directory: Path | None = None) -> bool:
    """Run `validate(root, environment)` (it raises on a failure) unless the same inputs
    passed before; True when it ran. A pass is remembered, a failure propagates."""
    directory = directory or cache_dir()
    digest = tree_digest(Path(root), environment, tool_identities(find))
    if passes.passed_before(directory, digest):
        return False
    validate(root, environment)
    passes.remember_pass(directory, digest)
    return True
