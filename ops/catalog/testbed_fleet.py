"""The testbed's hosts beyond those group_data/local.py lists (`testbed.py up --hosts N`).

The testbed starts host1..hostN. group_data/local.py names the first three (their roles differ)
and says in `testbed_fleet` what every further host is: an app host running only a few
services, since two cores cannot run all 17 on each of 12 hosts. `with_testbed_hosts` adds the
hosts the testbed recorded in its state file, so the inventory, the renders and the rollout see
every host it started; with no state file, an unreadable one, or no more hosts than listed, the
environment is exactly what group_data lists (unit tests never depend on a running testbed).

group_data stays data (the loader never executes it): this is the one place that reads the
testbed's state, and only for an environment whose group_data has `testbed_fleet` (the rules
refuse it in prod and staging, which list every host they deploy to).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "SA_TESTBED_STATE"  # testbed/testbed.py's override of its state directory
STATE_FILE = "state.json"


def started_hosts(state_dir: str) -> int:
    """How many hosts the testbed started (`hosts_count` of its state file; $SA_TESTBED_STATE
    wins over `state_dir`, as in testbed.py); 0 when there is no file or it cannot be read."""
    path = Path(os.environ.get(STATE_DIR_ENV, state_dir)) / STATE_FILE
    try:
        count = json.loads(path.read_text(encoding="utf-8")).get("hosts_count")
    except (OSError, ValueError, AttributeError):
        return 0
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def with_testbed_hosts(settings: Mapping[str, Any], services: Iterable[str]) -> dict[str, Any]:
    """`settings` (schema-checked group_data) plus the hosts the testbed started beyond the
    listed ones: host i named `<name_prefix><i>` at `address_base + i`, with `roles`. Only
    `testbed_fleet.services` run on them; every other service keeps its placement on the
    listed hosts. The same settings when there is nothing to add."""
    fleet, listed = settings.get("testbed_fleet"), list(settings["hosts"])
    count = started_hosts(fleet["state_dir"]) if fleet else 0
    if count <= len(listed):
        return dict(settings)
    numbers = range(len(listed) + 1, count + 1)
    try:
        addresses = [str(ipaddress.IPv4Address(fleet["address_base"]) + i) for i in numbers]
    except ValueError:  # the rules name the bad address_base
        return dict(settings)
    added = [{"name": f"{fleet['name_prefix']}{i}", "address": address,
              "roles": list(fleet["roles"]), "public_address": None, "placement_group": None}
             for i, address in zip(numbers, addresses, strict=True)]
    listed_apps = [h["name"] for h in listed if "app" in h["roles"]]
    placement = {name: [*settings["placement"].get(name, listed_apps),
                        *(h["name"] for h in added if name in fleet["services"])]
                 for name in services}
    return {**settings, "hosts": listed + added, "placement": placement}
