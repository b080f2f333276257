"""Prepare an environment's Vault: policies, AppRoles, and every missing secret of the schema.

    python -m ops.secrets.bootstrap <env> [--dry]          (what `tasks/bootstrap_vault.py` runs)

- Policies `superapp-<env>-deploy` (read the env's paths, nothing else) and
  `superapp-<env>-rotate` (read them, write only the paths rotation changes: see
  `policy_documents` for what OpenBao can and cannot enforce); AppRoles of the same names bound
  to them, with short-lived tokens and bounded secret-ids (group_data `vault.secret_id_*`:
  TTL, use count, optionally source CIDRs), rewritten when a setting differs.
- Each missing required key gets a strong random value (`secrets`), per kind. Values issued by
  someone else (URLs, e-mail, SMTP host, third-party API keys, receiver settings) are invented
  only outside prod/staging, with obviously fake values; in prod/staging they are reported as
  "operator must set".
- Never overwrites a key that has a value: writes use KV v2 check-and-set on the version read,
  so a concurrent writer is detected (and the path re-read), never overwritten.

Prints one line per created path#key, policy or role, the command minting each role's
secret-id (for CI) and a summary; never a value. Needs an operator's token (VAULT_TOKEN,
VAULT_TOKEN_FILE or vault.token_file), not the deploy AppRole.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import string
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hvac.exceptions

from ops.catalog import ConfigError, load_environment
from ops.catalog.model import DBHA_CA_KEY, Environment, SecretRef
from ops.catalog.rules import STRICT_ENVS
from ops.secrets.approle import (
    APPROLE_MOUNT,
    SecretIdLimits,
    duration_seconds,
    mint_command,
    role_names,
)
from ops.secrets.tls import certificate_authority, issue, self_signed_bundle
from ops.secrets.vault import (
    VaultError,
    VaultSession,
    VaultSettings,
    open_session,
    read_kv,
    refs_by_path,
    translated,
)

ALNUM = string.ascii_letters + string.digits
TOKEN_TTL = "15m"  # noqa: S105 - a duration
TOKEN_MAX_TTL = "30m"  # noqa: S105 - a duration
CAS_ATTEMPTS = 3

# Kinds whose value comes from a third party (or is a setting, not a credential): never invented
# in prod/staging. `api-key` here is TomTom's: a random one would pass every check and fail live.
# `tls-certificate`: an edge domain's key and chain from the operator's CA (a self-signed one for
# the domain elsewhere, so a test client can pin it).
OPERATOR_KINDS = frozenset({"url", "email", "hostport", "string", "api-key", "tls-certificate"})



def random_alnum(length: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(length))


GENERATORS: dict[str, Callable[[], str]] = {
    "jwt": lambda: secrets.token_urlsafe(48),          # 64 url-safe chars
    "admin-token": lambda: secrets.token_urlsafe(36),  # 48 url-safe chars
    "hmac": lambda: secrets.token_hex(32),             # 64 hex chars
    "api-key": lambda: random_alnum(40),
    "password": lambda: random_alnum(32),              # alnum: safe in URLs, conf files, shells
    "redis-password": lambda: random_alnum(32),
    "db-password": lambda: random_alnum(32),
}


def fake_value(ref: SecretRef, env: str) -> str:
    """An obviously fake but well-formed value for a setting issued elsewhere (not prod/staging).

    `.invalid` never resolves (RFC 2606), so nothing is ever delivered anywhere.
    """
    slug = ref.key.lower().replace("_", "-")
    domain = f"superapp-{env}.invalid"
    fakes = {
        "url": f"https://{slug}.{domain}/hook",
        "email": f"{slug}@{domain}",
        "hostport": f"smtp.{domain}:587",
        "string": f"superapp-{env}-{slug}",
    }
    if ref.kind not in fakes:
        raise VaultError(f"{ref}: no generator for secret kind {ref.kind!r}")
    return fakes[ref.kind]


def operator_set(environment: Environment, ref: SecretRef) -> bool:
    """True when a real value must come from an operator (not invented) in this environment."""
    if environment.name not in STRICT_ENVS:
        return False
    alertmanager = {str(r) for r in environment.alertmanager_refs().values()}
    return ref.kind in OPERATOR_KINDS or str(ref) in alertmanager


def new_value(environment: Environment, ref: SecretRef,
              beside: Mapping[str, str] | None = None) -> str:
    """A value for `ref`; `beside`: the values its path holds already (and those made before
    it in this write): a database cluster's certificate is signed by the CA there."""
    if ref.kind in GENERATORS:
        return GENERATORS[ref.kind]()
    if ref.kind == "tls-bundle":  # the only one: the backup host's S3 endpoint (pinned)
        backup = environment.backup_host
        if backup is None:
            raise VaultError(f"{ref}: a TLS bundle for the backup host, but no host has role "
                             "'backup'")
        # the address as a DNS name too: pgBackRest matches only DNS names of the SAN
        return self_signed_bundle(f"superapp-{environment.name}-pitr-repo",
                                  [backup.address], [backup.address, backup.name])
    if ref.kind == "tls-certificate":  # the key is the domain (Environment.edge_certificate_refs)
        return self_signed_bundle(ref.key, [], [ref.key])
    if ref.kind == "tls-authority":  # the database cluster's etcd CA (Environment.dbha_refs)
        return certificate_authority(f"superapp-{environment.name} database cluster CA")
    if ref.kind == "tls-leaf":  # the key is the host: its certificate for etcd's mutual TLS
        ca = (beside or {}).get(DBHA_CA_KEY)
        if not ca:
            raise VaultError(f"{ref}: no {DBHA_CA_KEY} beside it to sign it with")
        host = environment.host(ref.key)
        return issue(ca, f"superapp-{environment.name}-{host.name}", [host.address], [host.name])
    return fake_value(ref, environment.name)


