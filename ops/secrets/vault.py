"""Vault (KV v2, via hvac) on the controller: log in, read every secret an environment needs.

- `VaultSettings.from_environment(env)`: the `vault` group_data section plus relaxations.
- `open_session(settings, environ=None)`: a logged-in hvac client (AppRole, or a token for
  development); a token it obtained by logging in is revoked when the session closes.
- `fetch_secrets(env, versions=None, environ=None) -> FetchedSecrets`: every path read once,
  before any host is changed; one `VaultError` lists every missing or unreadable path#key.

Never puts a secret value (nor a token, role id or secret id) in a message, repr, log line or
exception: hvac exceptions carry request details, so they are translated and never chained.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import requests

from ops.catalog.loader import REPO_ROOT
from ops.catalog.model import Environment, SecretRef
from ops.secrets.approle import APPROLE_MOUNT, mint_command, role_names

DEFAULT_TIMEOUT_SECONDS = 10.0
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class VaultError(Exception):
    """Vault could not give the run what it needs; the message names what and where, no value."""


class VaultDenied(VaultError):
    """The token's policy does not allow the request (HTTP 403)."""


@dataclass(frozen=True)
class VaultSettings:
    """How to reach and authenticate to the environment's Vault (group_data `vault`)."""

    env: str
    addr: str
    mount: str
    path_prefix: str
    auth_method: str  # approle | token
    ca_path: str | None
    plain_http_allowed: bool  # relaxation "vault-plain-http" (local only)
    token_file: str | None = None  # token auth: file holding the token when VAULT_TOKEN is unset
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    # AppRole: the limits a new secret-id is minted with (named in the "mint one" hint)
    secret_id_ttl: str | None = None
    secret_id_num_uses: int | None = None

    @classmethod
    def from_environment(cls, environment: Environment) -> VaultSettings:
        vault = environment.settings["vault"]
        return cls(
            env=environment.name,
            addr=vault["addr"].rstrip("/"),
            mount=vault["mount"],
            path_prefix=vault["path_prefix"],
            auth_method=vault["auth_method"],
            ca_path=vault.get("ca_path"),
            plain_http_allowed="vault-plain-http" in environment.settings.get("relaxations", ()),
            token_file=vault.get("token_file"),
            timeout=float(vault.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            secret_id_ttl=vault.get("secret_id_ttl"),
            secret_id_num_uses=vault.get("secret_id_num_uses"),
        )

    @property
    def verify(self) -> str | bool:
        """TLS verification: the configured CA bundle, else the system's; never off."""
        return self.ca_path or True

    def check_transport(self) -> None:
        url = urlsplit(self.addr)
        if url.scheme == "https":
            return
        if url.scheme != "http":
            raise VaultError(f"vault.addr {self.addr}: must be an https:// URL")
        if not self.plain_http_allowed:
            raise VaultError(f"vault.addr {self.addr}: plain http is refused (tokens and secrets "
                             "would cross the network in clear); use https with vault.ca_path")
        if url.hostname not in LOOPBACK_HOSTS:
            raise VaultError(f"vault.addr {self.addr}: the 'vault-plain-http' relaxation only "
                             "covers a loopback address")


# --- credentials -------------------------------------------------------------------------------

def read_credential_file(variable: str, path: str, private: bool) -> str:
    """The stripped content of a credential file named by `variable`; refuse unsafe places."""
    file = Path(path).expanduser()
    where = f"{variable}={path}"
    try:
        resolved = file.resolve()
        if resolved.is_relative_to(REPO_ROOT):
            raise VaultError(f"{where}: credentials must live outside the repository")
        info = file.stat()
        if private and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise VaultError(f"{where}: readable by group or others "
                             f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
        content = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise VaultError(f"{where}: cannot read ({exc.strerror})") from None
    if not content:
        raise VaultError(f"{where}: the file is empty")
    return content


def credential(environ: Mapping[str, str], name: str, private: bool,
               file_setting: tuple[str, str | None] | None = None) -> str | None:
    """`$NAME`, else the file named by `$NAME_FILE`, else the file named by a setting."""
    if environ.get(name):
        return environ[name].strip()
    if environ.get(f"{name}_FILE"):
        return read_credential_file(f"{name}_FILE", environ[f"{name}_FILE"], private)
    if file_setting and file_setting[1]:
        return read_credential_file(file_setting[0], file_setting[1], private)
    return None


# --- error translation --------------------------------------------------------------------------

def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kinds):
            return True
        if any(isinstance(a, kinds) for a in getattr(current, "args", ())):
            return True
        current = current.__cause__ or current.__context__
    return False


def transport_error(settings: VaultSettings, exc: requests.RequestException) -> VaultError:
    """One line for a request that never got an HTTP answer (never the request itself)."""
    where = f"Vault unreachable at {settings.addr}"
    if isinstance(exc, requests.exceptions.SSLError) or _caused_by(exc, (ssl.SSLError,)):
        ca = settings.ca_path or "the system CA bundle"
        return VaultError(f"{where}: TLS verification failed against {ca} (vault.ca_path)")
    if isinstance(exc, requests.exceptions.InvalidJSONError):
        return VaultError(f"{where}: the answer is not Vault's API (wrong vault.addr?)")
    if isinstance(exc, requests.Timeout):
        return VaultError(f"{where}: no answer within {settings.timeout:g}s")
    if _caused_by(exc, (socket.gaierror,)) or "Name or service not known" in repr(exc) \
            or "Failed to resolve" in repr(exc):
        return VaultError(f"{where}: cannot resolve the host name "
                          f"{urlsplit(settings.addr).hostname}")
    if _caused_by(exc, (ConnectionRefusedError,)) or "Connection refused" in repr(exc):
        return VaultError(f"{where}: connection refused")
    return VaultError(f"{where}: {type(exc).__name__}")


def http_error(settings: VaultSettings, exc: hvac.exceptions.VaultError, action: str) -> VaultError:
    """One line for an HTTP error answer; Vault's own text is dropped except for known cases."""
    if isinstance(exc, hvac.exceptions.VaultDown):
        return VaultError(f"Vault at {settings.addr} is sealed (HTTP 503 on {action}): unseal it, "
                          "then re-run")
    if isinstance(exc, hvac.exceptions.VaultNotInitialized):
        return VaultError(f"Vault at {settings.addr} is not initialized (on {action})")
    status = {
        hvac.exceptions.InvalidRequest: 400, hvac.exceptions.Unauthorized: 401,
        hvac.exceptions.Forbidden: 403, hvac.exceptions.InvalidPath: 404,
        hvac.exceptions.RateLimitExceeded: 429, hvac.exceptions.InternalServerError: 500,
        hvac.exceptions.BadGateway: 502,
    }.get(type(exc))
    code = f"HTTP {status}" if status else type(exc).__name__
    if isinstance(exc, hvac.exceptions.Forbidden):
        return VaultDenied(f"Vault at {settings.addr}: permission denied on {action}")
    return VaultError(f"Vault at {settings.addr} answered {code} to {action}")


@contextmanager
def translated(settings: VaultSettings, action: str) -> Iterator[None]:
    """Turn hvac/requests exceptions into one-line `VaultError`s, without chaining them."""
    try:
        yield
    except VaultError:
        raise
    except requests.RequestException as exc:
        raise transport_error(settings, exc) from None
    except hvac.exceptions.VaultError as exc:
        raise http_error(settings, exc, action) from None


# --- sessions -----------------------------------------------------------------------------------

class VaultSession:
    """A logged-in hvac client; `close()` revokes the token if this session created it."""

    def __init__(self, settings: VaultSettings, client: hvac.Client, owns_token: bool):
        self.settings = settings
        self.client = client
        self.owns_token = owns_token

    def __repr__(self) -> str:
        return f"<VaultSession {self.settings.addr} ({self.settings.auth_method})>"

    def close(self) -> None:
        """Revoke a token obtained by login (best effort: it expires by its short TTL anyway)."""
        if self.owns_token and self.client.token:
            try:
                with translated(self.settings, "revoke-self"):
                    self.client.auth.token.revoke_self()
            except VaultError:
                pass  # the token's TTL is short; nothing secret to report
        self.client.token = None
        self.client.adapter.close()

    def __enter__(self) -> VaultSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def login_refused(settings: VaultSettings) -> VaultError:
    """The refused AppRole login: expired, used up or wrong, and how to mint a new secret-id.

    OpenBao answers the same "invalid role or secret ID" (HTTP 400) to an expired secret-id, a
    used-up one, an unknown one and an unknown role id, so the message names all of them. The
    credentials carry only the role id, not its name, so both roles are named. Never the
    secret-id (nor the role id) itself.
    """
    roles = role_names(settings.env)
    return VaultError(
        f"Vault AppRole login refused at {settings.addr}/v1/auth/{APPROLE_MOUNT}: the secret-id "
        f"for role {roles['deploy']} (or {roles['rotate']}, for a rotation) is expired, used up "
        "or wrong (or VAULT_ROLE_ID is not that role's, or this address is outside the role's "
        "secret_id_bound_cidrs). Mint a "
        f"new secret-id with an operator's token:\n    {mint_command(settings, roles['deploy'])}"
        "\nand give it to the run as VAULT_SECRET_ID (or VAULT_SECRET_ID_FILE).")


def check_health(settings: VaultSettings, client: hvac.Client) -> None:
    with translated(settings, "sys/health"):
        response = client.sys.read_health_status(method="GET")
    try:
        health = response.json() if hasattr(response, "json") else dict(response)
    except ValueError:
        health = {}
    if health.get("initialized") is False:
        raise VaultError(f"Vault at {settings.addr} is not initialized")
    if health.get("sealed"):
        raise VaultError(f"Vault at {settings.addr} is sealed: unseal it, then re-run")


def open_session(settings: VaultSettings, environ: Mapping[str, str] | None = None,
                 auth_method: str | None = None) -> VaultSession:
    """Check the transport, Vault's health and log in; the caller closes (or uses `with`).

    AppRole: `VAULT_ROLE_ID`/`VAULT_SECRET_ID`, or files named by `VAULT_ROLE_ID_FILE`/
    `VAULT_SECRET_ID_FILE`. Token: `VAULT_TOKEN`, else the file `VAULT_TOKEN_FILE`, else the
    file `vault.token_file` of group_data. `auth_method` overrides the setting (bootstrap uses
    an operator's token).
    """
    environ = os.environ if environ is None else environ
    method = auth_method or settings.auth_method
    settings.check_transport()
    if method == "approle":
        role_id = credential(environ, "VAULT_ROLE_ID", private=False)
        secret_id = credential(environ, "VAULT_SECRET_ID", private=True)
        missing = [n for n, v in (("VAULT_ROLE_ID", role_id), ("VAULT_SECRET_ID", secret_id))
                   if not v]
        if missing:
            raise VaultError(f"Vault AppRole login for {settings.env}: set "
                             + " and ".join(f"{n} (or {n}_FILE)" for n in missing))
        token = None
    elif method == "token":
        token = credential(environ, "VAULT_TOKEN", private=True,
                           file_setting=("vault.token_file", settings.token_file))
        if not token:
            raise VaultError(f"Vault token auth for {settings.env}: set VAULT_TOKEN (or "
                             "VAULT_TOKEN_FILE, or vault.token_file in group_data)")
    else:
        raise VaultError(f"vault.auth_method {method!r}: must be 'approle' or 'token'")

    # token="" stops hvac from picking up VAULT_TOKEN or ~/.vault-token on its own
    client = hvac.Client(url=settings.addr, token=token or "", verify=settings.verify,
                         timeout=settings.timeout)
    session = VaultSession(settings, client, owns_token=False)
    try:
        check_health(settings, client)
        if method == "approle":
            with translated(settings, f"auth/{APPROLE_MOUNT}/login"):
                try:
                    client.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                              mount_point=APPROLE_MOUNT)
                except (hvac.exceptions.InvalidRequest, hvac.exceptions.Unauthorized,
                        hvac.exceptions.Forbidden):
                    raise login_refused(settings) from None
            session.owns_token = True
        else:
            with translated(settings, "auth/token/lookup-self"):
                try:
                    client.auth.token.lookup_self()
                except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                    raise VaultError(f"Vault at {settings.addr} rejected the token (expired, "
                                     "revoked or wrong VAULT_TOKEN / token file)") from None
    except BaseException:
        session.close()
        raise
    return session


