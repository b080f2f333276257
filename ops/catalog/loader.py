"""Read, merge and validate the catalog and one environment's group_data.

The only entry point deploy code needs is `load_environment`. Files are read without executing
them (group_data is parsed as literal assignments), every error is collected with its file and
key path, and one `ConfigError` is raised before anything else happens.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ops import yamlio
from ops.catalog import rules
from ops.catalog.errors import ConfigError, Problems
from ops.catalog.group_data_schema import GROUP_DATA
from ops.catalog.model import Catalog, Environment, Host, Resources, Service, Sidecar
from ops.catalog.services_schema import CATALOG, DEFAULTS, SERVICE
from ops.catalog.testbed_fleet import with_testbed_hosts

if TYPE_CHECKING:
    from ops.dbha.model import Cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_FILE = "ops/catalog/services.yml"
GROUP_DATA_DIR = "group_data"
LOWERCASE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def read_group_data_file(path: Path, label: str, problems: Problems) -> dict[str, Any]:
    """Top-level literal assignments of a group_data file, as pyinfra would see them.

    Parsed with `ast.literal_eval`, never executed: group_data holds data, not logic.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        problems.add(label, "", f"line {exc.lineno}: syntax error: {exc.msg}")
        return {}
    data: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring or bare string: documentation
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if not (isinstance(target, ast.Name) and len(node.targets) == 1):
            problems.add(label, "", f"line {node.lineno}: only `name = <literal>` assignments "
                                    "are allowed (group_data holds data, not logic)")
            continue
        if not LOWERCASE_NAME.fullmatch(target.id):
            problems.add(label, target.id, "names must be lowercase identifiers")
            continue
        try:
            data[target.id] = ast.literal_eval(node.value)
        except ValueError:
            problems.add(label, target.id, f"line {node.lineno}: value must be a literal "
                                           "(str, int, bool, None, list, dict)")
    return data


