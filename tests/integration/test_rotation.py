"""Secret rotation on the testbed (tasks/rotate_secrets.py): a dry run writes nothing; one JWT
secret restarts only its service; the internal HMAC secret rotates under a steady stream of
signed internal calls with none rejected, paused after phase 1 (every call still works) and
resumed; a service's database and Redis passwords rotate under traffic that opens a new
connection per request, with none failed, and a rotation stopped between its two steps is
finished by the next; the old secret is then refused; Vault holds new versions of exactly
the rotated keys; no old or new value appears in any output or process list.

Each test searches its own outputs for the values it saw (no test reads another's results).
The first converges the fleet on this repo's release (a rotation refuses a fleet that is not
on it); the others rotate from whatever state the previous ones left.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import hvac
import pytest

from ops.catalog import load_environment
from ops.catalog.model import REDIS_PREVIOUS_KEY
from ops.render.compose import TRAEFIK_PORTS, internal_host, internal_url

from .conftest import REPO, Testbed, q
from .release import deploy, output, pyinfra
from .test_redis_acl import as_user, service_get
from .test_rollout import PsSampler, complete_releases, ledger

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
MOUNT = ENV.settings["vault"]["mount"]
PREFIX = ENV.settings["vault"]["path_prefix"]
HMAC_PATH = f"{PREFIX}/shared/internal-hmac"
PAYMENTS = ENV.services["payments"]
# What a caller's PAYMENTS_INTERNAL_URL says: its own host's Traefik, entrypoint `internal`
PAYMENTS_INTERNAL = f"{internal_url(PAYMENTS)}/internal/charge"
CALLERS = ("taxi", "commerce")


@pytest.fixture(scope="module")
def vault(testbed: Testbed) -> hvac.Client:
    return hvac.Client(testbed.vault_addr, token=testbed.vault_token)


def kv_paths(vault: hvac.Client) -> list[str]:
    return sorted({r.path for r in ENV.all_secret_refs()})


def latest(vault: hvac.Client, path: str) -> tuple[int, dict]:
    r = vault.secrets.kv.v2.read_secret_version(path=path, mount_point=MOUNT,
                                                raise_on_deleted_version=False)
    return r["data"]["metadata"]["version"], r["data"]["data"]


def snapshot(vault: hvac.Client) -> dict[str, tuple[int, dict]]:
    return {p: latest(vault, p) for p in kv_paths(vault)}


def changed_keys(before: dict, after: dict) -> dict[str, list[str]]:
    """path -> keys whose value differs, for every path whose version moved."""
    out = {}
    for path, (version, data) in after.items():
        old_version, old = before[path]
        if version != old_version:
            out[path] = sorted(k for k in set(data) | set(old) if data.get(k) != old.get(k))
    return out


def rotate(*args: str, timeout: float = 900):
    return pyinfra(REPO, "-y", "inventories/local.py", "tasks/rotate_secrets.py", *args,
                   timeout=timeout)


def assert_never_shown(testbed: Testbed, outputs: list[str], values: dict[str, str]) -> None:
    """No old or new secret value in a test's outputs or process lists, or any container log."""
    for text in outputs:
        for name, value in values.items():
            assert value not in text, f"the {name} value leaked into an output"
    logs = "".join(testbed.ssh(h, "docker ps -q | xargs -r -n1 docker logs --tail 500 2>&1",
                               check=False, timeout=300).stdout for h in testbed.hosts)
    for name, value in values.items():
        assert value not in logs, f"the {name} value is in a container log"


def containers(testbed: Testbed) -> dict[str, str]:
    """host/container name -> container id, every container of every host."""
    out = {}
    for h in testbed.hosts:
        for line in testbed.ssh(h, "docker ps --format '{{.ID}} {{.Names}}'").stdout.split("\n"):
            if line.strip():
                cid, name = line.split()
                out[f"{h.name}/{name}"] = cid
    return out


def signed_charge(testbed: Testbed, host, secret: str) -> int:
    """POST payments' /internal/charge through the host's Traefik, entrypoint `internal`, as a
    caller does (`Host: payments.internal`; nothing stripped: the signed path is the path
    payments sees). Sent from the host itself: the firewall opens the internal entrypoint to
    app hosts only. The public entrypoint answers 404 for it. (The command line carries the
    signature of a fixed body, never the secret.)"""
    body, ts = b'{"test":"rotation"}', str(int(time.time()))
    signature = hmac.new(secret.encode(), f"POST\n/internal/charge\n{ts}\n".encode() + body,
                         hashlib.sha256).hexdigest()
    out = testbed.ssh(host, q(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
        "-X", "POST", "-H", f"Host: {internal_host(PAYMENTS)}",
        "-H", "Content-Type: application/json", "-H", f"X-Signature: {signature}",
        "-H", f"X-Signature-Timestamp: {ts}", "--data-binary", body.decode(),
        f"http://{host.address}:{TRAEFIK_PORTS['internal']}/internal/charge")).stdout
    return int(out.strip() or 0)


