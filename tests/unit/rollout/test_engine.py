"""ops.rollout.engine and .swap against a scripted `Remote`: order, stop at the first failure,
undo in the safe order, the lock checked at every step, interrupted swaps finished."""

from __future__ import annotations

import json
import shlex

import pytest

from ops.catalog import load_environment
from ops.host.state import Container, HostState
from ops.render import slot_metrics
from ops.rollout.engine import Checkpoints, apply_infra, parse_fault, rollout
from ops.rollout.ledger import Release
from ops.rollout.lock import LockLost
from ops.rollout.plan import Reason, plan_host, sha256
from ops.rollout.steps import RolloutError
from tests.unit.rollout.test_plan import SECRETS, deployed_state

ENV = load_environment("local")


class FakeRemote:
    """Records every command; answers like a healthy host unless told otherwise."""

    def __init__(self, name: str, unhealthy: set[str] = frozenset()):
        self.name, self.unhealthy = name, unhealthy
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}
        self.never_serves: set[str] = set()  # server URLs Traefik never reports up
        self.no_traefik = False  # the host's Traefik container is gone
        self.free_mb = 50000  # free disk for Docker's images
        self.unpullable: set[str] = set()  # images the host cannot pull

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.commands.append(command)
        if "traefik_service_server_up" in command:
            stuck = [u for u in self.never_serves if f'url="{u}"' in command]
            return (not stuck), ("Traefik does not serve the new server of: x" if stuck else ""), ""
        if command.startswith("docker exec traefik busybox sh -c") and self.no_traefik:
            return False, "", "Error response from daemon: No such container: traefik\n"
        if command.startswith("docker exec traefik busybox sh -c") and "/health" in command:
            bad = [n for n in self.unhealthy if f"{n}=http://{n}:" in command]  # probed by URL
            return (not bad), "".join(f"fail {n}\n" for n in bad), ""
        if command.startswith("end=") and "standin.py health" in command:  # sidecar checks
            bad = [n for n in self.unhealthy if f"docker exec {n} " in command]
            return (not bad), "".join(f"fail {n}\n" for n in bad), ""
        if "DockerRootDir" in command:
            return True, f"{self.free_mb}\n", ""
        if "docker pull" in command:
            bad = [i for i in self.unpullable if i in command]
            return (not bad), "", "".join(f"Error response from daemon: manifest for {i} not "
                                          "found\n" for i in bad)
        if "docker image inspect" in command:
            return True, "", ""
        return True, "", ""

    def put(self, content: bytes, path: str) -> bool:
        self.files[path] = content
        return True

    locked_out = False  # a new connection is refused (the new firewall shut the controller out)

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        self.commands.append(f"FRESH {command}")
        if self.locked_out:
            return False, "", "ssh: connect to host 10.231.0.12 port 22: Connection timed out"
        return True, "firewall: confirmed", ""


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
    assert only_the_ledger(remotes[2])  # host3 untouched: only the failed release recorded
    host2 = remotes[1].commands
    assert any("compose -p sa-food-b down" in c for c in host2)  # new slot removed
    assert any(".prev" in c and "mv -f" in c for c in host2)  # previous files restored
    assert not any("sa-food-a down" in c for c in host2)  # the old slot kept serving
    assert not any("mv -f /var/lib/superapp/services/food.json.next "
                   "/var/lib/superapp/services/food.json" in c for c in host2)  # never live


def test_a_host_without_its_traefik_is_named_and_its_swap_undone() -> None:
    """The health gate probes from the host's Traefik: without it, the error says so (not
    "did not become healthy"), and the new slots go as for any failed gate."""
    plans, remotes = changed_fleet()
    remotes[0].no_traefik = True
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    msg = str(info.value)
    assert msg.startswith("host1: could not probe the new containers' health through the "
                          "traefik container: Error response from daemon: No such container")
    assert "Not touched: host2, host3" in msg
    host1 = remotes[0].commands
    assert any("compose -p sa-payments-b down" in c for c in host1)  # new slot removed
    assert not any("sa-payments-a down" in c for c in host1)  # the old slot kept serving


