"""ops.rollout against a scripted `Remote`: order, stop at the first failure, undo, lock."""

from __future__ import annotations

import json
import shlex

import pytest

from ops.catalog import load_environment
from ops.host.state import HostState
from ops.rollout.engine import rollout
from ops.rollout.ledger import Release, previous_release
from ops.rollout.plan import plan_host
from ops.rollout.steps import RolloutError
from tests.unit.rollout.test_plan import SECRETS, deployed_state

ENV = load_environment("local")


class FakeRemote:
    """Records every command; answers like a healthy host unless told otherwise."""

    def __init__(self, name: str, unhealthy: set[str] = frozenset()):
        self.name, self.unhealthy = name, unhealthy
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}
        self.reloads = 0

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.commands.append(command)
        if "set -C" in command:  # the lock
            return True, "acquired\n", ""
        if "traefik_config_reloads_total" in command and "while" not in command:
            self.reloads += 1
            return True, str(self.reloads), ""
        if command.startswith("end=") and "wget" in command and "/health" in command:
            bad = [n for n in self.unhealthy if n in command]
            return (not bad), "".join(f"fail {n}\n" for n in bad), ""
        if "docker image inspect" in command:
            return True, "", ""
        return True, "", ""

    def put(self, content: bytes, path: str) -> bool:
        self.files[path] = content
        return True


def changed_fleet(image_before: str = "reg/superapp/standin:v0"):
    hosts = [h.name for h in ENV.hosts]
    plans = [plan_host(ENV, h, SECRETS, deployed_state(h, image=image_before)) for h in hosts]
    return plans, [FakeRemote(h) for h in hosts]


def test_hosts_are_rolled_in_inventory_order_and_recorded() -> None:
    plans, remotes = changed_fleet()
    seen = []
    results = rollout(ENV, plans, remotes, Release(env="local", commit="abc"),
                      on_host_done=lambda r: seen.append(r.host))
    assert seen == ["host1", "host2", "host3"]
    assert all(r.result == "changed" for r in results)
    ledger = [c for c in remotes[2].commands if "releases.jsonl" in c]
    entry = json.loads(shlex.split(ledger[-1])[2])
    assert entry["result"] == "success" and entry["commit"] == "abc"
    assert set(entry["hosts"]) == {"host1", "host2", "host3"}
    # migrations once per service for the whole environment, on the first host
    migrations = [c for r in remotes for c in r.commands if "standin.py migrate" in c]
    assert len(migrations) == len(ENV.services)
    assert all("standin.py migrate" not in c for c in remotes[1].commands)


def test_an_unhealthy_service_stops_the_rollout_and_is_undone() -> None:
    plans, remotes = changed_fleet()
    remotes[1].unhealthy = {"food-b"}
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    msg = str(info.value)
    assert msg.startswith("host2: food did not become healthy within 60s")
    assert "Already on the new release: host1" in msg and "Not touched: host3" in msg
    assert remotes[2].commands == []  # nothing at all on host3
    host2 = remotes[1].commands
    assert any("compose -p sa-food-b down" in c for c in host2)  # new slot removed
    assert any(".prev" in c and "mv -f" in c for c in host2)  # previous files restored
    assert not any("sa-food-a down" in c for c in host2)  # the old slot kept serving
    # the lock (on the primary, host1) is released even though the rollout failed
    assert any("deploy.lock" in c and "rm -f" in c for c in remotes[0].commands[-3:])


def test_a_held_lock_refuses_before_anything_runs() -> None:
    plans, remotes = changed_fleet()
    holder = {"owner": "alice@laptop", "started": "2026-01-01T00:00:00+00:00",
              "expires": "2999-01-01T00:00:00+00:00", "token": "t"}
    remotes[0].run = lambda command, timeout=None: (True, "held\n" + json.dumps(holder), "")
    with pytest.raises(RolloutError, match="another deploy holds the local lock: alice@laptop"):
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert remotes[1].commands == [] and remotes[2].commands == []


def test_unchanged_hosts_are_left_alone() -> None:
    plans = [plan_host(ENV, h.name, SECRETS, deployed_state(h.name)) for h in ENV.hosts]
    assert not any(p.changed for p in plans)
    plans[1] = plan_host(ENV, "host2", SECRETS, HostState())
    remotes = [FakeRemote(h.name) for h in ENV.hosts]
    results = rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert [r.result for r in results] == ["unchanged", "changed", "unchanged"]
    assert not any("docker compose" in c for c in remotes[2].commands)


def test_previous_release_skips_failures_and_identical_releases() -> None:
    def entry(rid, finished, images, result="success"):
        return {"release": rid, "finished": finished, "images": images, "result": result,
                "secret_versions": {"p": 1}}
    ledger = [entry("r1", "1", {"a": "v1"}), entry("r2", "2", {"a": "v2"}),
              entry("r3", "3", {"a": "v3"}, result="failed"), entry("r4", "4", {"a": "v2"})]
    assert previous_release(ledger)["release"] == "r1"
    assert previous_release(ledger, "r2")["release"] == "r2"
    with pytest.raises(LookupError):
        previous_release(ledger[:1])
