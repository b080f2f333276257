"""The dry run, drift detection and fleet status on the testbed (issue 9).

The fleet first runs this repo's release (a no-op when it already does). Every test restores
what it changes (Vault values, hand edits on hosts), so the fleet ends healthy.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

import hvac
import pytest

from ops.catalog import load_environment

from .conftest import REPO, Testbed
from .release import deploy, output, pyinfra, release_copy
from .test_rollout import lock_record

pytestmark = pytest.mark.integration

ENV = load_environment("local")
CANARY = "CANARY-dry-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:20]
PAYMENTS = "superapp/local/payments"


def deploy_when_free(cwd) -> object:
    """Deploy; another deploy holding the lock (the testbed is shared) is waited for."""
    for _ in range(12):
        res = deploy(cwd)
        if "deploy lock is held by" not in output(res):
            return res
        time.sleep(10)
    return res


@pytest.fixture(scope="module")
def baseline(testbed: Testbed):
    res = deploy_when_free(REPO)
    assert res.returncode == 0, output(res)[-4000:]
    return res


def fingerprint(testbed: Testbed) -> dict[str, str]:
    """Per host: every deploy file's hash, the container list and the ledger (and, once, the
    environment's deploy lock in Vault: a dry run never takes it)."""
    out = {}
    for h in testbed.hosts:
        out[h.name] = testbed.ssh(h, (
            "find /opt/superapp /etc/superapp /etc/cron.d /var/lib/superapp/services -type f "
            "-exec sha256sum {} + | sort | sha256sum; docker ps -a --format "
            "'{{.Names}} {{.ID}} {{.State}}' | sort | sha256sum; "
            "sha256sum /var/lib/superapp/releases.jsonl"
        )).stdout
    out["vault lock"] = json.dumps(lock_record(testbed), sort_keys=True)
    return out


def dry_run(cwd, *extra: str):
    return pyinfra(cwd, "inventories/local.py", "deploy.py", "--dry", *extra, timeout=300)


def unchanging_dry_run(testbed: Testbed, cwd, *extra: str):
    """A dry run during which no host changed. The testbed is shared: when another deploy ran
    meanwhile (its lock or ledger entry shows), the proof is retried, never assumed."""
    for _ in range(6):
        while lock_record(testbed).get("token"):
            time.sleep(5)  # another deploy holds the lock
        before = fingerprint(testbed)
        res = dry_run(cwd, *extra)
        after = fingerprint(testbed)
        if before == after:
            return res
        foreign = lock_record(testbed).get("token") or any(
            before[h].split("\n")[2] != after[h].split("\n")[2]
            for h in after if h != "vault lock")
        assert foreign, f"the dry run changed a host:\n{before}\n{after}"
    raise AssertionError("another deploy kept changing the testbed; no clean dry run")


def swapped(text: str) -> set[tuple[str, str]]:
    """(host, service) pairs the dry run would swap."""
    pairs, host = set(), None
    for line in text.splitlines():
        if line.startswith("--> host"):
            host = line.split()[1]
        elif line.startswith("    swap ") and host:
            pairs.add((host, line.split()[1]))
    return pairs


def test_dry_run_of_one_image_tag_shows_exactly_that_service(baseline, testbed, tmp_path):
    tree = release_copy(tmp_path / "food-v2", {"image_tags": '{"food": "v2"}'})
    res = unchanging_dry_run(testbed, tree, "--diff")
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    food_hosts = {h.name for h in ENV.hosts_running("food")}
    assert swapped(text) == {(h, "food") for h in food_hosts}, text[-4000:]
    assert "image 10.231.0.1:5000/superapp/standin v1 -> v2" in text
    # the compose diff: the tag and the digest the registry holds for it now
    assert re.search(r'\+    image: "10\.231\.0\.1:5000/superapp/standin:v2@sha256:[0-9a-f]{64}"',
                     text), text[-4000:]
    order = [text.index(f"--> {h.name} (") for h in ENV.hosts]
    assert order == sorted(order)
    assert "--> Dry-run summary (local): " in text


@pytest.fixture
def vault(testbed: Testbed):
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    kv = client.secrets.kv.v2
    original = kv.read_secret_version(path=PAYMENTS, mount_point="secret",
                                      raise_on_deleted_version=True)["data"]["data"]
    yield client
    kv.create_or_update_secret(path=PAYMENTS, secret=original, mount_point="secret")


