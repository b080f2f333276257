"""ops/secrets/vault.py and ops/secrets/bootstrap.py: the parts that need no Vault server.

Settings, credentials, error translation (nothing of hvac's request details may leak), the
FetchedSecrets container, policies and generators. Against the real OpenBao:
tests/integration/test_vault.py.
"""

from __future__ import annotations

import copy
import pickle
import re
import socket
import string
from dataclasses import replace

import hvac.exceptions
import pytest
import requests

from ops.catalog import REPO_ROOT, load_environment
from ops.catalog.model import SecretRef
from ops.secrets.approle import SecretIdLimits
from ops.secrets.bootstrap import (
    GENERATORS,
    BootstrapReport,
    fake_value,
    mint_lines,
    new_value,
    operator_set,
    policy_documents,
    role_differences,
    rotated_paths,
)
from ops.secrets.rotation import rotatable_refs
from ops.secrets.vault import (
    FetchedSecrets,
    VaultDenied,
    VaultError,
    VaultSettings,
    credential,
    http_error,
    login_refused,
    open_session,
    transport_error,
)

CANARY = "canary-7f3a9-VALUE"


@pytest.fixture(scope="module")
def local():
    return load_environment("local")


@pytest.fixture(scope="module")
def prod():
    return load_environment("prod")


def settings(**overrides) -> VaultSettings:
    base = {"env": "t", "addr": "https://vault.example:8200", "mount": "secret",
            "path_prefix": "superapp/t", "auth_method": "approle",
            "ca_path": "/etc/ca.pem", "plain_http_allowed": False, "timeout": 1.0}
    return VaultSettings(**{**base, **overrides})


# --- settings and transport ---------------------------------------------------------------------

def test_settings_from_group_data(local, prod):
    s = VaultSettings.from_environment(local)
    assert (s.addr, s.mount, s.auth_method, s.plain_http_allowed, s.verify) == (
        "http://127.0.0.1:8200", "secret", "token", True, True)
    p = VaultSettings.from_environment(prod)
    assert (p.auth_method, p.plain_http_allowed, p.verify) == (
        "approle", False, "/etc/superapp/vault-ca.pem")


def test_tls_verification_is_never_off():
    assert settings(ca_path=None).verify is True
    assert settings().verify == "/etc/ca.pem"


@pytest.mark.parametrize(("addr", "allowed", "error"), [
    ("https://vault.example:8200", False, None),
    ("http://127.0.0.1:8200", True, None),
    ("http://127.0.0.1:8200", False, "plain http is refused"),
    ("http://vault.example:8200", True, "only covers a loopback address"),
    ("ftp://vault.example", True, "must be an https:// URL"),
])
def test_check_transport(addr, allowed, error):
    s = settings(addr=addr, plain_http_allowed=allowed)
    if error is None:
        s.check_transport()
    else:
        with pytest.raises(VaultError, match=error):
            s.check_transport()


# --- credentials --------------------------------------------------------------------------------

def test_credential_from_variable_then_file(tmp_path):
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(CANARY + "\n")
    secret_file.chmod(0o600)
    assert credential({"VAULT_SECRET_ID": "direct"}, "VAULT_SECRET_ID", private=True) == "direct"
    assert credential({"VAULT_SECRET_ID_FILE": str(secret_file)}, "VAULT_SECRET_ID",
                      private=True) == CANARY
    assert credential({}, "VAULT_TOKEN", private=True,
                      file_setting=("vault.token_file", str(secret_file))) == CANARY
    assert credential({}, "VAULT_TOKEN", private=True) is None


def test_credential_file_refusals(tmp_path):
    loose = tmp_path / "loose"
    loose.write_text(CANARY)
    loose.chmod(0o644)
    with pytest.raises(VaultError, match=r"VAULT_SECRET_ID_FILE=.*mode 0644.*chmod 600") as info:
        credential({"VAULT_SECRET_ID_FILE": str(loose)}, "VAULT_SECRET_ID", private=True)
    assert CANARY not in str(info.value)
    # a role id is an identifier, not a secret: a readable file is fine
    assert credential({"VAULT_ROLE_ID_FILE": str(loose)}, "VAULT_ROLE_ID", private=False) == CANARY
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(VaultError, match="empty"):
        credential({"VAULT_TOKEN_FILE": str(empty)}, "VAULT_TOKEN", private=True)
    with pytest.raises(VaultError, match="cannot read"):
        credential({"VAULT_TOKEN_FILE": str(tmp_path / "nope")}, "VAULT_TOKEN", private=True)


