"""The rollout on the testbed: v1 -> v2 with zero failed requests, a broken release that stops
on the first host, a failing migration, the deploy lock, Ctrl-C, an unreachable host, a ledger
that cannot be written, then a rollback from the half-rolled fleet and a second one.

Tests run in file order and each leaves the fleet serving; the fleet starts on the release of
test_deploy.py (every service on `v1`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import hvac
import pytest

from bench.load import Load, Target, placed_targets
from ops.catalog import load_environment

from .conftest import REPO, Testbed
from .release import deploy, interrupt, output, release_copy, start_deploy, wait_for_line
from .test_observability import prometheus, query

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
CANARY_JWT = "CANARY-jwt-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:24]
# every character an env file could mangle: quotes, $, #, =, spaces, unicode, newline
CANARY_SPECIAL = "CANARY-sp3c1al $HOME ${X} 'q' \"dq\" #hash a=b ünï \\ tail\nline2"


def app_targets(testbed: Testbed, service: str | None = None,
                path: str = "/api/ping") -> list[Target]:
    """Each app host with the routes of the services placed on it (every service, or only
    `service`: then hosts without it are left out), as a testbed past three hosts runs them."""
    targets = placed_targets([(h.name, h.address) for h in testbed.hosts if "app" in h.roles],
                             ENV, path)
    if service is None:
        return targets
    route = f"{ENV.services[service].routes[0]}{path}"
    return [replace(t, paths=(route,)) for t in targets if route in t.paths]


def versions(testbed: Testbed, service: str) -> dict[str, str]:
    """host -> version a request through that host's Traefik is answered by."""
    route = ENV.services[service].routes[0]
    out = {}
    for t in app_targets(testbed, service, "/health"):
        res = subprocess.run(["curl", "-s", "-m", "5", "-H", f"Host: {DOMAIN}",
                              f"http://{t.address}{route}/health"], capture_output=True,
                             text=True)
        host = next(h.name for h in testbed.hosts if h.address == t.address)
        out[host] = json.loads(res.stdout)["version"] if res.stdout.startswith("{") else "DOWN"
    return out


def other_version(testbed: Testbed, service: str) -> str:
    """A stand-in version the service does not run now (so a deploy has something to do)."""
    now = set(versions(testbed, service).values())
    return "v3" if now == {"v2"} else "v2"


def deploy_tree_hash(testbed: Testbed, host) -> str:
    return testbed.ssh(host, "find /opt/superapp /etc/superapp /etc/cron.d -type f "
                             "-exec sha256sum {} + | sort | sha256sum; docker ps -q | sort "
                             "| sha256sum").stdout