class InternalCalls(threading.Thread):
    """Signed internal calls at a steady rate: a caller (through Traefik, `/api/call-internal`)
    signs with the secret its env file holds and calls payments through its host's Traefik
    (PAYMENTS_INTERNAL, the internal entrypoint), so a payments swap moves these calls as it
    moves public traffic."""

    def __init__(self, testbed: Testbed, per_second: float = 8.0):
        super().__init__(daemon=True)
        self.targets = [(h.address, c) for h in testbed.hosts if "app" in h.roles
                        for c in CALLERS]
        self.interval = 1.0 / per_second
        self.results: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()

    def call(self, address: str, caller: str) -> str:
        route = ENV.services[caller].routes[0]
        req = urllib.request.Request(
            f"http://{address}{route}/api/call-internal", method="POST",
            data=json.dumps({"url": PAYMENTS_INTERNAL, "body": {"n": 1}}).encode(),
            headers={"Host": DOMAIN, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                reply = json.loads(resp.read())
        except urllib.error.HTTPError as e:  # 502: the caller could not reach payments
            try:
                reply = json.loads(e.read())
            except ValueError:
                reply = {"error": f"HTTP {e.code} from the caller"}
        except TimeoutError:
            # the caller's own call to payments hung (a payments container going away under it)
            self.failures.append(f"{address} {caller}: timed out waiting for the caller")
            return "unreachable"
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.failures.append(f"{address} {caller}: {type(e).__name__}")
            return "error"
        status = reply.get("upstream_status")
        if status == 200:
            return "ok"
        if status in (401, 403):
            self.failures.append(f"{address} {caller}: payments rejected the signature "
                                 f"({(reply.get('upstream') or {}).get('result')})")
            return "rejected"
        self.failures.append(f"{address} {caller}: payments answered {status}: "
                             f"{reply.get('error')}")
        return "unreachable" if status is None else "error"

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            address, caller = self.targets[i % len(self.targets)]
            i += 1
            self.results[self.call(address, caller)] += 1
            self.stop.wait(self.interval)


def test_fleet_is_on_the_repo_release(testbed):
    res = deploy(REPO)
    assert res.returncode == 0, output(res)


def test_dry_run_writes_nothing_and_says_what_would_rotate(testbed, vault):
    before = snapshot(vault)
    res = rotate("--data", "rotate=all", "--dry")
    text = output(res)
    assert res.returncode == 0, text
    assert "dry run: nothing is written" in text
    assert f"rotate {PREFIX}/food#JWT_SECRET (jwt)" in text and "swaps food" in text
    assert f"rotate {PREFIX}/taxi#ADMIN_TOKEN (admin-token)" in text
    assert "phase 2: callers sign with the new secret; swaps taxi, commerce" in text
    assert snapshot(vault) == before
    assert_never_shown(testbed, [text], {
        "current food JWT": before[f"{PREFIX}/food"][1]["JWT_SECRET"],
        "current internal HMAC": before[HMAC_PATH][1]["INTERNAL_HMAC_SECRET"]})


def test_bad_selector_is_refused_before_anything(testbed, vault):
    before = snapshot(vault)
    res = rotate("--data", "rotate=taxi/TOMTOM_API_KEY")
    assert res.returncode != 0
    assert "issued by a third party" in output(res)
    assert snapshot(vault) == before


def test_rotating_one_jwt_secret_restarts_only_that_service(testbed, vault):
    before, ids = snapshot(vault), containers(testbed)
    res = rotate("--data", "rotate=food/JWT_SECRET")
    assert res.returncode == 0, output(res)
    after, now = snapshot(vault), containers(testbed)
    # Vault: one new version, of exactly that key
    assert changed_keys(before, after) == {f"{PREFIX}/food": ["JWT_SECRET"]}
    assert after[f"{PREFIX}/food"][0] == before[f"{PREFIX}/food"][0] + 1
    # only food's containers were replaced, on every host
    kept = {k: v for k, v in ids.items() if "/food-" not in k}
    assert {k: now.get(k) for k in kept} == kept
    assert {k for k in now if "/food-" in k}.isdisjoint(ids)
    assert sum("/food-" in k for k in now) == len(testbed.hosts)
    entry = [e for e in ledger(testbed, testbed.hosts[0]) if e.get("rotation")][-1]
    assert entry["result"] == "success" and entry["keys"] == [f"{PREFIX}/food#JWT_SECRET"]
    assert entry["old_versions"] == {f"{PREFIX}/food": before[f"{PREFIX}/food"][0]}
    assert entry["new_versions"] == {f"{PREFIX}/food": after[f"{PREFIX}/food"][0]}
    assert_never_shown(testbed, [output(res)],
                       {"old food JWT": before[f"{PREFIX}/food"][1]["JWT_SECRET"],
                        "new food JWT": after[f"{PREFIX}/food"][1]["JWT_SECRET"]})


def test_a_rollback_keeps_the_rotated_secret_and_refuses_to_bring_the_old_one_back(
        testbed, vault):
    """The rotation above may have been because the secret leaked: rolling back to the release
    before it must not restore the old version, and asking for that is refused."""
    rotation = [e for e in ledger(testbed, testbed.hosts[0]) if e.get("rotation")][-1]
    assert rotation["keys"] == [f"{PREFIX}/food#JWT_SECRET"]
    target = [e for e in complete_releases(testbed) if e["finished"] < rotation["started"]][-1]
    before, ids = snapshot(vault), containers(testbed)
    res = pyinfra(REPO, "-y", "inventories/local.py", "tasks/rollback.py",
                  "--data", f"release={target['release']}")
    assert res.returncode == 0, output(res)[-3000:]
    assert f"rolling back to release {target['release']}" in output(res)
    assert "secrets: current versions" in output(res)
    assert snapshot(vault) == before  # food's JWT stays at its rotated version
    after = containers(testbed)
    assert {k: v for k, v in after.items() if "/food-" in k} == \
        {k: v for k, v in ids.items() if "/food-" in k}  # food not redeployed with an old key
    refused = pyinfra(REPO, "-y", "inventories/local.py", "tasks/rollback.py",
                      "--data", f"release={target['release']}", "--data", "secrets=as-recorded")
    assert refused.returncode != 0
    assert f"{PREFIX}/food (v{rotation['old_versions'][f'{PREFIX}/food']}, now " \
           f"v{rotation['new_versions'][f'{PREFIX}/food']})" in output(refused), \
        output(refused)[-3000:]
    assert "rotated since release" in output(refused)
    assert containers(testbed) == after and snapshot(vault) == before  # refused before acting


def test_internal_hmac_rotation_under_load_paused_after_phase_1_then_resumed(testbed, vault):
    app_hosts = [h for h in testbed.hosts if "app" in h.roles]
    before = snapshot(vault)
    old = before[HMAC_PATH][1]["INTERNAL_HMAC_SECRET"]
    assert all(signed_charge(testbed, h, old) == 200 for h in app_hosts)
    calls, ps = InternalCalls(testbed), PsSampler(testbed)
    calls.start()
    ps.start()
    try:
        time.sleep(2)
        first = rotate("--data", "rotate=internal-hmac", "--data", "hmac_stop_after=1")
        assert first.returncode == 0, output(first)
        assert "stopped after phase 1" in output(first)
        version, data = latest(vault, HMAC_PATH)
        new = data["INTERNAL_HMAC_SECRET"]
        assert version == before[HMAC_PATH][0] + 1
        assert json.loads(data["INTERNAL_HMAC_ROTATION"])["phase"] == 1
        assert data["INTERNAL_HMAC_SECRET_PREVIOUS"] == old
        # paused after phase 1: payments accept both, callers still sign with the old one
        assert [signed_charge(testbed, h, s) for h in app_hosts for s in (old, new)] == \
               [200] * 2 * len(app_hosts)
        time.sleep(3)
        assert calls.results["ok"] > 0 and calls.results["rejected"] == 0, calls.failures[:5]

        second = rotate("--data", "rotate=internal-hmac")
        assert second.returncode == 0, output(second)
        text = output(second)
        assert "resume rotation" in text and "at phase 1" in text
        wait = ENV.settings["hmac_replay_window_seconds"] + 10
        assert f"waiting {wait} s" in text and "finished" in text
        time.sleep(2)
    finally:
        calls.stop.set()
        ps.stop.set()
        calls.join(15)
        ps.join(15)
    print(f"internal calls during the rotation: {dict(calls.results)}; {calls.failures[:10]}")
    # Callers reach payments through their host's Traefik (internal entrypoint): a payments
    # swap moves them like public traffic, so not one call is rejected, fails or is reset.
    assert calls.results["rejected"] == 0, calls.failures[:10]
    assert calls.results["error"] == 0, calls.failures[:10]
    assert calls.results["unreachable"] == 0, calls.failures[:10]
    assert calls.results["ok"] > 100, calls.results
    # afterwards: the old secret is refused, the new one accepted, everywhere
    assert [signed_charge(testbed, h, old) for h in app_hosts] == [401] * len(app_hosts)
    assert [signed_charge(testbed, h, new) for h in app_hosts] == [200] * len(app_hosts)
    # Vault: phase 1, 2, 3 and idle; exactly the rotated key differs in the end
    after = snapshot(vault)
    assert after[HMAC_PATH] == (before[HMAC_PATH][0] + 4, {"INTERNAL_HMAC_SECRET": new})
    assert changed_keys(before, after) == {HMAC_PATH: ["INTERNAL_HMAC_SECRET"]}
    entries = [e for e in ledger(testbed, testbed.hosts[0]) if e.get("rotation")][-2:]
    assert [e["result"] for e in entries] == ["stopped after phase 1", "success"]
    assert [s["phase"] for s in entries[1]["steps"]] == [1, 2, 3]
    assert entries[1]["steps"][0]["swapped"] == {}  # phase 1 was complete: nothing to redo
    assert entries[1]["new_versions"] == {HMAC_PATH: before[HMAC_PATH][0] + 4}
    assert_never_shown(testbed, [output(first), output(second), *ps.samples],
                       {"old internal HMAC": old, "new internal HMAC": new})


class BackendLoad(threading.Thread):
    """GETs of one service's `path` on every app host through Traefik, at a steady rate:
    `/api/rate-limited` opens a new Redis connection as the service's ACL user, `/api/db-session`
    a new PostgreSQL connection as its login role (no pool that would hide a password the
    server no longer accepts)."""

    def __init__(self, testbed: Testbed, service: str, path: str, per_second: float = 20.0):
        super().__init__(daemon=True)
        self.hosts = [h.address for h in testbed.hosts if "app" in h.roles]
        self.service, self.path, self.interval = service, path, 1.0 / per_second
        self.sessions: Counter[str] = Counter()
        self.results: Counter[int] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            address = self.hosts[i % len(self.hosts)]
            i += 1
            status, body = service_get(address, self.service, self.path)
            self.results[status] += 1
            if "session_user" in body:
                self.sessions[f"{body['session_user']} as {body['current_user']}"] += 1
            if status != 200:
                self.failures.append(f"{address}: {status} {body.get('error')}")
            self.stop.wait(self.interval)


def db_login(testbed: Testbed, role: str, password: str) -> str:
    """A password login to food's database on the db host over TCP, the password read from
    stdin into psql's environment (never on a command line): 'ok', or psql's error line."""
    db = next(h for h in testbed.hosts if "db" in h.roles)
    res = subprocess.run(
        testbed.ssh_argv(db, "read -r PGPASSWORD; export PGPASSWORD; docker exec -e PGPASSWORD "
                             f"postgres psql -X -h 127.0.0.1 -U {role} -d food -Atc 'SELECT 1'"),
        input=password + "\n", capture_output=True, text=True, timeout=60)
    return "ok" if res.stdout.strip() == "1" else (res.stderr.strip().splitlines() or ["?"])[-1]


def test_database_and_redis_passwords_rotate_under_load_with_no_request_failed(testbed, vault):
    """One rotation of food's database and Redis passwords, under two streams of requests that
    each open a new connection (PostgreSQL as food's login role, Redis as its ACL user). The
    servers accept the old password and the new while food is swapped: the login moves to the
    other of food's two roles (acting as the owner), Redis's user holds both; then the old ones
    stop working. Not one request fails."""
    path = f"{PREFIX}/food"
    before = snapshot(vault)
    old_data = before[path][1]
    old_db, old_redis = old_data["DB_PASSWORD"], old_data["REDIS_PASSWORD"]
    old_role = old_data.get("DB_LOGIN", "food")
    new_role = "food_alt" if old_role == "food" else "food"
    assert db_login(testbed, old_role, old_db) == "ok"
    assert as_user(testbed, "food", old_redis, "PING") == "PONG"
    loads = [BackendLoad(testbed, "food", "/api/db-session"),
             BackendLoad(testbed, "food", "/api/rate-limited")]
    ps = PsSampler(testbed)
    for thread in [*loads, ps]:
        thread.start()
    try:
        time.sleep(2)
        res = rotate("--data", "rotate=food/DB_PASSWORD,food/REDIS_PASSWORD")
        time.sleep(2)
    finally:
        for thread in [*loads, ps]:
            thread.stop.set()
        for thread in [*loads, ps]:
            thread.join(15)
    text = output(res)
    assert res.returncode == 0, text[-3000:]
    db_load, redis_load = loads
    print(f"new connections during the rotation: PostgreSQL {dict(db_load.results)} "
          f"{dict(db_load.sessions)}, Redis {dict(redis_load.results)}")
    assert "PostgreSQL accepts the old password and the new until then" in text
    assert "Redis accepts the old password and the new until then" in text
    assert "the old password removed" in text
    for load in loads:
        assert load.failures == [] and load.results[200] > 100, (load.path, load.results,
                                                                 load.failures[:10])
    # both roles served, both acting as the owner of food's objects
    assert set(db_load.sessions) == {f"{old_role} as food", f"{new_role} as food"}
    # Vault: the new passwords and the new login, the old passwords gone (two versions)
    after = snapshot(vault)
    version, data = after[path]
    assert version == before[path][0] + 2
    assert changed_keys(before, after) == {path: ["DB_LOGIN", "DB_PASSWORD", "REDIS_PASSWORD"]}
    assert data["DB_LOGIN"] == new_role
    new_db, new_redis = data["DB_PASSWORD"], data["REDIS_PASSWORD"]
    assert "password authentication failed" in db_login(testbed, old_role, old_db)
    assert "password authentication failed" in db_login(testbed, old_role, new_db)
    assert db_login(testbed, new_role, new_db) == "ok"
    assert as_user(testbed, "food", old_redis, "PING") == "error WRONGPASS"
    assert as_user(testbed, "food", new_redis, "PING") == "PONG"
    app_hosts = [h for h in testbed.hosts if "app" in h.roles]
    assert [service_get(h.address, "food", "/api/db-session")[1].get("session_user")
            for h in app_hosts] == [new_role] * len(app_hosts)
    entry = [e for e in ledger(testbed, testbed.hosts[0]) if e.get("rotation")][-1]
    assert entry["result"] == "success"
    assert sorted(entry["keys"]) == [f"{path}#DB_PASSWORD", f"{path}#REDIS_PASSWORD"]
    # step 1 swapped food everywhere; step 2 changed only the db host's servers
    assert [s["swapped"] for s in entry["steps"]] == [{h.name: ["food"] for h in app_hosts}, {}]
    assert_never_shown(testbed, [text, *ps.samples],
                       {"old food database password": old_db, "new food database password": new_db,
                        "old food Redis password": old_redis, "new food Redis password": new_redis})


def test_a_redis_rotation_stopped_after_its_first_step_is_finished_not_restarted(
        testbed, vault):
    """What a rotation that stopped between its two steps leaves (both passwords in Vault,
    rolled out by deploy.py): the next rotation of that key makes no third password; it only
    removes the old one."""
    path = f"{PREFIX}/food"
    version, data = latest(vault, path)
    old, interim = data["REDIS_PASSWORD"], "Interim" + hashlib.sha256(os.urandom(16)).hexdigest()
    vault.secrets.kv.v2.create_or_update_secret(
        path=path, secret={**data, "REDIS_PASSWORD": interim, REDIS_PREVIOUS_KEY: old},
        cas=version, mount_point=MOUNT)
    rolled = deploy(REPO)
    assert rolled.returncode == 0, output(rolled)[-3000:]
    assert [as_user(testbed, "food", p, "PING") for p in (old, interim)] == ["PONG", "PONG"]
    res = rotate("--data", "rotate=food/REDIS_PASSWORD")
    text = output(res)
    assert res.returncode == 0, text[-3000:]
    assert f"resume {path}#REDIS_PASSWORD" in text
    assert latest(vault, path) == (version + 2, {**data, "REDIS_PASSWORD": interim})
    assert as_user(testbed, "food", old, "PING") == "error WRONGPASS"
    assert as_user(testbed, "food", interim, "PING") == "PONG"
    assert service_get(testbed.hosts[0].address, "food", "/api/rate-limited")[0] == 200
    assert_never_shown(testbed, [output(rolled), text],
                       {"old food Redis password": old, "interim food Redis password": interim})
