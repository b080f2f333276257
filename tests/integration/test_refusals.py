"""Bad input stops the deploy before any host is changed, with one line naming what and where:
Vault unreachable, sealed, a denied path, missing keys, a typo or a broken invariant in
group_data. Each run carries a real change (a new image for one service) that must not land.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import hvac
import pytest

from ops.catalog import load_environment

from .conftest import Testbed
from .release import output, pyinfra, release_copy
from .test_rollout import deploy_tree_hash, lock_record, other_version, set_sshd
from .test_vault import free_port, throwaway_bao  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

ENV = load_environment("local")


@pytest.fixture(autouse=True)
def _fleet_is_deployed(deployed):
    """Every refusal is measured against a running fleet."""


def fleet(testbed: Testbed) -> list[str]:
    """Every host's deploy directories, containers and ledger, hashed, and the deploy lock."""
    return [deploy_tree_hash(testbed, h)
            + testbed.ssh(h, "sha256sum /var/lib/superapp/releases.jsonl 2>/dev/null; true").stdout
            for h in testbed.hosts] + [json.dumps(lock_record(testbed), sort_keys=True)]


def vault_settings(**changes: object) -> str:
    return repr({**ENV.settings["vault"], **changes})


def refused(testbed: Testbed, tmp_path, data: dict[str, str], env: dict | None = None) -> str:
    change = {"image_tags": f'{{"stays": "{other_version(testbed, "stays")}"}}'}
    tree = release_copy(tmp_path, {**change, **data})
    before = fleet(testbed)
    res = pyinfra(tree, "-y", "inventories/local.py", "deploy.py", env=env)
    out = output(res)
    assert res.returncode != 0, out[-3000:]
    assert fleet(testbed) == before, "a host changed"
    return out


def test_vault_unreachable(testbed, tmp_path):
    port = free_port()
    out = refused(testbed, tmp_path, {"vault": vault_settings(addr=f"http://127.0.0.1:{port}")})
    assert f"Vault unreachable at http://127.0.0.1:{port}: connection refused" in out


def test_vault_sealed(testbed, tmp_path, throwaway_bao):  # noqa: F811
    addr, token = throwaway_bao
    client = hvac.Client(url=addr, token=token)
    client.sys.seal()
    out = refused(testbed, tmp_path, {"vault": vault_settings(addr=addr)},
                  env={"VAULT_TOKEN": str(token)})
    assert f"Vault at {addr} is sealed: unseal it, then re-run" in out


def test_missing_secrets_are_listed_together(testbed, tmp_path):
    root = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    kv = root.secrets.kv.v2
    keep = {}
    for path, key in (("superapp/local/payments", "JWT_SECRET"),
                      ("superapp/local/taxi", "TOMTOM_API_KEY")):
        data = kv.read_secret_version(path=path, mount_point="secret",
                                      raise_on_deleted_version=True)["data"]["data"]
        keep[path] = data
        kv.create_or_update_secret(path=path, mount_point="secret",
                                   secret={k: v for k, v in data.items() if k != key})
    try:
        out = refused(testbed, tmp_path, {})
    finally:
        for path, data in keep.items():
            kv.create_or_update_secret(path=path, secret=data, mount_point="secret")
    assert "superapp/local/payments#JWT_SECRET" in out
    assert "superapp/local/taxi#TOMTOM_API_KEY" in out
    assert out.count("pyinfra error") == 1


def test_denied_path(testbed, tmp_path):
    root = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    name = f"superapp-test-partial-{secrets.token_hex(3)}"
    root.sys.create_or_update_policy(
        name=name, policy='path "secret/data/superapp/local/payments" { capabilities = ["read"] }')
    token = root.auth.token.create(policies=[name], ttl="5m")["auth"]["client_token"]
    try:
        out = refused(testbed, tmp_path, {}, env={"VAULT_TOKEN": token})
        assert "permission denied" in out and "superapp/local/taxi" in out
    finally:
        root.sys.delete_policy(name)


def test_typo_in_group_data_names_the_file_and_key(testbed, tmp_path):
    out = refused(testbed, tmp_path, {"alowed_origins": "{}"})
    assert "group_data/local.py: unknown key 'alowed_origins' (did you mean " \
           "'allowed_origins'?)" in out


def test_broken_invariant_names_the_file_and_key(testbed, tmp_path):
    out = refused(testbed, tmp_path, {"hmac_replay_window_seconds": "900"})
    assert "group_data/local.py: hmac_replay_window_seconds" in out