# --- reading secrets ----------------------------------------------------------------------------

class FetchedSecrets:
    """Secret values read from Vault, for rendering (`SecretValues`) and the release ledger.

    `get(ref)` returns the value (None for an absent optional one; KeyError naming the ref for
    an absent required one); `versions()` maps each KV path to the version read. Its repr and
    str never show a value, and it refuses to be pickled or copied (no accidental disk copy).
    """

    __slots__ = ("_values", "_versions")

    def __init__(self, values: Mapping[str, str], versions: Mapping[str, int]):
        self._values = dict(values)  # "path#KEY" -> value
        self._versions = dict(versions)

    def get(self, ref: SecretRef) -> str | None:
        value = self._values.get(str(ref))
        if value is None and not ref.optional:
            raise KeyError(f"missing secret {ref}")  # names the location, never a value
        return value

    def versions(self) -> dict[str, int]:
        return dict(self._versions)

    def __contains__(self, ref: object) -> bool:
        return str(ref) in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<FetchedSecrets: {len(self._values)} values from {len(self._versions)} paths>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("FetchedSecrets holds secret values: it cannot be pickled or copied")


def refs_by_path(refs: list[SecretRef]) -> dict[str, list[SecretRef]]:
    grouped: dict[str, list[SecretRef]] = {}
    for ref in refs:
        grouped.setdefault(ref.path, []).append(ref)
    return grouped