# --- policies and roles (pure) ------------------------------------------------------------------

def rotated_paths(environment: Environment) -> list[str]:
    """Paths a rotation writes (ops/secrets/rotation_writes.py), in catalog order: those of
    the keys `tasks/rotate_secrets.py` can rotate (`rotatable_refs`) and the internal HMAC path.
    Not the servers' own passwords, third-party keys or receiver settings: never rotated."""
    # imported here: ops.secrets.rotation imports this module (for GENERATORS)
    from ops.secrets.rotation import rotatable_refs

    written = {r.path for r in rotatable_refs(environment)}
    written.add(environment.internal_hmac_refs()["current"].path)
    return [path for path in refs_by_path(environment.all_secret_refs()) if path in written]


# A KV v2 write's body is {"data": {...}, "options": {"cas": N}}; a read at a version has the
# query parameter `version` (OpenBao checks `allowed_parameters` on reads too). Nothing else.
KV_WRITE_PARAMETERS = ("data", "options", "version")


def policy_block(path: str, capabilities: list[str],
                 allowed_parameters: tuple[str, ...] = ()) -> str:
    caps = ", ".join(f'"{c}"' for c in capabilities)
    block = f'path "{path}" {{\n  capabilities = [{caps}]\n'
    if allowed_parameters:
        block += "  allowed_parameters = {\n"
        block += "".join(f'    "{p}" = []\n' for p in allowed_parameters)
        block += "  }\n"
    return block + "}\n"


def policy_documents(environment: Environment) -> dict[str, str]:
    """HCL of the deploy and rotate policies: exact paths, no globs (least privilege).

    The rotate policy, as narrow as OpenBao makes it:

    - enforced: `read` + `update` on the `data/` path of each path rotation writes, and only
      `read` on the others; no `create` (a rotated path exists already, so a deleted one is
      not re-created), no `patch`, no `delete`, and nothing on `metadata/`, `delete/`,
      `undelete/` or `destroy/`: the role adds versions, it cannot remove one, so every value
      it replaced stays readable by an operator (KV v2 keeps `max_versions` of them, 10 by
      default). `allowed_parameters` admits only `data` and `options` (a write's body) and
      `version` (a pinned read's query; OpenBao checks reads too, and KV v2 ignores it on a
      write), so a request with any other parameter is refused.
    - not enforceable: which keys of a path it writes. A KV v2 write replaces the whole `data`
      map, and `allowed_parameters` sees only the top-level parameters (`data`, `options`),
      not the keys inside `data` (a value list there would have to match the entire map). So
      the role could overwrite any key of a path it rotates (a service's `TOMTOM_API_KEY`,
      `SENTRY_DSN` beside its `JWT_SECRET`). Per-key enforcement would need one KV path per
      rotated key. Nor can a policy require check-and-set (`options.cas` is a number that
      changes each write); rotation always uses it (ops/secrets/rotation_writes.py).
    """
    mount = environment.settings["vault"]["mount"]
    paths = list(refs_by_path(environment.all_secret_refs()))
    rotated = set(rotated_paths(environment))
    names = role_names(environment.name)
    deploy = [f"# {names['deploy']}: read-only on the secrets the {environment.name} deploy "
              "needs (written by tasks/bootstrap_vault.py)\n"]
    deploy += [policy_block(f"{mount}/data/{p}", ["read"]) for p in paths]
    # the environment's deploy lock (ops/rollout/lock.py): both roles take it, with CAS
    lock = [policy_block(f"{mount}/data/{lock_path(environment)}", ["create", "read", "update"]),
            policy_block(f"{mount}/metadata/{lock_path(environment)}", ["read"])]
    deploy += lock
    rotate = [f"# {names['rotate']}: read the {environment.name} secrets, write only those "
              "rotation changes (written by tasks/bootstrap_vault.py)\n"]
    for p in paths:
        if p in rotated:
            rotate.append(policy_block(f"{mount}/data/{p}", ["read", "update"],
                                       KV_WRITE_PARAMETERS))
        else:
            rotate.append(policy_block(f"{mount}/data/{p}", ["read"]))
    rotate += lock
    return {names["deploy"]: "\n".join(deploy), names["rotate"]: "\n".join(rotate)}