def test_credential_file_inside_the_repository_refused():
    with pytest.raises(VaultError, match="outside the repository"):
        credential({"VAULT_SECRET_ID_FILE": str(REPO_ROOT / "ops/secrets/vault.py")},
                   "VAULT_SECRET_ID", private=False)


def test_approle_without_credentials_names_both_variables():
    with pytest.raises(VaultError) as info:
        open_session(settings(), environ={})
    assert str(info.value) == ("Vault AppRole login for t: set VAULT_ROLE_ID (or "
                               "VAULT_ROLE_ID_FILE) and VAULT_SECRET_ID (or VAULT_SECRET_ID_FILE)")


def test_token_auth_without_token():
    with pytest.raises(VaultError, match="set VAULT_TOKEN"):
        open_session(settings(auth_method="token"), environ={})


# --- error translation --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_one_line():
    port = free_port()  # closed again: nothing listens
    s = settings(addr=f"http://127.0.0.1:{port}", plain_http_allowed=True, auth_method="token")
    with pytest.raises(VaultError) as info:
        open_session(s, environ={"VAULT_TOKEN": CANARY})
    assert str(info.value) == f"Vault unreachable at http://127.0.0.1:{port}: connection refused"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_no_answer_is_a_timeout():
    with socket.socket() as server:  # accepts connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        s = settings(addr=f"http://127.0.0.1:{port}", plain_http_allowed=True,
                     auth_method="token", timeout=0.5)
        with pytest.raises(VaultError) as info:
            open_session(s, environ={"VAULT_TOKEN": CANARY})
    assert str(info.value) == f"Vault unreachable at http://127.0.0.1:{port}: no answer within 0.5s"


@pytest.mark.parametrize(("exc", "message"), [
    (requests.ConnectionError(socket.gaierror(-2, "Name or service not known")),
     "Vault unreachable at https://vault.example:8200: cannot resolve the host name vault.example"),
    (requests.exceptions.SSLError("certificate verify failed"),
     "Vault unreachable at https://vault.example:8200: TLS verification failed against "
     "/etc/ca.pem (vault.ca_path)"),
    (requests.ConnectTimeout("x"),
     "Vault unreachable at https://vault.example:8200: no answer within 1s"),
    (requests.ConnectionError(ConnectionRefusedError(111, "Connection refused")),
     "Vault unreachable at https://vault.example:8200: connection refused"),
])
def test_transport_errors(exc, message):
    assert str(transport_error(settings(), exc)) == message


def hvac_error(cls):
    return cls(errors=[f"bad thing {CANARY}"], method="POST",
               url=f"https://vault.example:8200/v1/x?secret_id={CANARY}", text=CANARY,
               json={"data": CANARY})


@pytest.mark.parametrize(("cls", "message"), [
    (hvac.exceptions.VaultDown,
     "Vault at https://vault.example:8200 is sealed (HTTP 503 on read x): unseal it, then re-run"),
    (hvac.exceptions.Forbidden, "Vault at https://vault.example:8200: permission denied on read x"),
    (hvac.exceptions.InternalServerError,
     "Vault at https://vault.example:8200 answered HTTP 500 to read x"),
    (hvac.exceptions.UnexpectedError,
     "Vault at https://vault.example:8200 answered UnexpectedError to read x"),
])
def test_http_errors_drop_vault_text(cls, message):
    error = http_error(settings(), hvac_error(cls), "read x")
    assert str(error) == message
    assert CANARY not in repr(error)
    assert isinstance(error, VaultDenied) == (cls is hvac.exceptions.Forbidden)


# --- FetchedSecrets -----------------------------------------------------------------------------

def fetched() -> FetchedSecrets:
    return FetchedSecrets({"superapp/t/a#K": CANARY}, {"superapp/t/a": 3})


def test_fetched_secrets_get_and_versions():
    f = fetched()
    assert f.get(SecretRef("superapp/t/a", "K", "jwt")) == CANARY
    assert f.get(SecretRef("superapp/t/a", "PREV", "hmac", optional=True)) is None
    with pytest.raises(KeyError, match="superapp/t/a#MISSING"):
        f.get(SecretRef("superapp/t/a", "MISSING", "jwt"))
    versions = f.versions()
    versions["superapp/t/a"] = 99
    assert f.versions() == {"superapp/t/a": 3}


def test_fetched_secrets_never_show_a_value():
    f = fetched()
    for text in (repr(f), str(f), f"{f}", repr([f]), repr({"s": f})):
        assert CANARY not in text
    assert repr(f) == "<FetchedSecrets: 1 values from 1 paths>"
    for attempt in (lambda: pickle.dumps(f), lambda: copy.copy(f), lambda: copy.deepcopy(f)):
        with pytest.raises(TypeError, match="cannot be pickled"):
            attempt()