def every_secret_value(client) -> set[str]:
    """Every value under the environment's prefix, except the deploy lock's record (who holds
    it and since when: printed on purpose when a run is refused, never a secret)."""
    values, kv = set(), client.secrets.kv.v2
    stack = [ENV.settings["vault"]["path_prefix"]]
    locks = ENV.vault_path("locks")
    while stack:
        path = stack.pop()
        if path == locks:
            continue
        for key in kv.list_secrets(path=path, mount_point="secret")["data"]["keys"]:
            if key.endswith("/"):
                stack.append(f"{path}/{key.rstrip('/')}")
            else:
                data = kv.read_secret_version(path=f"{path}/{key}", mount_point="secret",
                                              raise_on_deleted_version=True)["data"]["data"]
                values |= {v for v in data.values() if isinstance(v, str) and len(v) >= 8}
    return values


def test_dry_run_after_a_vault_change_names_the_key_never_a_value(baseline, testbed, vault):
    kv = vault.secrets.kv.v2
    data = kv.read_secret_version(path=PAYMENTS, mount_point="secret",
                                  raise_on_deleted_version=True)["data"]["data"]
    kv.create_or_update_secret(path=PAYMENTS, secret={**data, "JWT_SECRET": CANARY},
                               mount_point="secret")
    res = unchanging_dry_run(testbed, REPO, "--diff")
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    assert CANARY not in text
    leaked = [v[:4] + "..." for v in every_secret_value(vault) if v in text]
    assert not leaked, f"secret values in the dry run output: {leaked}"
    assert {s for _, s in swapped(text)} == {"payments"}, text[-4000:]
    assert "secret JWT_SECRET changed (vault superapp/local/payments v" in text
    masked = [line for line in text.splitlines() if "+JWT_SECRET=<vault " in line]
    assert masked and all(line.endswith(": changed>") for line in masked), masked
    # the same path's other keys are context, unchanged
    assert "+DATABASE_URL" not in text


def drift_run():
    return pyinfra(REPO, "inventories/local.py", "tasks/drift.py", timeout=300)


def status_run(*extra: str):
    return pyinfra(REPO, "inventories/local.py", "tasks/status.py", *extra, timeout=300)


def test_hand_edit_and_stopped_container_are_drift_and_down_then_fixed(baseline, testbed):
    # start from a fleet on this repo's release with what Vault holds now (the test before
    # changed a secret): every drift row below is then this test's own doing
    res = deploy_when_free(REPO)
    assert res.returncode == 0, output(res)[-4000:]
    assert "no drift" in output(drift_run())
    host = testbed.host("host2")
    slot = testbed.ssh(host, "python3 -c \"import json;print(json.load(open("
                             "'/var/lib/superapp/services/food.json'))['slot'])\"").stdout.strip()
    container = ENV.services["food"].container_name(slot)
    compose = "/opt/superapp/compose/food.yml"
    testbed.ssh(host, f"echo '# edited by hand' >> {compose} && docker stop -t 2 {container}")
    try:
        res = drift_run()
        text = output(res)
        assert res.returncode == 1, text[-3000:]
        rows = [line.split(None, 3) for line in text.splitlines() if line.startswith("host")]
        assert ["host2", "file", compose, "edited on the host: differs from the release"] in rows
        assert any(r[:3] == ["host2", "container", container] and "not running" in r[3]
                   for r in rows), text[-3000:]
        assert not any(r[0] in ("host1", "host3") and "food" in r[2] for r in rows), rows

        res = status_run("--data", "service=food")
        text = output(res)
        assert res.returncode == 0, text[-3000:]
        table = {tuple(line.split()[:2]): line for line in text.splitlines()
                 if re.match(r"host\d+ ", line)}
        assert "down (exited" in table[("host2", "food")]
        assert "up" in table[("host1", "food")].split()[5]
        assert "up" in table[("host3", "food")].split()[5]
        assert not any(s != "food" for _, s in table)
    finally:
        res = deploy_when_free(REPO)
    assert res.returncode == 0, output(res)[-4000:]
    text = output(drift_run())
    assert compose not in text and f" {container} " not in text, text[-3000:]
    status = output(status_run("--data", "service=food", "--data", "logs=food"))
    food_rows = [line for line in status.splitlines() if re.match(r"host\d+ +food ", line)]
    assert len(food_rows) == len(ENV.hosts_running("food")), status
    assert all(line.split()[5] == "up" for line in food_rows), status
    assert "--> host2 food-" in status  # its last log lines