def load_catalog(root: Path = REPO_ROOT, problems: Problems | None = None) -> Catalog:
    """Load and validate `ops/catalog/services.yml` (defaults merged into each entry)."""
    own = problems is None
    problems = problems if problems is not None else Problems()
    try:
        raw = yamlio.load((root / CATALOG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        problems.add(CATALOG_FILE, "", f"cannot read: {exc}")
        raw = {}
    errors: list[tuple[str, str]] = []
    top = CATALOG.check(raw, "", errors)
    if isinstance(top, dict) and isinstance(top.get("defaults"), dict):
        DEFAULTS.check(top["defaults"], "defaults", errors)
    services: dict[str, Service] = {}
    entries = top.get("services") if isinstance(top, dict) else None
    for name, entry in (entries or {}).items():
        if not isinstance(entry, dict):
            errors.append((f"services.{name}", "must be a mapping"))
            continue
        merged = {**(top.get("defaults") or {}), **entry}
        before = len(errors)
        checked = SERVICE.check(merged, f"services.{name}", errors)
        if len(errors) == before:
            services[name] = build_service(name, checked)
    problems.extend(CATALOG_FILE, errors)
    if not errors:
        problems.extend(CATALOG_FILE, rules.check_catalog(services))
    if own:
        problems.raise_if_any()
    return Catalog(services=services, path=CATALOG_FILE)


def build_service(name: str, data: dict[str, Any]) -> Service:
    sidecars = {
        sc_name: Sidecar(
            name=sc_name,
            command=tuple(sc["command"]),
            singleton=sc["singleton"],
            inherit_env=sc["inherit_env"],
            url_env=sc["url_env"],
            secret_env=dict(sc["secret_env"]),
            resources=Resources(**sc["resources"]) if sc["resources"] else None,
            health_command=tuple(sc["health_command"]) if sc["health_command"] else None,
        )
        for sc_name, sc in data["sidecars"].items()
    }
    return Service(
        name=name,
        image=data["image"],
        port=data["port"],
        health_path=data["health_path"],
        database=data["database"],
        has_alembic=data["has_alembic"],
        migrate_command=tuple(data["migrate_command"]) if data["migrate_command"] else None,
        schema_bootstrap_command=(tuple(data["schema_bootstrap_command"])
                                  if data["schema_bootstrap_command"] else None),
        hmac_role=data["hmac_role"],
        jwt_mode=data["jwt_mode"],
        admin_token=data["admin_token"],
        routes=tuple(data["routes"]),
        secrets=dict(data["secrets"]),
        env_from_settings=dict(data["env_from_settings"]),
        sidecars=sidecars,
        dashboard=data["dashboard"],
        error_tracking=data["error_tracking"],
        extra_dashboards=tuple(data["extra_dashboards"]),
        resources=Resources(**data["resources"]),
        health_timeout_seconds=data["health_timeout_seconds"],
        stop_grace_seconds=data["stop_grace_seconds"],
        edge={k: v for k, v in data["edge"].items() if v is not None},
    )


def load_group_data(env: str, root: Path, problems: Problems) -> tuple[dict, dict[str, str]]:
    """Merge `all.py` then `<env>.py` by top-level key (pyinfra's precedence).

    Returns the merged data and, per key, the file that set it (for error messages).
    """
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    env_label = f"{GROUP_DATA_DIR}/{env}.py"
    for label in (f"{GROUP_DATA_DIR}/all.py", env_label):
        path = root / label
        if not path.is_file():
            problems.add(label, "", "file not found" + (
                "" if label != env_label else f" (no environment named {env!r})"))
            continue
        for key, value in read_group_data_file(path, label, problems).items():
            merged[key] = value
            origin[key] = label
    return merged, origin


def load_environment(env: str, root: Path = REPO_ROOT) -> Environment:
    """Load the catalog and `group_data` for `env`; validate everything; raise one ConfigError.

    `root` is the repository root (tests pass a temporary copy with a broken file). Hosts a
    testbed started beyond those group_data lists (`testbed_fleet`, local only) are added
    before the rules run, so they are checked like the listed ones.
    """
    root = Path(root)
    problems = Problems()
    catalog = load_catalog(root, problems)
    env_label = f"{GROUP_DATA_DIR}/{env}.py"
    raw, origin = load_group_data(env, root, problems)
    if not (root / env_label).is_file():
        problems.raise_if_any()  # nothing more to say about an environment that does not exist

    errors: list[tuple[str, str]] = []
    settings = GROUP_DATA.check(raw, "", errors)
    for path, message in errors:
        key = path.split(".", 1)[0]
        problems.add(origin.get(key, env_label), path, message)
    if problems.lines:
        raise ConfigError(problems.lines)
    started = with_testbed_hosts(settings, catalog.services)
    if len(started["hosts"]) > len(settings["hosts"]):  # the placement is testbed_fleet's now
        origin["placement"] = origin["testbed_fleet"]
    settings = started

    for path, message in rules.check_environment(env, catalog.services, settings):
        problems.add(origin.get(path.split(".", 1)[0], env_label), path, message)
    problems.extend(CATALOG_FILE, rules.check_schema_provisioning(env, catalog.services))
    cluster = load_cluster(settings, origin.get("db_ha", env_label), problems)
    problems.raise_if_any()

    hosts = tuple(
        Host(name=h["name"], address=h["address"], roles=tuple(h["roles"]),
             public_address=h["public_address"] or h["address"],
             placement_group=h["placement_group"] or "")
        for h in settings["hosts"]
    )
    return Environment(
        name=env,
        catalog=catalog,
        settings=settings,
        hosts=hosts,
        placement=rules.resolve_placement(catalog.services, settings),
        singleton_hosts=rules.resolve_singletons(catalog.services, settings),
        setting_files=origin,
        db_ha=cluster,
    )


def load_cluster(settings: dict[str, Any], label: str, problems: Problems) -> Cluster | None:
    """The Patroni cluster `db_ha` describes, its names resolved to the hosts' addresses; the
    routers are the app hosts (each runs one). The members are exactly the hosts with role
    `db`: with `db_ha` Patroni runs every PostgreSQL, and a db host outside the cluster would
    be a second, unreplicated primary."""
    if settings.get("db_ha") is None:
        return None
    from ops.dbha.model import DbHaError, cluster_from_settings  # ops.dbha imports ops.catalog
    hosts = settings["hosts"]
    db = [h["name"] for h in hosts if "db" in h["roles"]]
    if sorted(db) != sorted(settings["db_ha"]["members"]):
        problems.add(label, "db_ha.members", f"must be the hosts with role 'db' "
                                             f"({', '.join(db) or 'none'})")
    try:
        return cluster_from_settings(
            settings["db_ha"], {h["name"]: h["address"] for h in hosts},
            routers=[h["name"] for h in hosts if "app" in h["roles"]], source=label,
            local_network=settings["docker_network"]["subnet"])
    except DbHaError as e:
        problems.lines.extend(e.problems)
        return None


__all__ = ["ConfigError", "REPO_ROOT", "load_catalog", "load_environment"]
