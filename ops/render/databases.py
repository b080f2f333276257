"""Databases and roles of the catalog, provisioned on every deploy that changes them.

The init scripts of a Postgres image run only on an empty data directory: a service added later
never got its database, and a changed password never reached the server. Instead the deploy
renders one idempotent psql script (a role and a database per service, created when missing,
each role's password set; nothing is ever dropped) and runs it in the postgres container
whenever the script changed (ops/rollout/engine.py). A marker file, written only after the
script succeeded, holds the script's digest: a run that died before provisioning finished
provisions again next time.

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

from ops.catalog.model import Environment, Host
from ops.render.files import RenderedFile
from ops.render.secrets import SecretValues

PROVISION_DIR = "/etc/superapp/postgres"
PROVISION_SQL = f"{PROVISION_DIR}/provision.sql"
PROVISIONED_MARKER = f"{PROVISION_DIR}/provisioned"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


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


def provision_sql(roles: dict[str, str]) -> str:
    """psql script: for each database name -> password, the role and the database (owned by
    it) created when missing and the role's password set. Idempotent; drops nothing."""
    lines = [
        "-- Rendered by ops.render.databases: a role and a database per service, created when",
        "-- missing; each role's password set as a SCRAM verifier. Nothing is ever dropped.",
        "\\set ON_ERROR_STOP on",
        "\\set VERBOSITY terse",
    ]
    for name in sorted(roles):  # every name and value below goes through literal() or ident()
        n, verifier = literal(name), literal(scram_verifier(name, roles[name]))
        missing_role = f"NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {n})"  # noqa: S608
        missing_db = f"NOT EXISTS (SELECT FROM pg_database WHERE datname = {n})"  # noqa: S608
        lines += [
            f"SELECT format('CREATE ROLE %I LOGIN', {n}) WHERE {missing_role}\\gexec",
            f"ALTER ROLE {ident(name)} WITH LOGIN PASSWORD {verifier};",
            f"SELECT format('CREATE DATABASE %I OWNER %I', {n}, {n}) WHERE {missing_db}\\gexec",
        ]
    return "\n".join(lines) + "\n"


def database_passwords(environment: Environment, secrets: SecretValues) -> dict[str, str]:
    """Database name -> its role's password, for every service of the catalog with one."""
    return {s.database: secrets.get(environment.db_password_ref(s)) or ""
            for s in environment.services.values() if s.database}


def render_provisioning(environment: Environment, host: Host,  # noqa: ARG001 - like the others
                        secrets: SecretValues) -> list[RenderedFile]:
    """The script and its marker (unit `databases`; the marker is written after it ran)."""
    script = provision_sql(database_passwords(environment, secrets))
    digest = hashlib.sha256(script.encode()).hexdigest()
    return [
        RenderedFile(PROVISION_SQL, script, mode=0o600, secret=True),
        RenderedFile(PROVISIONED_MARKER, f"{digest}  {PROVISION_SQL}\n", mode=0o600,
                     after_apply=True),
    ]