def ledger(testbed: Testbed, host) -> list[dict]:
    out = testbed.ssh(host, "cat /var/lib/superapp/releases.jsonl", check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


class PsSampler(threading.Thread):
    """Samples every host's full process list while a deploy runs (secrets must not be in it)."""

    def __init__(self, testbed: Testbed):
        super().__init__(daemon=True)
        self.testbed, self.samples, self.stop = testbed, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for h in self.testbed.hosts:
                self.samples.append(self.testbed.ssh(h, "ps -eo args", check=False).stdout)
            time.sleep(0.3)


def set_secret(client: hvac.Client, path: str, key: str, value: str) -> None:
    kv = client.secrets.kv.v2
    data = kv.read_secret_version(path=path, mount_point="secret",
                                  raise_on_deleted_version=True)["data"]["data"]
    kv.create_or_update_secret(path=path, secret={**data, key: value}, mount_point="secret")


@pytest.fixture(scope="module")
def v2(testbed: Testbed, tmp_path_factory):
    """Roll every service to v2 with new canary secrets, under load; keep all evidence."""
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    set_secret(client, "superapp/local/payments", "JWT_SECRET", CANARY_JWT)
    set_secret(client, "superapp/local/taxi", "TOMTOM_API_KEY", CANARY_SPECIAL)
    started = time.time()
    tree = release_copy(tmp_path_factory.mktemp("v2"), {"default_image_tag": '"v2"'})
    sampler = PsSampler(testbed)
    sampler.start()
    with Load(app_targets(testbed), rate=15, workers=3) as load:
        time.sleep(2)
        res = deploy(tree, "--debug")  # the most verbose output must hold no secret either
        time.sleep(2)
    sampler.stop.set()
    sampler.join()
    return {"res": res, "load": load.report, "ps": sampler.samples, "started": started,
            "tree": tree}


def test_v2_reaches_every_host_in_inventory_order(v2, testbed):
    out = output(v2["res"])
    assert v2["res"].returncode == 0, out[-5000:]
    positions = [out.index(f"--> {h.name}:") for h in testbed.hosts]
    assert positions == sorted(positions)
    for service in ENV.services:
        assert set(versions(testbed, service).values()) == {"v2"}, service


def test_prometheus_joins_every_service_with_the_slot_and_version_its_host_recorded(v2, testbed):
    """The rollout's slot info (ops/render/slot_metrics.py), as the live Prometheus scraped it
    from node-exporter: per app host and service, the recorded slot and version v2."""
    base = prometheus(testbed)
    want = {}
    for h in (h for h in testbed.hosts if "app" in h.roles):
        out = testbed.ssh(h, 'for f in /var/lib/superapp/services/*.json; do cat "$f"; '
                             "echo; done").stdout
        for record in (json.loads(line) for line in out.splitlines() if line.strip()):
            want[(h.name, record["service"])] = (record["slot"], "v2")
    assert len(want) == sum(len(ENV.services_on(h.name)) for h in testbed.hosts
                            if "app" in h.roles)
    deadline, seen = time.time() + 60, {}
    while time.time() < deadline:  # the last host's file is at most one scrape (15 s) old
        answer = query(base, "superapp_service_slot_info")
        seen = {(r["metric"]["host"], r["metric"]["service"]):
                (r["metric"]["slot"], r["metric"]["version"]) for r in answer["data"]["result"]}
        if seen == want:
            break
        time.sleep(3)
    assert seen == want, {k: (seen.get(k), v) for k, v in want.items() if seen.get(k) != v}


def test_v2_rollout_dropped_no_request(v2):
    report = v2["load"]
    assert report.total > 300
    assert not report.failed, report.failures_by_kind()


def test_migrations_ran_once_per_service_before_traffic_moved(v2):
    out = output(v2["res"])
    runs = [line for line in out.splitlines() if "running migrations once" in line]
    services = [line.split("]")[1].split(":")[0].strip() for line in runs]
    assert sorted(services) == sorted(ENV.services)  # once each, not once per host
    assert all(line.lstrip().startswith("[host1]") for line in runs)


def test_ledger_records_the_release_without_secret_values(v2, testbed):
    for h in testbed.hosts:
        entries = [e for e in ledger(testbed, h) if e.get("result") == "success"]
        last = entries[-1]
        assert set(last["images"].values()) == {f"{testbed.registry}/superapp/standin:v2"}
        assert last["secret_versions"]["superapp/local/taxi"] >= 2
        assert set(last["hosts"]) == {x.name for x in testbed.hosts}
        assert all(d.startswith("sha256:") for d in last["hosts"][h.name]["digests"].values())
        text = json.dumps(entries)
        assert CANARY_JWT not in text and "CANARY-sp3c1al" not in text


def test_special_characters_reach_the_container_byte_for_byte(v2, testbed):
    h = testbed.hosts[0]
    container = testbed.ssh(h, "docker ps --format '{{.Names}}' --filter "
                               "label=superapp.service=taxi --filter label=superapp.role=serve"
                            ).stdout.split()[0]
    script = ("import os,hashlib;print(hashlib.sha256(os.environ['TOMTOM_API_KEY'].encode())"
              ".hexdigest())")
    digest = testbed.ssh(h, f"docker exec {container} python3 -c {shlex.quote(script)}").stdout
    assert digest.strip() == hashlib.sha256(CANARY_SPECIAL.encode()).hexdigest()


def test_no_secret_value_in_output_process_lists_or_leftover_files(v2):
    haystacks = {"pyinfra output": output(v2["res"]), "ps on the hosts": "\n".join(v2["ps"])}
    for path in Path("/tmp").rglob("*"):
        try:
            if path.is_file() and path.stat().st_mtime >= v2["started"] \
                    and path.stat().st_size < 5_000_000:
                haystacks[str(path)] = path.read_text(errors="replace")
        except OSError:
            continue
    assert len(v2["ps"]) > 10
    for canary in (CANARY_JWT, "CANARY-sp3c1al"):
        hits = [where for where, text in haystacks.items() if canary in text]
        assert not hits, f"{canary[:12]}... found in {hits}"


def test_dry_run_with_diff_shows_no_secret_and_changes_nothing(v2, testbed):
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    set_secret(client, "superapp/local/payments", "JWT_SECRET", CANARY_JWT + "-next")
    try:
        before = [deploy_tree_hash(testbed, h) for h in testbed.hosts]
        res = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "inventories/local.py",
                              "deploy.py", "--dry", "--diff", "-v"], cwd=v2["tree"],
                             capture_output=True, text=True, timeout=300)
        out = output(res)
        assert res.returncode == 0, out[-3000:]
        assert "swap payments (slot" in out
        assert "JWT_SECRET=<vault superapp/local/payments v" in out
        assert CANARY_JWT not in out
        assert [deploy_tree_hash(testbed, h) for h in testbed.hosts] == before
    finally:
        set_secret(client, "superapp/local/payments", "JWT_SECRET", CANARY_JWT)