def test_an_unhealthy_celery_worker_stops_the_rollout_like_its_service() -> None:
    """The gate waits for the new slot's sidecars with a health command (the worker), not for
    the singleton beat, which starts only once the old slot is gone."""
    plans, remotes = changed_fleet()
    remotes[0].unhealthy = {"payments-worker-b"}
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert str(info.value).startswith(
        "host1: payments did not become healthy within 60s (payments-worker-b)")
    host1 = remotes[0].commands
    gate = next(c for c in host1 if c.startswith("end=") and "standin.py health" in c)
    assert "payments-worker-b" in gate and "payments-beat-b" not in gate
    assert any("compose -p sa-payments-b down" in c for c in host1)  # new slot removed
    assert not any("sa-payments-a down" in c for c in host1)  # the old slot kept serving


def index_of(commands: list[str], *needles: str) -> int:
    return next(i for i, c in enumerate(commands) if all(n in c for n in needles))


def test_traffic_not_moving_is_undone_route_first_then_containers() -> None:
    plans, remotes = changed_fleet()
    remotes[0].never_serves = {"http://chat-b:8000"}
    with pytest.raises(RolloutError, match="waiting for Traefik to serve the new containers"):
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    host1 = remotes[0].commands
    restored = index_of(host1, "/opt/superapp/traefik/dynamic/chat.yml.prev", "mv -f")
    back = index_of(host1, "traefik_service_server_up", 'url="http://chat-a:8000"')
    removed = index_of(host1, "compose -p sa-chat-b down")
    assert restored < back < removed  # route back, Traefik serves the old slot, then remove
    assert only_the_ledger(remotes[1]) and only_the_ledger(remotes[2])


def prestaging(command: str) -> bool:
    """What pre-staging runs on every host before any changes: the disk check, the pulls."""
    return "DockerRootDir" in command or command.startswith("rc=0; docker pull")


def only_the_ledger(remote: FakeRemote, result: str = "failed") -> bool:
    """Whether the one thing run on the host, besides pre-staging (which changes nothing that
    runs), was appending the release (with `result`) to its ledger."""
    commands = [c for c in remote.commands if not prestaging(c)]
    return len(commands) == 1 and "/var/lib/superapp/releases.jsonl" in commands[0] and \
        f'"result":"{result}"' in commands[0]


class LostLock:
    """A lock another run broke: every checkpoint must stop the rollout."""

    def check(self) -> None:
        raise LockLost("stopped: the lock was broken")


def test_a_lost_lock_stops_the_rollout_before_the_next_step() -> None:
    plans, remotes = changed_fleet()
    with pytest.raises(RolloutError, match="the lock was broken"):
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"),
                checkpoints=Checkpoints(LostLock(), environ={}))
    assert all(not any("docker compose" in c for c in r.commands) for r in remotes)


def test_unchanged_hosts_are_left_alone() -> None:
    plans = [plan_host(ENV, h.name, SECRETS, deployed_state(h.name)) for h in ENV.hosts]
    assert not any(p.changed for p in plans)
    plans[1] = plan_host(ENV, "host2", SECRETS, HostState())
    remotes = [FakeRemote(h.name) for h in ENV.hosts]
    results = rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert [r.result for r in results] == ["unchanged", "changed", "unchanged"]
    assert not any("docker compose" in c for c in remotes[2].commands)


def interrupted_state(route: str, intent_slot: str | None) -> HostState:
    """host2 on v0 in slot a, with a swap of chat to slot b that an interrupted run left: its
    intent (the new release's chat) written, b's containers up, the route on `route`."""
    state = deployed_state("host2")  # the new release everywhere, except chat: still on v0
    state.services["chat"]["image"] = "reg/superapp/standin:v0"
    for c in state.containers.values():  # compose labels its containers with their project
        c.labels["com.docker.compose.project"] = (
            f"sa-{c.labels['superapp.service']}-{c.labels['superapp.slot']}")
    fresh = plan_host(ENV, "host2", SECRETS, state)
    chat = next(c for c in fresh.services if c.service == "chat")
    if intent_slot:
        state.intents["chat"] = {"service": "chat", "slot": intent_slot, "image": chat.image,
                                 "hash": chat.config_hash}
    state.containers["chat-b"] = Container("chat-b", chat.image, "running", "Up (healthy)", {
        "superapp.service": "chat", "superapp.slot": "b",
        "com.docker.compose.project": "sa-chat-b"})
    state.routes = dict.fromkeys(state.services, "a") | {"chat": route}
    for f in chat.files + [chat.route]:
        state.files[f.path] = sha256(f.content)
    return state


