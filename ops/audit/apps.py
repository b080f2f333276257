"""Rules over a checkout of the Super-App monorepo (`--apps PATH`: `apps/<service>/...`).

- `apps.env-file`: a `.env` (or `.env.*`) under `apps/*`; only `.env.example` is allowed. In a
  git checkout only tracked files count (what is committed); otherwise every file.
- `apps.create-all-without-alembic`: a service whose code calls SQLAlchemy `create_all` and has
  no Alembic (`alembic/` directory or `alembic.ini` anywhere under `apps/<service>/`).
- `apps.schema-unprovisioned`: a service of our catalog that prod runs with
  `AUTO_CREATE_SCHEMA=false` but that has no migrate command in the catalog and no Alembic in
  the monorepo: nothing creates its schema, it must be provisioned another way (out-of-band).
  A service that declares `schema_bootstrap_command` is not reported here: the loader
  requires it in prod and staging, and `rendered.schema-bootstrap` lists those services.
- `apps.deploy-template-hmac`: `ops/deploy/compose-traefik/docker-compose.yml` must set
  `INTERNAL_REQUIRE_HMAC=true` in the payments service's environment.

With the secret scans (`check_apps_tree_secrets`, `check_apps_history`: the CLI runs them, the
preflight does not), detect-secrets over the monorepo, as ops/audit/repository.py does here:
- `apps.secret-in-tree`: a secret in a tracked file (file:line);
- `apps.secret-in-history`: a secret in any blob of `git log --all` (commit:file:line);
- `apps.env-file-in-history`: a `.env` file that was ever committed.
Only an entry of the monorepo's own `.secrets.baseline` marked `is_secret: false` silences a
secret; without a baseline every detected secret is a finding. Never names a secret's value.

Reads files only (and `git ls-files`/`git log` when the checkout is a git repository).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from ops.audit.findings import Finding
from ops.audit.repository import SecretRules, check_history, check_tree_secrets, is_env_file
from ops.audit.yamlpos import load_located
from ops.catalog.model import Environment

DEPLOY_TEMPLATE = "ops/deploy/compose-traefik/docker-compose.yml"
CREATE_ALL = re.compile(r"\bcreate_all\s*\(")
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox"}
PAYMENTS_TEMPLATE_NAMES = ("payments", "payments-api", "payments_api")
SECRET_RULES = SecretRules(
    tree_rule="apps.secret-in-tree", history_rule="apps.secret-in-history",
    env_file_rule="apps.env-file-in-history", pem_rule=None,
    baseline_missing_rule=None, unreviewed_rule=None,
    false_positive_fix="in the monorepo, add it to .secrets.baseline (`detect-secrets scan "
                       "--baseline .secrets.baseline`) and mark it is_secret: false "
                       "(`detect-secrets audit .secrets.baseline`)")


def monorepo_files(apps_root: Path) -> list[str]:
    """Files of the checkout relative to its root: tracked files in git, else every file."""
    try:
        out = subprocess.run(["git", "-C", str(apps_root), "ls-files", "-z"], check=True,
                             capture_output=True, text=True).stdout
        if (apps_root / ".git").exists():
            return sorted(p for p in out.split("\0") if p)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pass
    return sorted(p.relative_to(apps_root).as_posix() for p in apps_root.rglob("*")
                  if p.is_file() and not SKIP_DIRS & set(p.relative_to(apps_root).parts))


def audit_apps(apps_root: Path, environment: Environment | None) -> list[Finding]:
    apps_root = Path(apps_root)
    files = monorepo_files(apps_root)
    out: list[Finding] = []
    services: dict[str, list[str]] = {}
    for rel in files:
        parts = rel.split("/")
        if len(parts) >= 3 and parts[0] == "apps":
            services.setdefault(parts[1], []).append(rel)
    if not (apps_root / "apps").is_dir():
        out.append(Finding("apps.layout", "high", str(apps_root),
                           "not a Super-App checkout: no apps/ directory",
                           "pass --apps the monorepo root", key=str(apps_root)))
    for rel in files:
        if rel.startswith("apps/") and is_env_file(rel):
            out.append(Finding("apps.env-file", "high", rel, f"{rel} is committed",
                               "delete it (keep only .env.example), inject secrets at deploy "
                               "time, rotate every value it held", key=rel))
    alembic = {name: has_alembic(apps_root, rel_files) for name, rel_files in services.items()}
    for name, rel_files in sorted(services.items()):
        calls = create_all_calls(apps_root, rel_files)
        if calls and not alembic[name]:
            rel, line = calls[0]
            out.append(Finding("apps.create-all-without-alembic", "high", f"{rel}:{line}",
                               f"apps/{name} creates its schema with SQLAlchemy create_all and "
                               "has no Alembic (alembic/ or alembic.ini); prod sets "
                               "AUTO_CREATE_SCHEMA=false, so nothing creates its tables",
                               f"add Alembic migrations to apps/{name} (make scaffold-alembic)",
                               key=f"apps/{name}"))
    if environment is not None:
        for name, svc in environment.services.items():
            if name not in services:
                out.append(Finding("apps.service-missing", "low", f"apps/{name}",
                                   f"catalog service {name} has no apps/{name} in the monorepo",
                                   "check the service name in ops/catalog/services.yml",
                                   key=f"apps/{name}"))
            elif (not svc.migrate_command and not alembic[name]
                  and not svc.schema_bootstrap_command):
                out.append(Finding(
                    "apps.schema-unprovisioned", "high",
                    f"ops/catalog/services.yml services.{name}",
                    f"{name}: prod runs AUTO_CREATE_SCHEMA=false but there is no migrate "
                    f"command in the catalog and no Alembic in apps/{name}: its schema must be "
                    "provisioned another way (out-of-band) before the deploy",
                    "add Alembic to the service and `migrate_command` to the catalog, or "
                    "provision the schema out-of-band and waive this finding with the date",
                    key=f"services.{name}"))
            elif not svc.migrate_command and alembic[name]:
                out.append(Finding(
                    "apps.schema-unprovisioned", "medium",
                    f"ops/catalog/services.yml services.{name}",
                    f"apps/{name} has Alembic but the catalog has no migrate_command",
                    "set has_alembic: true and migrate_command in ops/catalog/services.yml",
                    key=f"services.{name}"))
    out += check_deploy_template(apps_root)
    return out


def has_alembic(root: Path, rel_files: list[str]) -> bool:
    """An `alembic/` directory (with files) or an `alembic.ini` anywhere under the service."""
    return any(p.endswith("/alembic.ini") or "/alembic/" in p for p in rel_files)


def create_all_calls(root: Path, rel_files: list[str]) -> list[tuple[str, int]]:
    calls = []
    for rel in rel_files:
        if not rel.endswith(".py") or "/alembic/" in rel or "/tests/" in rel:
            continue
        try:
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if CREATE_ALL.search(line) and not line.lstrip().startswith("#"):
                calls.append((rel, number))
    return calls


def check_deploy_template(root: Path) -> list[Finding]:
    path = root / DEPLOY_TEMPLATE
    if not path.is_file():
        return [Finding("apps.deploy-template-hmac", "medium", DEPLOY_TEMPLATE,
                        "deploy template not found: cannot check INTERNAL_REQUIRE_HMAC",
                        "check the --apps path", key=DEPLOY_TEMPLATE)]
    try:
        doc = load_located(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return [Finding("apps.deploy-template-hmac", "high", DEPLOY_TEMPLATE,
                        f"not valid YAML: {exc}", "fix the template", key=DEPLOY_TEMPLATE)]
    services = (doc.data or {}).get("services") or {}
    names = [n for n in PAYMENTS_TEMPLATE_NAMES if n in services]
    if not names:
        return [Finding("apps.deploy-template-hmac", "high", f"{DEPLOY_TEMPLATE}:1",
                        "no payments service in the deploy template",
                        "add the payments API with INTERNAL_REQUIRE_HMAC=true",
                        key=DEPLOY_TEMPLATE)]
    out = []
    for name in names:
        env = (services[name] or {}).get("environment") or {}
        value, line = None, doc.line("services", name, "environment") or doc.line(
            "services", name)
        if isinstance(env, list):
            for i, item in enumerate(env):
                key, _, val = str(item).partition("=")
                if key.strip() == "INTERNAL_REQUIRE_HMAC":
                    value, line = val.strip(), doc.line("services", name, "environment", i)
        elif isinstance(env, dict) and "INTERNAL_REQUIRE_HMAC" in env:
            raw = env["INTERNAL_REQUIRE_HMAC"]
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
            line = doc.line("services", name, "environment", "INTERNAL_REQUIRE_HMAC")
        if value is None or value.strip().strip("'\"").lower() != "true":
            got = "unset" if value is None else repr(value)
            out.append(Finding("apps.deploy-template-hmac", "high", f"{DEPLOY_TEMPLATE}:{line}",
                               f"services.{name}.environment.INTERNAL_REQUIRE_HMAC is {got}",
                               "set INTERNAL_REQUIRE_HMAC=true under the payments API env",
                               key=f"{DEPLOY_TEMPLATE}:{name}"))
    return out


def check_apps_tree_secrets(apps_root: Path) -> list[Finding]:
    """detect-secrets over the monorepo's tracked files (every file outside git)."""
    apps_root = Path(apps_root)
    return check_tree_secrets(apps_root, monorepo_files(apps_root), SECRET_RULES)


def check_apps_history(apps_root: Path) -> list[Finding]:
    """detect-secrets over every blob of the monorepo's git history (none outside git: a
    directory inside another repository must not scan that repository's history)."""
    apps_root = Path(apps_root)
    if not (apps_root / ".git").exists():
        return []
    return check_history(apps_root, SECRET_RULES)
