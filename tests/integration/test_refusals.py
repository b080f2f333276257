"""Bad input stops the deploy before any host is changed, with one line naming what and where:
Vault unreachable, sealed, a denied path, missing keys, a typo or a broken invariant in
group_data. Each run carries a real change (a new image for one service) that must not land.
"""

from __future__ import annotations

import json
import secrets

import hvac
import pytest

from ops.catalog import load_environment

from .conftest import Testbed
from .release import output, pyinfra, release_copy
from .test_rollout import deploy_tree_hash, lock_record, other_version
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


def test_vault_token_never_appears_in_the_output(testbed, tmp_path):
    # the failure paths above print Vault addresses and paths, never the token
    out = refused(testbed, tmp_path, {"vault": vault_settings(path_prefix="superapp/none")},
                  env={"VAULT_TOKEN": testbed.vault_token})
    assert testbed.vault_token not in out
