"""Turn a validated Environment into pyinfra inventory groups (called by inventories/<env>.py)."""

from __future__ import annotations

from typing import Any

from ops.catalog.model import ROLES, Environment


def inventory_groups(environment: Environment) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """pyinfra groups keyed by role, hosts in rollout order, as `(name, host data)`.

    Host data is the address only: roles and rollout order live in the validated environment
    (`Environment.hosts`), which every stage reads, never in pyinfra's host data.

    Example, in `inventories/prod.py`::

        environment = load_environment("prod")
        globals().update(inventory_groups(environment))  # app = [...], db = [...], ...
    """
    return {
        role: [
            (host.name, {"ssh_hostname": host.address})
            for host in environment.hosts
            if host.has_role(role)
        ]
        for role in ROLES
    }


def inventory_for(env: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """`inventory_groups` of a validated environment, for `inventories/<env>.py`.

    Invalid data stops pyinfra here with the loader's one message (file and key) rather than a
    traceback from inside the inventory file.
    """
    from ops.catalog.errors import ConfigError
    from ops.catalog.loader import load_environment

    try:
        return inventory_groups(load_environment(env))
    except ConfigError as e:
        raise SystemExit(f"--> refusing to deploy {env}: invalid configuration\n{e}") from None