# --- bootstrap: pure parts ----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "length", "alphabet"), [
    ("jwt", 64, string.ascii_letters + string.digits + "-_"),
    ("admin-token", 48, string.ascii_letters + string.digits + "-_"),
    ("hmac", 64, "0123456789abcdef"),
    ("api-key", 40, string.ascii_letters + string.digits),
    ("password", 32, string.ascii_letters + string.digits),
])
def test_generators(kind, length, alphabet):
    values = {GENERATORS[kind]() for _ in range(50)}
    assert len(values) == 50
    assert all(len(v) == length and set(v) <= set(alphabet) for v in values)


def test_fake_values_are_well_formed_and_obviously_fake():
    def ref(kind: str, key: str) -> SecretRef:
        return SecretRef("p", key, kind)

    assert fake_value(ref("url", "SLACK_WEBHOOK_URL"), "local") == \
        "https://slack-webhook-url.superapp-local.invalid/hook"
    assert fake_value(ref("email", "ALERT_EMAIL_TO"), "local") == \
        "alert-email-to@superapp-local.invalid"
    assert fake_value(ref("hostport", "SMTP_HOST"), "local") == "smtp.superapp-local.invalid:587"
    assert fake_value(ref("string", "SMTP_USER"), "local") == "superapp-local-smtp-user"
    with pytest.raises(VaultError, match="no generator"):
        fake_value(ref("jwt", "X"), "local")


def test_operator_set_only_in_strict_environments(local, prod):
    for ref in prod.all_secret_refs():
        expected = ref.kind in {"url", "email", "hostport", "string", "api-key",
                                "tls-certificate"} \
            or ref.path == prod.vault_path("alertmanager")
        assert operator_set(prod, ref) == expected, ref
    assert not any(operator_set(local, ref) for ref in local.all_secret_refs())
    staging = replace(local, name="staging")
    assert operator_set(staging, SecretRef("p", "TOMTOM_API_KEY", "api-key"))


def test_every_local_ref_gets_a_value(local):
    assert all(new_value(local, ref) for ref in local.all_secret_refs())


def test_policies_deploy_reads_only_rotate_writes_generated_paths(prod):
    docs = policy_documents(prod)
    assert set(docs) == {"superapp-prod-deploy", "superapp-prod-rotate"}
    paths = {r.path for r in prod.all_secret_refs()}
    deploy = dict(re.findall(r'path "([^"]+)" \{\n  capabilities = \[([^]]*)\]',
                             docs["superapp-prod-deploy"]))
    lock = "secret/data/superapp/prod/locks/deploy"  # the one thing a deploy writes
    assert deploy.pop(lock) == '"create", "read", "update"'
    assert deploy.pop("secret/metadata/superapp/prod/locks/deploy") == '"read"'
    assert set(deploy) == {f"secret/data/{p}" for p in paths}
    assert set(deploy.values()) == {'"read"'}
    rotate = dict(re.findall(r'path "([^"]+)" \{\n  capabilities = \[([^]]*)\]',
                             docs["superapp-prod-rotate"]))
    writable = {p for p, caps in rotate.items() if "update" in caps}
    assert writable == {f"secret/data/{p}" for p in rotated_paths(prod)} | {lock}
    assert "secret/data/superapp/prod/alertmanager" not in writable
    assert "secret/data/superapp/prod/shared/internal-hmac" in writable
    assert rotate["secret/data/superapp/prod/alertmanager"] == '"read"'
    assert not any("*" in p or "+" in p for p in rotate)


def test_rotate_policy_writes_exactly_what_rotation_rotates(prod):
    expected = {r.path for r in rotatable_refs(prod)} | {
        prod.internal_hmac_refs()["current"].path}
    assert set(rotated_paths(prod)) == expected
    rules = policy_documents(prod)["superapp-prod-rotate"]
    blocks = dict(re.findall(r'path "([^"]+)" \{\n(.*?)\n\}', rules, re.S))
    lock = "superapp/prod/locks/deploy"
    writable = {p for p, body in blocks.items() if "update" in body}
    assert writable == {f"secret/data/{p}" for p in expected | {lock}}
    for server in ("shared/postgres", "shared/redis", "shared/pgbackrest"):  # never rotated
        assert blocks[f"secret/data/superapp/prod/{server}"] == '  capabilities = ["read"]'
    assert blocks["secret/data/superapp/prod/payments"] == (
        '  capabilities = ["read", "update"]\n  allowed_parameters = {\n    "data" = []\n'
        '    "options" = []\n    "version" = []\n  }')
    assert [p for p in blocks if "/data/" not in p] == [f"secret/metadata/{lock}"]
    assert not any(c in rules for c in ('"delete"', '"patch"', '"sudo"', '"list"'))