def lock_path(environment: Environment) -> str:
    """Where the environment's deploy lock lives in KV (ops/rollout/lock.py uses the same)."""
    return environment.vault_path("locks", "deploy")


ROLE_SETTINGS = {"token_ttl": TOKEN_TTL, "token_max_ttl": TOKEN_MAX_TTL, "bind_secret_id": True}


def normalised_cidrs(value: object) -> list[str]:
    """A role's CIDR list as comparable text (Vault reads an unset one back as null)."""
    return sorted(str(ipaddress.ip_network(c, strict=False)) for c in (value or []))


def role_differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The role settings that differ from `wanted` (names only)."""
    cidrs = ("secret_id_bound_cidrs", "token_bound_cidrs")
    return [k for k, v in wanted.items()
            if (normalised_cidrs(current.get(k)) != normalised_cidrs(v) if k in cidrs
                else current.get(k) != v)]


def mint_lines(settings: VaultSettings, limits: SecretIdLimits) -> list[str]:
    """How to mint each role's secret-id for CI: commands, never a value."""
    return [f"mint a {role} secret-id for CI ({limits.describe()}; the command prints only the "
            f"secret-id: give it to the job as VAULT_SECRET_ID): {mint_command(settings, role)}"
            for role in role_names(settings.env).values()]


# --- report -------------------------------------------------------------------------------------

@dataclass
class BootstrapReport:
    """What a bootstrap did (or, dry, would do): names only, never a value."""

    env: str
    dry: bool
    created: list[str] = field(default_factory=list)          # "path#KEY (kind)"
    operator: list[str] = field(default_factory=list)         # must be set by an operator
    present: int = 0
    access: list[tuple[str, str]] = field(default_factory=list)  # ("create", "policy X")
    problems: list[str] = field(default_factory=list)         # deleted paths...
    mint: list[str] = field(default_factory=list)             # commands minting secret-ids

    def lines(self) -> list[str]:
        verb = "would create" if self.dry else "created"
        past = {"create": "created", "update": "updated", "enable": "enabled"}
        out = [f"would {action} {what}" if self.dry else f"{past[action]} {what}"
               for action, what in self.access]
        out += [f"{verb} {item}" for item in self.created]
        out += [f"operator must set {item}" for item in self.operator]
        out += [f"problem: {p}" for p in self.problems]
        out += self.mint
        out.append(self.summary())
        return out

    def summary(self) -> str:
        verb = "would create" if self.dry else "created"
        text = (f"Vault bootstrap {self.env}{' (dry run, nothing written)' if self.dry else ''}: "
                f"{verb} {len(self.created)} secret(s), {self.present} already set, "
                f"{len(self.access)} policy/role change(s)")
        if self.operator:
            text += (f"; {len(self.operator)} must be set by an operator (`bao kv patch`) "
                     "before the deploy will run")
        if self.problems:
            text += f"; {len(self.problems)} problem(s)"
        return text


# --- side effects -------------------------------------------------------------------------------

def ensure_policy(session: VaultSession, name: str, rules: str, report: BootstrapReport) -> None:
    client, settings = session.client, session.settings
    with translated(settings, f"read sys/policy/{name}"):
        try:
            current = (client.sys.read_policy(name=name).get("data") or {}).get("rules")
        except hvac.exceptions.InvalidPath:
            current = None
    if current == rules:
        return
    report.access.append(("create" if current is None else "update", f"policy {name}"))
    if not report.dry:
        with translated(settings, f"write sys/policy/{name}"):
            client.sys.create_or_update_policy(name=name, policy=rules)


def ensure_approle_mount(session: VaultSession, report: BootstrapReport) -> bool:
    with translated(session.settings, "read sys/auth"):
        mounts = session.client.sys.list_auth_methods()
    if f"{APPROLE_MOUNT}/" in (mounts.get("data") or mounts):
        return True
    report.access.append(("enable", f"auth method {APPROLE_MOUNT}/"))
    if not report.dry:
        with translated(session.settings, f"enable auth/{APPROLE_MOUNT}"):
            session.client.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
    return not report.dry