def test_failing_migration_moves_no_traffic(v2, testbed, tmp_path):
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": '{"payments": "badmigration"}'})
    before = [deploy_tree_hash(testbed, h) for h in testbed.hosts[1:]]
    res = deploy(tree)
    out = output(res)
    assert res.returncode != 0
    assert "host1: migration of payments failed" in out
    assert set(versions(testbed, "payments").values()) == {"v2"}
    assert [deploy_tree_hash(testbed, h) for h in testbed.hosts[1:]] == before


def test_broken_release_stops_on_the_first_host_and_keeps_serving(v2, testbed, tmp_path):
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": '{"food": "broken"}'})
    untouched = [deploy_tree_hash(testbed, h) for h in testbed.hosts[1:]]
    with Load(app_targets(testbed, "food"), rate=10, workers=2) as load:
        res = deploy(tree, timeout=600)
    out = output(res)
    assert res.returncode != 0
    assert "host1: food did not become healthy" in out
    assert "Not touched: host2, host3" in out
    assert "--- last log lines of food-" in out
    assert set(versions(testbed, "food").values()) == {"v2"}
    assert not load.report.failed, load.report.failures_by_kind()
    assert [deploy_tree_hash(testbed, h) for h in testbed.hosts[1:]] == untouched
    assert lock_is_free(testbed)


LOCK_PATH = ENV.vault_path("locks", "deploy")
LEDGER = "/var/lib/superapp/releases.jsonl"


def lock_record(testbed: Testbed) -> dict:
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            path=LOCK_PATH, mount_point="secret", raise_on_deleted_version=False)
    except hvac.exceptions.InvalidPath:
        return {}
    return (answer.get("data") or {}).get("data") or {}


def lock_is_free(testbed: Testbed) -> bool:
    return not lock_record(testbed).get("token")


def put_lock(testbed: Testbed, user: str, heartbeat: str, token: str) -> None:
    """Another run's lock in Vault, last renewed at `heartbeat`."""
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    client.secrets.kv.v2.create_or_update_secret(path=LOCK_PATH, mount_point="secret", secret={
        "token": token, "user": user, "pid": "4242", "kind": "deploy", "release": "r-other",
        "started": heartbeat, "heartbeat": heartbeat, "lease_seconds": "120"})


