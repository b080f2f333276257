"""Databases and roles of the catalog, provisioned on every deploy that changes them.

The init scripts of a Postgres image run only on an empty data directory: a service added later
never got its database, and a changed password never reached the server. Instead the deploy
renders one idempotent psql script (a role and a database per service, created when missing,
each role's password set; nothing is ever dropped) and runs it in the postgres container
whenever the script changed (ops/rollout/engine.py). A marker file, written only after the
script succeeded, holds the script's digest: a run that died before provisioning finished
provisions again next time.

Two login roles per database, so its password can change without a refused connection:
`<db>` (the owner of the database and of everything in it) and `<db>_alt` (a member of `<db>`
whose sessions run as `<db>`: `ALTER ROLE <db>_alt SET role = '<db>'`, so what it creates is
owned by `<db>` too). One of them holds the current password (Vault's `DB_LOGIN`, absent: `<db>`)
and is the user of the service's DATABASE_URL. The other can log in only during a rotation,
with the password being replaced (`DB_PASSWORD_PREVIOUS`); otherwise it is NOLOGIN without a
password. A rotation (ops/secrets/rotation.py) gives the other role the new password and swaps
the services to it while the old role still accepts the old one, then locks the old role.

Passwords are sent as SCRAM-SHA-256 verifiers, never in clear: the script is root-only 0600 on
the host, read by psql from stdin (no command line), and even a statement echoed in an error
or the server's log shows only the verifier, which cannot be used to log in. The verifier's
salt is derived from the role and the password, so the script is the same from run to run
(no change, no provisioning) and changes exactly when a password does.

Pure: text in, text out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from ops.catalog.model import Environment, Host, Service
from ops.render.files import RenderedFile
from ops.render.secrets import SecretValues

PROVISION_DIR = "/etc/superapp/postgres"
PROVISION_SQL = f"{PROVISION_DIR}/provision.sql"
PROVISIONED_MARKER = f"{PROVISION_DIR}/provisioned"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
ALT_SUFFIX = "_alt"
# postgres_exporter's login: pg_monitor (statistics and settings, no table), a few connections
MONITOR_ROLE = "superapp_monitor"
MONITOR_CONNECTION_LIMIT = 3


def login_roles(database: str) -> tuple[str, str]:
    """The database's two login roles: the owner itself and its alternate."""
    return database, f"{database}{ALT_SUFFIX}"


def current_login(database: str, recorded: str | None) -> str:
    """The role holding the current password: Vault's DB_LOGIN when it names one of the two
    (absent, or a placeholder while rendering for review: the owner)."""
    return recorded if recorded in login_roles(database) else database


def other_login(database: str, login: str) -> str:
    owner, alt = login_roles(database)
    return alt if login == owner else owner


@dataclass(frozen=True)
class DatabaseLogin:
    """What the server must hold for one database (values: never printed)."""

    database: str
    login: str  # the role with the current password
    password: str
    previous: str | None = None  # the other role's password, during a rotation only


def scram_verifier(role: str, password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` PostgreSQL stores for
    `password` (RFC 5802/7677), with a salt derived from role and password."""
    salt = hashlib.sha256(f"superapp-scram-salt\0{role}\0{password}".encode()).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def literal(text: str) -> str:
    """A standard SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def missing_role(name: str) -> str:
    return f"NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal(name)})"  # noqa: S608


def provision_sql(logins: list[DatabaseLogin], monitor_password: str | None = None) -> str:
    """psql script: for each database, its owner role, its alternate login role (a member of
    the owner, acting as it) and the database (owned by the owner) created when missing; the
    current login role's password set, the other role's set during a rotation or removed
    (NOLOGIN) otherwise; the exporter's role (MONITOR_ROLE, pg_monitor only) with its password
    when one is given. Idempotent; drops nothing."""
    lines = [
        "-- Rendered by ops.render.databases: per service, its roles and database created when",
        "-- missing; passwords set as SCRAM verifiers. Nothing is ever dropped.",
        "\\set ON_ERROR_STOP on",
        "\\set VERBOSITY terse",
    ]
    if monitor_password:
        m = literal(MONITOR_ROLE)
        lines += [
            f"SELECT format('CREATE ROLE %I NOLOGIN', {m}) WHERE {missing_role(MONITOR_ROLE)}"
            "\\gexec",
            f"SELECT format('GRANT pg_monitor TO %I', {m}) "
            f"WHERE NOT pg_has_role({m}, 'pg_monitor', 'MEMBER')\\gexec",
            f"ALTER ROLE {ident(MONITOR_ROLE)} WITH LOGIN CONNECTION LIMIT "
            f"{MONITOR_CONNECTION_LIMIT} PASSWORD "
            f"{literal(scram_verifier(MONITOR_ROLE, monitor_password))};",
        ]
    for db in sorted(logins, key=lambda d: d.database):
        owner, alt = login_roles(db.database)  # every name and value goes through literal/ident
        o, a = literal(owner), literal(alt)
        other = other_login(db.database, db.login)
        missing_db = f"NOT EXISTS (SELECT FROM pg_database WHERE datname = {o})"  # noqa: S608
        lines += [
            f"SELECT format('CREATE ROLE %I NOLOGIN', {o}) WHERE {missing_role(owner)}\\gexec",
            f"SELECT format('CREATE ROLE %I NOLOGIN', {a}) WHERE {missing_role(alt)}\\gexec",
            f"SELECT format('GRANT %I TO %I', {o}, {a}) "
            f"WHERE NOT pg_has_role({a}, {o}, 'MEMBER')\\gexec",
            f"ALTER ROLE {ident(alt)} SET role = {o};",
            f"ALTER ROLE {ident(db.login)} WITH LOGIN PASSWORD "
            f"{literal(scram_verifier(db.login, db.password))};",
            (f"ALTER ROLE {ident(other)} WITH LOGIN PASSWORD "
             f"{literal(scram_verifier(other, db.previous))};" if db.previous else
             f"ALTER ROLE {ident(other)} WITH NOLOGIN PASSWORD NULL;"),
            f"SELECT format('CREATE DATABASE %I OWNER %I', {o}, {o}) WHERE {missing_db}\\gexec",
        ]
    return "\n".join(lines) + "\n"


def database_login(environment: Environment, service: Service,
                   secrets: SecretValues) -> DatabaseLogin:
    """The service's login as Vault holds it (its database must be set)."""
    refs = environment.db_refs(service)
    database = service.database or ""
    return DatabaseLogin(database, current_login(database, secrets.get(refs["login"])),
                         secrets.get(refs["current"]) or "", secrets.get(refs["previous"]))


def database_logins(environment: Environment, secrets: SecretValues) -> list[DatabaseLogin]:
    """Every service of the catalog with a database: what its server must hold."""
    return [database_login(environment, s, secrets)
            for s in environment.services.values() if s.database]


def render_provisioning(environment: Environment, host: Host,  # noqa: ARG001 - like the others
                        secrets: SecretValues) -> list[RenderedFile]:
    """The script and its marker (unit `databases`; the marker is written after it ran)."""
    script = provision_sql(database_logins(environment, secrets),
                           secrets.get(environment.monitor_password_refs()["postgres"]))
    digest = hashlib.sha256(script.encode()).hexdigest()
    return [
        RenderedFile(PROVISION_SQL, script, mode=0o600, secret=True),
        RenderedFile(PROVISIONED_MARKER, f"{digest}  {PROVISION_SQL}\n", mode=0o600,
                     after_apply=True),
    ]