def test_a_swap_interrupted_after_the_route_moved_is_finished_not_redone() -> None:
    state = interrupted_state(route="b", intent_slot="b")
    plan = plan_host(ENV, "host2", SECRETS, state)
    assert [c.service for c in plan.services] == []  # chat runs what the intent says
    assert plan.promote == {"chat": "http://chat-b:8000"}
    assert plan.leftover_projects == ["sa-chat-a"] and plan.stale_intents == []
    remote = FakeRemote("host2")
    rollout(ENV, [plan], [remote], Release(env="local", commit="abc"))
    serving = index_of(remote.commands, "traefik_service_server_up", 'url="http://chat-b:8000"')
    promoted = index_of(remote.commands, "mv -f", "chat.json.next")
    stopped = index_of(remote.commands, "compose -p sa-chat-a down")
    assert serving < promoted < stopped  # the live slot is never the one removed
    # monitoring's slot info (a run killed before it wrote it) names the promoted slot now
    info = [c.decode() for p, c in remote.files.items() if p.startswith(slot_metrics.PATH)]
    assert len(info) == 1 and 'service="chat",slot="b",' in info[0]


def test_a_swap_interrupted_before_the_route_moved_is_cleaned_and_redone() -> None:
    state = interrupted_state(route="a", intent_slot="b")
    plan = plan_host(ENV, "host2", SECRETS, state)
    assert plan.promote == {} and plan.stale_intents == ["chat"]
    assert plan.leftover_projects == ["sa-chat-b"]
    chat = next(c for c in plan.services if c.service == "chat")
    assert (chat.old_slot, chat.new_slot) == ("a", "b")


def test_a_rerun_puts_the_live_files_back_before_it_stages_over_them_again() -> None:
    """A crash after `staged` left the new files over the live ones (the live ones as `.prev`):
    the re-run restores them first, so its own `.prev` copies are the live files again (an
    undo of the re-run puts back what runs, not what the crashed run staged)."""
    state = interrupted_state(route="a", intent_slot="b")
    live = deployed_state("host2").files
    compose = "/opt/superapp/compose/chat.yml"
    state.files[f"{compose}.prev"] = live[compose]
    plan = plan_host(ENV, "host2", SECRETS, state)
    assert plan.restore_files == [compose]
    assert f"{compose}.prev" not in plan.leftover_files
    remote = FakeRemote("host2")
    rollout(ENV, [plan], [remote], Release(env="local", commit="abc"))
    restored = index_of(remote.commands, "mv -f", f"{compose}.prev")
    backed_up = index_of(remote.commands, "cp -p", f"{compose}.prev")
    assert restored < backed_up


def test_a_route_without_a_record_is_still_the_live_slot() -> None:
    state = interrupted_state(route="b", intent_slot=None)
    plan = plan_host(ENV, "host2", SECRETS, state)
    chat = next(c for c in plan.services if c.service == "chat")
    assert chat.reasons == [Reason.UNRECORDED]
    assert (chat.old_slot, chat.new_slot) == ("b", "a")  # a, not the live b, is replaced
    assert plan.leftover_projects == ["sa-chat-a"]  # b serves: it is not a leftover


@pytest.mark.parametrize(("text", "fault"), [
    ("after:switched", ("switched", None)), ("after:healthy@host2", ("healthy", "host2")),
    ("", None), ("before:x", None), ("after:", None),
])
def test_the_fault_hook_names_a_step_and_optionally_a_host(text, fault) -> None:
    assert parse_fault(text) == fault


