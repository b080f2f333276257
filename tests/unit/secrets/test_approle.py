"""ops/secrets/approle.py: role names, secret-id limits, the mint command (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops.catalog import load_environment
from ops.catalog.group_data_schema import GROUP_DATA
from ops.secrets.approle import (
    SecretIdLimits,
    duration_seconds,
    mint_argv,
    mint_command,
    role_names,
)
from ops.secrets.vault import VaultSettings


@pytest.fixture(scope="module")
def prod():
    return load_environment("prod")


def test_role_names():
    assert role_names("prod") == {"deploy": "superapp-prod-deploy",
                                  "rotate": "superapp-prod-rotate"}


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2), ("15m", 900), ("24h", 86400),
                                               ("7d", 604800)])
def test_duration_seconds(text, seconds):
    assert duration_seconds(text) == seconds


def test_prod_limits_from_group_data(prod):
    limits = SecretIdLimits.from_vault_settings(prod.settings["vault"])
    assert limits == SecretIdLimits(ttl="24h", num_uses=1000)
    assert limits.role_fields() == {"secret_id_ttl": 86400, "secret_id_num_uses": 1000,
                                    "secret_id_bound_cidrs": [], "token_bound_cidrs": []}
    assert limits.describe() == "secret-id ttl 24h, 1000 login(s)"


def test_bound_limits_describe_and_sort():
    limits = SecretIdLimits("2h", 5, ("10.2.0.0/16", "10.1.0.0/16"), ("10.9.0.1",))
    assert limits.role_fields()["secret_id_bound_cidrs"] == ["10.1.0.0/16", "10.2.0.0/16"]
    assert limits.describe() == "secret-id ttl 2h, 5 login(s), from 10.2.0.0/16, 10.1.0.0/16"


def test_mint_argv_prod(prod):
    settings = VaultSettings.from_environment(prod)
    assert mint_argv(settings, "superapp-prod-deploy") == [
        "env", "BAO_ADDR=https://vault.superapp.internal:8200",
        "BAO_CACERT=/etc/superapp/vault-ca.pem", "bao", "write", "-f", "-field=secret_id",
        "auth/approle/role/superapp-prod-deploy/secret-id", "ttl=24h", "num_uses=1000"]


def test_mint_command_without_ca_or_limits_is_quoted(prod):
    settings = replace(VaultSettings.from_environment(prod), addr="https://v.example:8200/a b",
                       ca_path=None, secret_id_ttl=None, secret_id_num_uses=None)
    assert mint_command(settings, "r") == ("env 'BAO_ADDR=https://v.example:8200/a b' bao write "
                                           "-f -field=secret_id auth/approle/role/r/secret-id")


def check_vault(**overrides) -> list[tuple[str, str]]:
    vault = {"addr": "https://v.example:8200", "mount": "secret", "path_prefix": "p",
             "auth_method": "approle", "ca_path": None, **overrides}
    errors: list[tuple[str, str]] = []
    GROUP_DATA.fields["vault"].type.check(vault, "vault", errors)
    return errors


def test_schema_defaults_and_refusals():
    errors: list[tuple[str, str]] = []
    checked = GROUP_DATA.fields["vault"].type.check(
        {"addr": "https://v.example:8200", "mount": "secret", "path_prefix": "p",
         "auth_method": "approle", "ca_path": None}, "vault", errors)
    assert errors == []
    assert {k: checked[k] for k in ("secret_id_ttl", "secret_id_num_uses",
                                    "secret_id_bound_cidrs", "token_bound_cidrs")} == {
        "secret_id_ttl": "24h", "secret_id_num_uses": 1000, "secret_id_bound_cidrs": [],
        "token_bound_cidrs": []}
    assert check_vault(secret_id_ttl="2h", secret_id_num_uses=5,
                       secret_id_bound_cidrs=["10.0.0.0/8", "192.0.2.7"]) == []
    assert [path for path, _ in check_vault(secret_id_num_uses=0)] == ["vault.secret_id_num_uses"]
    assert [path for path, _ in check_vault(secret_id_ttl="1 day")] == ["vault.secret_id_ttl"]
    assert [path for path, _ in check_vault(token_bound_cidrs=["ci-runners"])] == [
        "vault.token_bound_cidrs.0"]