def test_a_held_lock_refuses_the_deploy_a_dead_one_frees_itself_and_breaking_is_recorded(
        v2, testbed, tmp_path):
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"', "image_tags": '{"chat": "v3"}'})
    now = datetime.now(UTC).isoformat(timespec="seconds")
    token = "a1b2c3d4e5f6" + "0" * 20
    put_lock(testbed, "alice@laptop", now, token)
    try:
        res = deploy(tree)
        assert res.returncode != 0
        text = output(res)
        assert "the local deploy lock is held by alice@laptop (pid 4242)" in text
        assert "pyinfra -y inventories/local.py deploy.py --data break_lock=a1b2c3d4e5f6" in text
        assert set(versions(testbed, "chat").values()) == {"v2"}
        res = deploy(tree, "--data", "break_lock=true")  # not a prefix of the holder's token
        assert res.returncode != 0 and "does not match the holder's token" in output(res)
        res = deploy(tree, "--data", "break_lock=a1b2c3d4e5f6")
        assert res.returncode == 0, output(res)[-3000:]
        assert set(versions(testbed, "chat").values()) == {"v3"}
        broken = [e for e in ledger(testbed, testbed.hosts[0]) if e.get("kind") == "lock-broken"]
        assert broken[-1]["holder"] == "alice@laptop"
        assert broken[-1]["holder_token"] == "a1b2c3d4e5f6"
        # a lock whose holder stopped renewing long ago: the next run takes it by itself
        put_lock(testbed, "bob@laptop", "2020-01-01T00:00:00+00:00", "f" * 32)
        back = release_copy(tmp_path / "back", {"default_image_tag": '"v2"'})
        res = deploy(back)
        assert res.returncode == 0, output(res)[-3000:]
        assert set(versions(testbed, "chat").values()) == {"v2"}
    finally:
        if lock_record(testbed).get("user") in ("alice@laptop", "bob@laptop"):
            hvac.Client(url=testbed.vault_addr, token=testbed.vault_token).secrets.kv.v2\
                .create_or_update_secret(path=LOCK_PATH, mount_point="secret",
                                         secret={"released_by": "test"})


def test_ctrl_c_releases_the_lock(v2, testbed, tmp_path):
    before, target = versions(testbed, "chat"), other_version(testbed, "chat")
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": f'{{"chat": "{target}"}}'})
    proc = start_deploy(tree)
    wait_for_line(proc, r"swapping chat")
    time.sleep(1)
    out = interrupt(proc)
    assert proc.returncode != 0
    assert "interrupted (Ctrl-C) while rolling host1: its changes were undone" in out
    assert lock_is_free(testbed)
    assert versions(testbed, "chat") == before
    res = deploy(tree)  # and the fleet converges on the next run
    assert res.returncode == 0, output(res)[-3000:]
    assert set(versions(testbed, "chat").values()) == {target}


def test_hosts_at_once_ctrl_c_undoes_every_host_in_progress_then_they_roll_together(
        v2, testbed, tmp_path):
    """`--data parallel_hosts=2` under load: host1 alone, then host2 and host3 at once: Ctrl-C
    finds both swapping and undoes both; the next run converges (host1 unchanged, so host2 is
    its first changed host and goes alone, then host3). 0 failed requests. The overlap of
    finished hosts in time: tests/unit/rollout/test_parallel.py and `make bench`."""
    before, target = versions(testbed, "chat"), other_version(testbed, "chat")
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": f'{{"chat": "{target}"}}'})
    with Load(app_targets(testbed, "chat"), rate=30,
              workers=8) as load:
        proc = start_deploy(tree, "--data", "parallel_hosts=2")
        wait_for_line(proc, r"\[host3\] swapping chat")
        time.sleep(1)
        out = interrupt(proc)
        assert proc.returncode != 0
        assert ("interrupted (Ctrl-C) while rolling host2, host3: their changes were undone; "
                "already on the new release: host1") in out, out[-3000:]
        now = versions(testbed, "chat")
        assert (now["host1"], now["host2"], now["host3"]) == (target, before["host2"],
                                                                before["host3"])
        assert lock_is_free(testbed)

        res = deploy(tree, "--data", "parallel_hosts=2")
        assert res.returncode == 0, output(res)[-3000:]
        assert "(parallel_hosts 2)" in output(res)
        hosts = ledger(testbed, testbed.hosts[0])[-1]["hosts"]
        assert [hosts[h]["result"] for h in ("host1", "host2", "host3")] == [
            "unchanged", "changed", "changed"]
        # one after the other (both numbers are rounded to 0.1 s in the ledger)
        assert hosts["host2"]["began"] + hosts["host2"]["seconds"] <= hosts["host3"]["began"] + 0.2
        assert set(versions(testbed, "chat").values()) == {target}
        time.sleep(2)
    assert load.report.total > 300
    assert load.report.failed == [], load.report.failures_by_kind()