def test_pitr_is_set_up_after_every_host_and_recorded_only_once_it_worked() -> None:
    from ops.render.pitr import PITR_SCRIPT, READY_MARKER

    def without_pitr():  # the fleet as it was before PITR: its files are new on host1, host3
        hosts = [h.name for h in ENV.hosts]
        states = [deployed_state(h, image="reg/superapp/standin:v0") for h in hosts]
        for state in states:
            for path in [p for p in state.files if "pgbackrest" in p or "pitr" in p
                         or "/s3" in p or "compose/backup.yml" in p]:
                del state.files[path]
        plans = [plan_host(ENV, h, SECRETS, st) for h, st in zip(hosts, states, strict=True)]
        return plans, [FakeRemote(h) for h in hosts]

    plans, remotes = without_pitr()
    assert "pitr" in plans[0].infra_units and "backup-repo" in plans[2].infra_units
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    db = remotes[0].commands
    [setup] = [i for i, c in enumerate(db) if f"{PITR_SCRIPT} setup" in c]
    ledger = max(i for i, c in enumerate(db) if "releases.jsonl" in c)
    marker = [i for i, c in enumerate(db) if READY_MARKER in c and "mv" in c]
    assert ledger < setup < min(marker)  # after the hosts (and the record), marker last
    assert not any(f"{PITR_SCRIPT} setup" in c for r in remotes[1:] for c in r.commands)
    # a release that changes only services leaves archiving alone
    plans, remotes = changed_fleet()
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert not any(f"{PITR_SCRIPT} setup" in c for r in remotes for c in r.commands)

    class NoRepository(FakeRemote):
        def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
            if f"{PITR_SCRIPT} setup" in command:
                self.commands.append(command)
                return False, "", "ERROR: [039]: HTTP request failed with 503"
            return super().run(command, timeout)

    plans, remotes = without_pitr()
    remotes[0] = NoRepository("host1")
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert str(info.value).startswith(
        "the release is rolled out and recorded, but host1: WAL archiving to host3 "
        "(pitr.sh setup) failed")
    assert "run the deploy again (it retries this step)" in str(info.value)
    assert not any(READY_MARKER in c for c in remotes[0].commands)


def monitoring_commands(changed: tuple[str, ...]) -> list[str]:
    """host3's commands when the files at `changed` differ from what the host holds."""
    host = ENV.monitoring_host.name
    state = deployed_state(host)
    for path in changed:
        state.files[path] = "0" * 64
    plan = plan_host(ENV, host, SECRETS, state)
    remote = FakeRemote(host)
    apply_infra(remote, ENV, plan)
    return [c for c in remote.commands if c.startswith(("docker compose", "docker kill"))]


def test_a_changed_monitoring_project_recreates_its_containers_with_their_new_files() -> None:
    """compose recreates only containers whose definition changed: Prometheus would keep its
    old rule files (found on the testbed: a new rule file and scrape job never loaded)."""
    both = monitoring_commands(("/opt/superapp/compose/monitoring.yml",
                                "/opt/superapp/prometheus/prometheus.yml"))
    assert len(both) == 1 and "--force-recreate" in both[0], both
    alone = monitoring_commands(("/opt/superapp/prometheus/prometheus.yml",))
    assert alone == ["docker kill --signal HUP prometheus"], alone
    project = monitoring_commands(("/opt/superapp/compose/monitoring.yml",))
    assert len(project) == 1 and "--force-recreate" not in project[0], project


def firewall_changed_fleet():
    """Every host with a new image and a firewall it never had (a first rollout of it)."""
    hosts = [h.name for h in ENV.hosts]
    states = [deployed_state(h, image="reg/superapp/standin:v0") for h in hosts]
    for state in states:
        state.files.pop("/etc/superapp/firewall/ruleset.nft")
    plans = [plan_host(ENV, h, SECRETS, st) for h, st in zip(hosts, states, strict=True)]
    return plans, [FakeRemote(h) for h in hosts]


def test_the_firewall_is_loaded_first_and_confirmed_over_a_new_connection() -> None:
    plans, remotes = firewall_changed_fleet()
    assert all(p.infra_units[0] == "firewall" for p in plans)
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    for remote in remotes:
        loaded = next(i for i, c in enumerate(remote.commands) if "firewall-apply" in c)
        assert "/var/lib/superapp/firewall/candidate.nft" in remote.commands[loaded]
        assert remote.commands[loaded + 1].startswith("FRESH ")
        assert "firewall-confirm" in remote.commands[loaded + 1]
        assert not any("docker compose" in c for c in remote.commands[:loaded]), remote.name
        # the record of the ruleset is written only once it is confirmed
        record = next(i for i, c in enumerate(remote.commands)
                      if "/etc/superapp/firewall/ruleset.nft" in c)
        assert record > loaded + 1, remote.name