def ensure_role(session: VaultSession, name: str, policy: str, report: BootstrapReport,
                mount_exists: bool, limits: SecretIdLimits) -> None:
    client, settings = session.client, session.settings
    current: Mapping[str, Any] | None = None
    if mount_exists:
        with translated(settings, f"read auth/{APPROLE_MOUNT}/role/{name}"):
            try:
                current = client.auth.approle.read_role(role_name=name,
                                                        mount_point=APPROLE_MOUNT)["data"]
            except hvac.exceptions.InvalidPath:
                current = None
    wanted = {"token_ttl": duration_seconds(TOKEN_TTL),
              "token_max_ttl": duration_seconds(TOKEN_MAX_TTL),
              "token_policies": [policy], "bind_secret_id": True, **limits.role_fields()}
    differs = role_differences(current, wanted) if current is not None else []
    if current is not None and not differs:
        return
    changed = f"; differed: {', '.join(differs)}" if differs else ""
    report.access.append(("create" if current is None else "update",
                          f"approle {name} (policy {policy}, token ttl {TOKEN_TTL}, "
                          f"{limits.describe()}{changed})"))
    if not report.dry:
        with translated(settings, f"write auth/{APPROLE_MOUNT}/role/{name}"):
            # CIDR lists are sent even when empty, so a binding removed in group_data is lifted
            client.auth.approle.create_or_update_approle(
                role_name=name, token_policies=[policy], mount_point=APPROLE_MOUNT,
                secret_id_ttl=limits.ttl, secret_id_num_uses=limits.num_uses,
                secret_id_bound_cidrs=list(limits.bound_cidrs),
                token_bound_cidrs=list(limits.token_bound_cidrs), **ROLE_SETTINGS)


def fill_path(session: VaultSession, environment: Environment, path: str,
              refs: list[SecretRef], report: BootstrapReport) -> None:
    """Add missing required keys to one path with check-and-set; keep every existing value."""
    settings = session.settings
    required = [r for r in refs if not r.optional]  # optional ones exist only mid-rotation
    for _attempt in range(CAS_ATTEMPTS):
        current = read_kv(session, path)
        if current.deleted:
            report.problems.append(f"{settings.mount}/{path}: latest version {current.version} "
                                   "is deleted; undelete it or write it by hand")
            return
        data = dict(current.data or {})
        missing = [r for r in required if data.get(r.key) in (None, "")]
        by_operator = [r for r in missing if operator_set(environment, r)]
        generated = [r for r in missing if not operator_set(environment, r)]
        if generated and not report.dry:
            for r in generated:  # in order: a CA before the certificates it signs
                data[r.key] = new_value(environment, r, data)
            cas = current.version if current.data is not None else 0
            with translated(settings, f"write {settings.mount}/{path}"):
                try:
                    session.client.secrets.kv.v2.create_or_update_secret(
                        path=path, secret=data, cas=cas, mount_point=settings.mount)
                except hvac.exceptions.InvalidRequest as exc:
                    if "check-and-set" not in " ".join(exc.errors or []):
                        raise VaultError(f"Vault at {settings.addr} refused the write to "
                                         f"{settings.mount}/{path} (HTTP 400)") from None
                    continue  # someone wrote meanwhile: re-read, never overwrite
        report.present += len(required) - len(missing)
        report.created += [f"{r} ({r.kind})" for r in generated]
        report.operator += [f"{r} ({r.kind})" for r in by_operator]
        return
    report.problems.append(f"{settings.mount}/{path}: changed concurrently {CAS_ATTEMPTS} times "
                           "while bootstrapping; re-run")


def bootstrap(environment: Environment, environ: Mapping[str, str] | None = None,
              dry: bool = False, echo: Callable[[str], None] | None = None) -> BootstrapReport:
    """Create policies and AppRoles and fill missing secrets; `dry` reads only.

    `echo` receives each report line as the work finishes (default: nothing printed).
    """
    settings = VaultSettings.from_environment(environment)
    limits = SecretIdLimits.from_vault_settings(environment.settings["vault"])
    report = BootstrapReport(env=environment.name, dry=dry)
    with open_session(settings, environ, auth_method="token") as session:
        policies = policy_documents(environment)
        for name, rules in policies.items():
            ensure_policy(session, name, rules, report)
        mount_exists = ensure_approle_mount(session, report)
        for name in policies:
            ensure_role(session, name, name, report, mount_exists, limits)
        for path, refs in refs_by_path(environment.all_secret_refs()).items():
            fill_path(session, environment, path, refs, report)
    report.mint = mint_lines(settings, limits)
    if echo:
        for line in report.lines():
            echo(line)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.secrets.bootstrap",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("env", help="environment name (group_data/<env>.py)")
    parser.add_argument("--dry", action="store_true", help="read Vault, say what would change")
    args = parser.parse_args(argv)
    try:
        environment = load_environment(args.env)
        report = bootstrap(environment, dry=args.dry, echo=print)
    except (ConfigError, VaultError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