def test_a_database_cluster_without_its_secrets_is_refused_and_read_by_failover_and_status(
        testbed, tmp_path):
    """group_data `db_ha` (host2 a second db host) whose secrets are not in Vault (its logins,
    etcd's CA and certificates: `ops.secrets.bootstrap` makes them): deploy.py refuses it
    before any host changes, naming the path; tasks/failover.py and tasks/status.py read the
    cluster through the hosts' own connections (`docker exec patroni` on each member) and, no
    cluster running here, say so without changing anything. (A deploy of a cluster:
    test_dbha_deploy.py.)"""
    root = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    for path in ("superapp/local/shared/dbha", "superapp/local/shared/dbha-tls"):
        # (the whole-fleet test makes them, when it ran before on this testbed)
        root.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
    hosts = [{**h, "roles": ["app", "db"]} if h["name"] == "host2" else h
             for h in ENV.settings["hosts"][:3]]
    cluster = {"scope": "superapp", "members": ["host1", "host2"],
               "etcd": ["host1", "host2", "host3"], "replication": "synchronous"}
    out = refused(testbed, tmp_path, {"hosts": repr(hosts), "db_ha": repr(cluster)})
    assert "superapp/local/shared/dbha" in out, out[-3000:]
    before = fleet(testbed)
    res = pyinfra(tmp_path, "inventories/local.py", "tasks/failover.py", "--data", "to=host2",
                  timeout=300)
    out = output(res)
    assert res.returncode != 0, out[-3000:]
    assert "no member of the database cluster superapp answers /cluster: host1: " in out
    assert "No such container: patroni" in out
    res = pyinfra(tmp_path, "inventories/local.py", "tasks/status.py", timeout=300)
    out = output(res)
    assert res.returncode == 0, out[-3000:]
    assert "--> database cluster superapp: UNKNOWN: no member of the database cluster " \
           "superapp answers /cluster" in out
    assert fleet(testbed) == before, "a host changed"


def test_failover_without_a_cluster_names_the_file_and_the_single_db_host(testbed, tmp_path):
    res = pyinfra(release_copy(tmp_path), "inventories/local.py", "tasks/failover.py",
                  "--data", "to=host2", timeout=300)
    out = output(res)
    assert res.returncode != 0, out[-3000:]
    assert "group_data/local.py: no `db_ha`: local runs one PostgreSQL on host1, with no " \
           "standby to hand over to (ops/runbooks/db-failover.md)" in out


def test_vault_token_never_appears_in_the_output(testbed, tmp_path):
    # the failure paths above print Vault addresses and paths, never the token
    out = refused(testbed, tmp_path, {"vault": vault_settings(path_prefix="superapp/none")},
                  env={"VAULT_TOKEN": testbed.vault_token})
    assert testbed.vault_token not in out


HOST2_KEY = Path("/var/lib/superapp-testbed/hosts/host2/ssh_host_ed25519_key")


def test_changed_host_key_is_refused_before_anything_is_sent(testbed, tmp_path):
    """host2 is "reinstalled": its sshd restarts with a new host key. The pinned key no longer
    matches: the handshake fails before authentication, no host changes, and the refusal says
    what to verify. The old key is put back afterwards (and ssh checks it again)."""
    tree = release_copy(tmp_path / "tree", {
        "image_tags": f'{{"stays": "{other_version(testbed, "stays")}"}}'})
    before = fleet(testbed)  # read while the key still matches
    saved = tmp_path / "saved"
    saved.mkdir()
    for suffix in ("", ".pub"):
        shutil.copy2(f"{HOST2_KEY}{suffix}", saved / f"key{suffix}")
    HOST2_KEY.unlink()
    Path(f"{HOST2_KEY}.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(HOST2_KEY)],
                   check=True)
    set_sshd("host2", "stop")
    set_sshd("host2", "start")
    try:
        res = pyinfra(tree, "-y", "inventories/local.py", "deploy.py")
    finally:
        for suffix in ("", ".pub"):
            shutil.copy2(saved / f"key{suffix}", f"{HOST2_KEY}{suffix}")
        set_sshd("host2", "stop")
        set_sshd("host2", "start")
    out = output(res)
    assert res.returncode != 0, out[-3000:]
    assert fleet(testbed) == before, "a host changed"
    assert "Host key for 10.231.0.12 does not match" in out
    assert "refusing to deploy local: cannot reach host2" in out
    assert ("host keys are pinned in /var/lib/superapp-testbed/ssh/known_hosts: if pyinfra "
            "says the key does not match" in out)
    assert "Authentication" not in out
    assert testbed.ssh(testbed.hosts[1], "true").returncode == 0  # the real key is back


def test_unpinned_host_is_refused(testbed, tmp_path):
    """A known_hosts file without host3: pyinfra must not trust it on first use (accept-new)."""
    known = tmp_path / "known_hosts"
    pinned = Path(testbed.status["ssh_known_hosts"]).read_text().splitlines()
    known.write_text("".join(f"{line}\n" for line in pinned
                             if not line.startswith("10.231.0.13 ")))
    out = refused(testbed, tmp_path, {"ssh_known_hosts_file": repr(str(known))})
    assert "No host key for 10.231.0.13 found in known_hosts" in out
    assert (f"host3 (10.231.0.13): no host key pinned in {known}; add the key verified out of "
            "band, then re-run" in out)
    assert "10.231.0.13" not in known.read_text()  # not added behind the operator's back