def test_role_differences_normalise_what_vault_reads_back():
    wanted = {"token_ttl": 900, "secret_id_ttl": 86400, "secret_id_num_uses": 1000,
              "secret_id_bound_cidrs": ["10.0.0.5"], "token_bound_cidrs": []}
    read_back = {"token_ttl": 900, "secret_id_ttl": 86400, "secret_id_num_uses": 1000,
                 "secret_id_bound_cidrs": ["10.0.0.5/32"], "token_bound_cidrs": None}
    assert role_differences(read_back, wanted) == []
    assert role_differences({**read_back, "secret_id_num_uses": 0,
                             "token_bound_cidrs": ["10.0.0.0/8"]}, wanted) == [
        "secret_id_num_uses", "token_bound_cidrs"]
    assert role_differences({}, wanted) == ["token_ttl", "secret_id_ttl", "secret_id_num_uses",
                                            "secret_id_bound_cidrs"]


def test_mint_lines_name_commands_never_values(prod):
    lines = mint_lines(VaultSettings.from_environment(prod), SecretIdLimits("24h", 1000))
    assert lines == [
        f"mint a superapp-prod-{kind} secret-id for CI (secret-id ttl 24h, 1000 login(s); the "
        "command prints only the secret-id: give it to the job as VAULT_SECRET_ID): env "
        "BAO_ADDR=https://vault.superapp.internal:8200 BAO_CACERT=/etc/superapp/vault-ca.pem bao "
        f"write -f -field=secret_id auth/approle/role/superapp-prod-{kind}/secret-id ttl=24h "
        "num_uses=1000" for kind in ("deploy", "rotate")]


def test_login_refused_names_role_addr_and_mint_command():
    message = str(login_refused(settings(secret_id_ttl="24h", secret_id_num_uses=1000)))
    assert message == (
        "Vault AppRole login refused at https://vault.example:8200/v1/auth/approle: the secret-id "
        "for role superapp-t-deploy (or superapp-t-rotate, for a rotation) is expired, used up or "
        "wrong (or VAULT_ROLE_ID is not that role's, or this address is outside the role's "
        "secret_id_bound_cidrs). Mint a new secret-id with an operator's token:\n"
        "    env BAO_ADDR=https://vault.example:8200 BAO_CACERT=/etc/ca.pem bao write -f "
        "-field=secret_id auth/approle/role/superapp-t-deploy/secret-id ttl=24h num_uses=1000\n"
        "and give it to the run as VAULT_SECRET_ID (or VAULT_SECRET_ID_FILE).")


@pytest.mark.parametrize("refusal", [hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden])
def test_refused_login_never_shows_the_secret_id(monkeypatch, refusal):
    def login(self, role_id, secret_id, **kwargs):
        raise refusal(f"invalid role or secret ID ({role_id} {secret_id})")

    monkeypatch.setattr("ops.secrets.vault.check_health", lambda settings, client: None)
    monkeypatch.setattr(hvac.api.auth_methods.AppRole, "login", login)
    with pytest.raises(VaultError) as info:
        open_session(settings(), environ={"VAULT_ROLE_ID": "role-" + CANARY,
                                          "VAULT_SECRET_ID": CANARY})
    assert str(info.value).startswith("Vault AppRole login refused at https://vault.example:8200")
    assert CANARY not in str(info.value) + repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_report_lines_name_keys_not_values():
    report = BootstrapReport(env="t", dry=False, created=["superapp/t/a#K (jwt)"],
                             operator=["superapp/t/b#URL (url)"], present=2,
                             access=[("create", "policy superapp-t-deploy")],
                             mint=["mint a superapp-t-deploy secret-id ..."])
    assert report.lines() == [
        "created policy superapp-t-deploy",
        "created superapp/t/a#K (jwt)",
        "operator must set superapp/t/b#URL (url)",
        "mint a superapp-t-deploy secret-id ...",
        "Vault bootstrap t: created 1 secret(s), 2 already set, 1 policy/role change(s); 1 must "
        "be set by an operator (`bao kv patch`) before the deploy will run",
    ]
    report.dry = True
    assert report.lines()[0] == "would create policy superapp-t-deploy"