def set_sshd(host: str, action: str) -> None:
    subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "testbed/testbed.py"), "sshd",
                    host, action], check=True, capture_output=True)


def test_unreachable_host_refuses_before_any_change(v2, testbed, tmp_path):
    target = other_version(testbed, "bus")
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": f'{{"bus": "{target}"}}'})
    before = [deploy_tree_hash(testbed, h) for h in (testbed.hosts[0], testbed.hosts[2])]
    set_sshd("host2", "stop")
    try:
        res = deploy(tree)
    finally:
        set_sshd("host2", "start")
    assert res.returncode != 0
    assert "cannot reach host2" in output(res)
    assert [deploy_tree_hash(testbed, h) for h in (testbed.hosts[0], testbed.hosts[2])] == before


STOPPED: dict = {}  # the release the lost host stopped, re-run by the last test


def test_host_lost_mid_rollout_stops_with_a_clear_message(v2, testbed, tmp_path):
    """Leaves the fleet half-rolled (host1 on the new bus, host2 and host3 on the old one):
    the rollback tests below start from there."""
    target = other_version(testbed, "bus")
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": f'{{"bus": "{target}"}}'})
    STOPPED["tree"], STOPPED["bus"] = tree, target
    proc = start_deploy(tree)
    wait_for_line(proc, r"--> host1:")
    set_sshd("host2", "stop")
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        set_sshd("host2", "start")
    assert proc.returncode != 0
    assert "Rollout stopped at host2" in out and "Already on the new release: host1" in out
    assert "Not touched: host3" in out
    assert lock_is_free(testbed)
    assert versions(testbed, "bus")["host1"] == target != versions(testbed, "bus")["host2"]
    last = ledger(testbed, testbed.hosts[2])[-1]  # recorded on host3 too, which it never reached
    assert last["result"] == "failed" and last["hosts"]["host2"]["result"] == "FAILED"


def test_limit_rolls_only_the_named_host_and_a_ledger_it_cannot_write_fails_the_run(
        v2, testbed, tmp_path):
    h2 = testbed.hosts[1]
    before = versions(testbed, "stays")
    target = "v3" if before["host2"] != "v3" else "v2"
    tree = release_copy(tmp_path, {"default_image_tag": '"v2"',
                                   "image_tags": f'{{"stays": "{target}"}}'})
    others = [deploy_tree_hash(testbed, h) for h in (testbed.hosts[0], testbed.hosts[2])]
    testbed.ssh(h2, f"mv {LEDGER} {LEDGER}.keep && mkdir {LEDGER}")  # appends now fail
    try:
        res = deploy(tree, "--limit", "host2")
    finally:
        testbed.ssh(h2, f"rmdir {LEDGER} && mv {LEDGER}.keep {LEDGER}")
    assert res.returncode != 0, output(res)[-3000:]
    assert f"the release could not be recorded: host2: appending to {LEDGER} failed" \
        in output(res), output(res)[-3000:]
    after = versions(testbed, "stays")
    assert after["host2"] == target
    assert (after["host1"], after["host3"]) == (before["host1"], before["host3"])
    assert [deploy_tree_hash(testbed, h) for h in (testbed.hosts[0], testbed.hosts[2])] == others