def test_a_firewall_that_shuts_the_controller_out_stops_the_host(monkeypatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("ops.firewall.apply.time.sleep", waits.append)
    plans, remotes = firewall_changed_fleet()
    remotes[1].locked_out = True
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert ("host2: the new firewall shut this controller out (a new SSH connection failed: "
            "ssh: connect to host 10.231.0.12 port 22: Connection timed out); it reverted to "
            "the previous ruleset. Check group_data admin_sources") in str(info.value)
    assert "Not touched: host3" in str(info.value)
    assert waits and waits[0] >= ENV.settings["firewall"]["confirm_seconds"]
    # after the revert, checked over the old connection, the rejected file is removed
    assert any("firewall-reverted" in c for c in remotes[1].commands)
    assert not any("/etc/superapp/firewall/ruleset.nft" in c for c in remotes[1].commands)
    assert not any("docker compose" in c and "edge.yml" in c for c in remotes[1].commands)
    assert all("firewall-apply" not in c for c in remotes[2].commands)  # host3 never touched


def test_every_host_records_when_it_reached_each_step_failed_hosts_too() -> None:
    from ops.rollout.engine import timeline_table

    plans, remotes = changed_fleet()
    remotes[1].unhealthy = {"food-b"}
    with pytest.raises(RolloutError):
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    entry = json.loads(shlex.split([c for c in remotes[0].commands
                                    if "releases.jsonl" in c][-1])[2])
    host1 = dict(entry["hosts"]["host1"]["timeline"])
    assert list(host1) == ["pulled", "configured", "uploading", "staged", "migrated", "started",
                           "healthy", "switched", "serving", "recorded", "stopped", "done"]
    assert list(host1.values()) == sorted(host1.values())
    host2 = dict(entry["hosts"]["host2"]["timeline"])
    assert list(host2) == ["pulled", "configured", "uploading", "staged", "migrated",
                           "started"]  # then food never became healthy
    assert "host3" not in entry["hosts"]
    from ops.rollout.engine import HostResult
    table = timeline_table([HostResult("host1", timeline=host1), HostResult("host2",
                                                                            timeline=host2)])
    header, row1, row2 = table.splitlines()
    assert header.split() == ["host", *host1]
    assert row1.split()[0] == "host1" and row2.split()[-1] == "-"


def test_a_changed_host_gets_the_slot_and_version_of_each_service_an_unchanged_one_nothing():
    """The info file Prometheus joins on (ops/render/slot_metrics.py) names every service of
    the host after the swap: the new slot and image of the swapped ones, the live slot of the
    others."""
    plans = [plan_host(ENV, h.name, SECRETS, deployed_state(h.name)) for h in ENV.hosts]
    plans[1] = plan_host(ENV, "host2", SECRETS,
                         deployed_state("host2", image="reg/superapp/standin:v0"))
    remotes = [FakeRemote(h.name) for h in ENV.hosts]
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    uploaded = [[c for p, c in r.files.items() if p.startswith(slot_metrics.PATH)]
                for r in remotes]  # staged beside it, then moved into place
    assert [len(u) for u in uploaded] == [0, 1, 0]  # written once, just before the record
    assert index_of(remotes[1].commands, "mv", slot_metrics.PATH) < index_of(
        remotes[1].commands, "mv -f /var/lib/superapp/services/chat.json.next "
                             "/var/lib/superapp/services/chat.json")
    text = uploaded[1][0].decode()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    swapped = {c.service for c in plans[1].services}
    assert swapped and len(lines) == len(ENV.services_on("host2"))
    for s in ENV.services_on("host2"):
        slot = "b" if s.name in swapped else "a"
        version = ENV.image(s).rsplit(":", 1)[-1]
        assert any(ln.startswith(f'superapp_service_slot_info{{service="{s.name}",slot="{slot}",'
                                 f'version="{version}",') for ln in lines), (s.name, lines)