@dataclass(frozen=True)
class KvRead:
    """One KV v2 read: the data (None when the path or version does not exist) and version."""

    data: dict[str, Any] | None
    version: int | None
    deleted: bool = False

    def __repr__(self) -> str:
        keys = sorted(self.data) if self.data else []
        return f"KvRead(keys={keys}, version={self.version}, deleted={self.deleted})"


def read_kv(session: VaultSession, path: str, version: int | None = None) -> KvRead:
    """Read a KV v2 path (latest or a given version). 403 raises; 404 is `KvRead(None, ...)`."""
    settings = session.settings
    action = f"read {settings.mount}/{path}" + (f" version {version}" if version else "")
    with translated(settings, action):
        try:
            answer = session.client.secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=settings.mount,
                raise_on_deleted_version=False)
        except hvac.exceptions.InvalidPath:
            return KvRead(None, None)
    body = answer.get("data") or {}
    metadata = body.get("metadata") or {}
    deleted = bool(metadata.get("deletion_time")) or bool(metadata.get("destroyed"))
    data = None if deleted else (body.get("data") or {})
    return KvRead(data, metadata.get("version"), deleted)


class CasMismatch(VaultError):
    """A check-and-set write lost: the path moved past the version the writer read."""


def write_kv_cas(session: VaultSession, path: str, data: Mapping[str, Any], cas: int) -> int:
    """Write `data` as a new version of `path` only if its latest is still `cas` (0: the path
    must not exist yet); the new version. `CasMismatch` when someone wrote in between."""
    settings = session.settings
    with translated(settings, f"write {settings.mount}/{path}"):
        try:
            answer = session.client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=dict(data), cas=cas, mount_point=settings.mount)
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" in " ".join(exc.errors or []):
                raise CasMismatch(f"{settings.mount}/{path} changed since version {cas} was "
                                  "read") from None
            raise VaultError(f"Vault at {settings.addr} refused the write to "
                             f"{settings.mount}/{path} (HTTP 400)") from None
    return int((answer.get("data") or {}).get("version"))