def rollback(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
                           "tasks/rollback.py", *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=900)


def complete_releases(testbed: Testbed) -> list[dict]:
    """Releases every host ran to the end (merged from all ledgers), oldest first."""
    seen: dict[str, dict] = {}
    for h in testbed.hosts:
        for e in ledger(testbed, h):
            hosts = e.get("hosts") or {}
            if (e.get("kind") in ("deploy", "rollback") and e.get("result") == "success"
                    and all((hosts.get(x.name) or {}).get("result") in ("changed", "unchanged")
                            for x in testbed.hosts)):
                seen.setdefault(e["release"], e)
    return sorted(seen.values(), key=lambda e: (e["finished"], e["release"]))


def assert_fleet_runs(testbed: Testbed, release: dict) -> None:
    """Every service answers with the release's tag through every app host's Traefik."""
    for service in ENV.services:
        tag = release["images"][service].split("@", 1)[0].rsplit(":", 1)[1]
        assert set(versions(testbed, service).values()) == {tag}, (service, release["release"])


def test_rollback_from_a_half_rolled_fleet_returns_every_host_to_the_last_complete_release(
        v2, testbed):
    newest = complete_releases(testbed)[-1]  # the fleet is mixed: bus on host1, stays on host2
    with Load(app_targets(testbed), rate=30, workers=3) as load:
        res = rollback()
    report = load.report  # requests to every service through every app host's Traefik
    assert res.returncode == 0, output(res)[-4000:]
    out = output(res)
    assert f"rolling back to release {newest['release']}" in out
    assert "host1 bus: " in out and "host2 stays: " in out  # now -> target, per host/service
    assert "host3 bus" not in out
    assert "running migrations" not in out and "secrets: current versions" in out
    assert report.total > 100 and not report.failed, report.failures_by_kind()
    assert_fleet_runs(testbed, newest)
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    for h in testbed.hosts:  # recorded everywhere, with the secrets' current versions
        last = ledger(testbed, h)[-1]
        assert last["kind"] == "rollback" and last["rolled_back_to"] == newest["release"]
        assert last["result"] == "success"
        for path, version in last["secret_versions"].items():
            meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
            assert version == meta["data"]["current_version"], path


def test_a_second_rollback_goes_one_release_further_back(v2, testbed):
    complete = complete_releases(testbed)
    undone = next(e for e in reversed(complete) if e["kind"] == "rollback")["rolled_back_to"]
    before = next(e for e in reversed(complete[:[e["release"] for e in complete].index(undone)])
                  if e["images"] != complete[-1]["images"])
    res = rollback()
    assert res.returncode == 0, output(res)[-4000:]
    assert f"rolling back to release {before['release']}" in output(res)
    assert ledger(testbed, testbed.hosts[0])[-1]["rolled_back_to"] == before["release"]
    assert_fleet_runs(testbed, before)




def test_the_release_a_lost_host_stopped_finishes_when_run_again(v2, testbed):
    """The operator's plain re-run once the host is back (here after the rollbacks): every
    host reaches the stopped release, under load, and the ledgers record it complete."""
    assert STOPPED, "runs after test_host_lost_mid_rollout_stops_with_a_clear_message"
    with Load(app_targets(testbed), rate=30, workers=3) as load:
        res = deploy(STOPPED["tree"])
    assert res.returncode == 0, output(res)[-4000:]
    assert load.report.total > 100 and not load.report.failed, load.report.failures_by_kind()
    assert set(versions(testbed, "bus").values()) == {STOPPED["bus"]}
    newest = complete_releases(testbed)[-1]
    assert newest["kind"] == "deploy"
    assert_fleet_runs(testbed, newest)