def missing_secrets_error(settings: VaultSettings, problems: list[str]) -> VaultError:
    lines = "\n".join(f"  - {p}" for p in problems)
    return VaultError(
        f"Vault at {settings.addr}: {len(problems)} secret(s) missing or unreadable under "
        f"{settings.mount}/{settings.path_prefix} (nothing was changed on any host):\n{lines}\n"
        f"Fill missing ones with `pyinfra -y inventories/{settings.env}.py "
        "tasks/bootstrap_vault.py`; operator-set ones with `bao kv patch`.")


def read_refs(session: VaultSession, refs: list[SecretRef],
              versions: Mapping[str, int] | None = None) -> FetchedSecrets:
    """Read each path of `refs` once (pinned to `versions[path]` when given); check every key.

    Connection problems and a sealed Vault stop at once; denied paths, missing paths or keys,
    empty and non-string values are collected and raised together in one `VaultError`.
    """
    settings = session.settings
    versions = versions or {}
    values: dict[str, str] = {}
    read_versions: dict[str, int] = {}
    problems: list[str] = []
    for path, path_refs in refs_by_path(refs).items():
        pinned = versions.get(path)
        where = f"{settings.mount}/{path}" + (f" version {pinned}" if pinned else "")
        try:
            result = read_kv(session, path, pinned)
        except VaultDenied:
            problems.append(f"{where}: permission denied (the token's policy lacks read)")
            continue
        if result.data is None:
            required = [r.key for r in path_refs if not r.optional]
            if result.deleted:
                problems.append(f"{where}: version {result.version} is deleted or destroyed "
                                f"(keys {', '.join(required)})")
            elif pinned and required:
                problems.append(f"{where}: not found (needed for {', '.join(required)})")
            elif required:
                problems += [f"{path}#{key}: missing (no secret at this path)" for key in required]
            continue
        read_versions[path] = result.version
        for ref in path_refs:
            value = result.data.get(ref.key)
            if value is None or value == "":
                if not ref.optional:
                    problems.append(f"{ref}: missing" + (" (empty)" if value == "" else ""))
            elif not isinstance(value, str):
                problems.append(f"{ref}: not a string (a {type(value).__name__})")
            elif "\x00" in value:
                problems.append(f"{ref}: contains a NUL byte")
            else:
                values[str(ref)] = value
    if problems:
        raise missing_secrets_error(settings, problems)
    return FetchedSecrets(values, read_versions)


def fetch_secrets(environment: Environment, versions: Mapping[str, int] | None = None,
                  environ: Mapping[str, str] | None = None) -> FetchedSecrets:
    """Every secret `environment` needs, read from Vault; one `VaultError` on any problem.

    `versions` pins KV paths to versions (a rollback passes the ledger's `versions()`); paths
    not in it are read at their latest version. The login token is revoked before returning.
    """
    settings = VaultSettings.from_environment(environment)
    with open_session(settings, environ) as session:
        return read_refs(session, environment.all_secret_refs(), versions)


__all__ = [
    "FetchedSecrets", "KvRead", "VaultDenied", "VaultError", "VaultSession", "VaultSettings",
    "fetch_secrets", "open_session", "read_kv", "read_refs",
]
