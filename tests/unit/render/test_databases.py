"""Databases and roles provisioned on every deploy (ops/render/databases.py): the script run
for real by psql against a scratch PostgreSQL 15, logins checked over TCP with SCRAM; the
command builder run with a `docker` that records what it got; the plan and the apply order
against a scripted Remote."""

from __future__ import annotations

import os
import subprocess

import pytest

from ops.host import commands as cmd
from ops.render.databases import (
    MONITOR_ROLE,
    PROVISION_SQL,
    PROVISIONED_MARKER,
    DatabaseLogin,
    provision_sql,
    render_provisioning,
    scram_verifier,
)
from ops.rollout.engine import apply_infra
from ops.rollout.plan import plan_host
from tests.unit.rollout.test_engine import ENV, FakeRemote
from tests.unit.rollout.test_plan import SECRETS, deployed_state
from tests.unit.testbed.test_standin import Postgres, postgres  # noqa: F401 - the fixture

PASSWORD = "CANARY-db-pw 'q' \"dq\" $x \\ ünï"
OTHER = "CANARY-db-pw-rotated-7f3e"


def logins(**passwords: str) -> list[DatabaseLogin]:
    """Databases whose owner role holds the password (no rotation under way)."""
    return [DatabaseLogin(name, name, password) for name, password in passwords.items()]


def run_script(pg: Postgres, script: str) -> subprocess.CompletedProcess:
    """psql reading the script from stdin, as the deploy runs it in the container."""
    return subprocess.run([*pg.psql_argv("postgres")[:-1], "-X", "-q", "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=60)


def can_login(pg: Postgres, role: str, password: str, database: str | None = None) -> bool:
    """A password login over TCP (scram-sha-256 in pg_hba), the password in psql's env."""
    res = subprocess.run([str(pg.bindir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(pg.port),
                          "-U", role, "-d", database or role, "-Atqc", "SELECT 1"],
                         capture_output=True, text=True, timeout=20,
                         env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
    return res.returncode == 0 and res.stdout.strip() == "1"


def test_roles_and_databases_are_created_with_a_password_only_the_verifier_of() -> None:
    script = provision_sql(logins(svc_new=PASSWORD))
    assert PASSWORD not in script and "CANARY" not in script
    assert scram_verifier("svc_new", PASSWORD) in script


def test_the_script_is_stable_and_changes_exactly_with_a_password() -> None:
    assert provision_sql(logins(a="x", b="y")) == provision_sql(logins(b="y", a="x"))
    assert provision_sql(logins(a="x")) != provision_sql(logins(a="z"))
    assert scram_verifier("a", "x") != scram_verifier("b", "x")  # salts differ per role


def test_provisioning_runs_for_real_is_idempotent_and_applies_a_changed_password(
        postgres) -> None:  # noqa: F811 - the fixture
    catalog = [*logins(prov_one=PASSWORD, prov_two=OTHER),
               DatabaseLogin("prov_o'q\"x", "prov_o'q\"x", PASSWORD)]  # quoting holds
    first = run_script(postgres, provision_sql(catalog))
    assert first.returncode == 0, first.stderr
    assert can_login(postgres, "prov_o'q\"x", PASSWORD)
    assert can_login(postgres, "prov_one", PASSWORD) and can_login(postgres, "prov_two", OTHER)
    assert not can_login(postgres, "prov_one", OTHER)
    postgres.psql("prov_one", "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    again = run_script(postgres, provision_sql(catalog))
    assert again.returncode == 0 and again.stdout == "", again.stderr
    # a new service and a rotated password; prov_two left out of the catalog: nothing dropped
    rotated = run_script(postgres, provision_sql(logins(prov_one=OTHER, prov_three=PASSWORD)))
    assert rotated.returncode == 0, rotated.stderr
    assert can_login(postgres, "prov_one", OTHER) and not can_login(postgres, "prov_one", PASSWORD)
    assert can_login(postgres, "prov_three", PASSWORD) and can_login(postgres, "prov_two", OTHER)
    assert postgres.psql("prov_one", "SELECT count(*) FROM kept") == "1"
    owner = postgres.psql("postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database "
                                      "WHERE datname = 'prov_three'")
    assert owner == "prov_three"


def test_the_exporters_role_reads_statistics_but_no_table_and_its_password_rotates(
        postgres) -> None:  # noqa: F811 - the fixture
    catalog = logins(mon_svc=PASSWORD)
    assert run_script(postgres, provision_sql(catalog, "CANARY-monitor-1")).returncode == 0
    postgres.psql("mon_svc", "CREATE TABLE private (card text); INSERT INTO private VALUES ('x')")

    def as_monitor(sql: str,
                   password: str = "CANARY-monitor-1",  # noqa: S107 - a test value
                   ) -> subprocess.CompletedProcess:
        return subprocess.run([str(postgres.bindir / "psql"), "-X", "-h", "127.0.0.1", "-p",
                               str(postgres.port), "-U", MONITOR_ROLE, "-d", "mon_svc", "-Atqc",
                               sql], capture_output=True, text=True, timeout=20,
                              env={**os.environ, "PGPASSWORD": password})

    # what postgres_exporter reads: every session's state, settings, per-database counters
    stats = as_monitor("SELECT pg_has_role(current_user, 'pg_monitor', 'MEMBER'); "
                       "SELECT setting::int > 0 FROM pg_settings WHERE name = 'max_connections'; "
                       "SELECT deadlocks >= 0 FROM pg_stat_database WHERE datname = 'mon_svc'")
    assert stats.returncode == 0 and stats.stdout.split() == ["t", "t", "t"], stats.stderr
    denied = as_monitor("SELECT card FROM private")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    again = run_script(postgres, provision_sql(catalog, "CANARY-monitor-1"))
    assert again.returncode == 0 and again.stdout == "", again.stderr
    assert run_script(postgres, provision_sql(catalog, "CANARY-monitor-2")).returncode == 0
    assert as_monitor("SELECT 1", "CANARY-monitor-2").stdout.strip() == "1"
    assert as_monitor("SELECT 1").returncode != 0  # the old password no longer works
    assert "CANARY" not in provision_sql(catalog, "CANARY-monitor-2")


def test_a_failing_statement_stops_the_script_and_shows_no_password(postgres) -> None:  # noqa: F811
    # a predefined role cannot log in: its ALTER ROLE (the statement with the verifier) fails
    res = run_script(postgres, provision_sql(logins(pg_monitor=PASSWORD, zz_after=PASSWORD)))
    assert res.returncode != 0 and "ERROR" in res.stderr, res.stderr
    assert PASSWORD not in res.stdout + res.stderr
    assert scram_verifier("pg_monitor", PASSWORD) not in res.stdout + res.stderr
    assert postgres.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'zz_after'"
                         ) == "0"  # stopped at the first error


def test_the_command_reads_the_script_from_stdin_with_nothing_secret_in_argv(tmp_path) -> None:
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$*" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    fake.chmod(0o755)
    script = tmp_path / "provision.sql"
    script.write_text(provision_sql(logins(svc=PASSWORD)))
    res = subprocess.run(["sh", "-c", cmd.run_sql_file("postgres", str(script))],
                         capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "stdin").read_text() == script.read_text()
    argv = (tmp_path / "argv").read_text()
    assert argv.startswith("exec -i postgres psql") and "-f -" in argv and "svc" not in argv


def test_the_marker_is_written_after_the_script_ran_and_a_missing_one_provisions_again() -> None:
    files = {f.path: f for f in render_provisioning(ENV, ENV.host("host1"), SECRETS)}
    assert files[PROVISION_SQL].secret and files[PROVISION_SQL].mode == 0o600
    assert files[PROVISIONED_MARKER].after_apply and not files[PROVISION_SQL].after_apply
    state = deployed_state("host1")
    assert "databases" not in plan_host(ENV, "host1", SECRETS, state).infra_units
    del state.files[PROVISIONED_MARKER]  # a run died between upload and provisioning
    plan = plan_host(ENV, "host1", SECRETS, state)
    assert plan.infra_units == ["databases"]
    remote = FakeRemote("host1")
    apply_infra(remote, ENV, plan)
    provisioned = next(i for i, c in enumerate(remote.commands) if "psql" in c)
    marker = next(i for i, c in enumerate(remote.commands) if PROVISIONED_MARKER in c)
    assert provisioned < marker
    assert not any("provision.sql" in path for path in remote.files)  # only the marker


@pytest.mark.parametrize("password", [PASSWORD, OTHER])
def test_the_verifier_is_postgres_own_format(password) -> None:
    kind, rest = scram_verifier("r", password).split("$", 1)
    iterations, keys = rest.split(":", 1)
    assert kind == "SCRAM-SHA-256" and iterations == "4096" and keys.count(":") == 1


def test_a_rotation_moves_the_login_to_the_other_role_with_both_passwords_working_meanwhile(
        postgres) -> None:  # noqa: F811 - the fixture
    """Step 1: the alternate role takes the new password while the owner keeps the old; both
    log in, and the alternate acts as the owner (what it creates is the owner's). Step 2: the
    owner is locked. The next rotation goes back the other way."""
    assert run_script(postgres, provision_sql(logins(rot=PASSWORD))).returncode == 0
    postgres.psql("rot", "CREATE TABLE before_rotation (id int); "  # as the service made it
                         "INSERT INTO before_rotation VALUES (1); "
                         "ALTER TABLE before_rotation OWNER TO rot")
    step1 = run_script(postgres, provision_sql([DatabaseLogin("rot", "rot_alt", OTHER,
                                                              PASSWORD)]))
    assert step1.returncode == 0, step1.stderr
    assert can_login(postgres, "rot", PASSWORD) and can_login(postgres, "rot_alt", OTHER, "rot")
    assert not can_login(postgres, "rot_alt", PASSWORD, "rot")
    as_alt = subprocess.run(
        [str(postgres.bindir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(postgres.port),
         "-U", "rot_alt", "-d", "rot", "-Atq", "-c", "SELECT session_user, current_user",
         "-c", "SELECT count(*) FROM before_rotation",
         "-c", "CREATE TABLE after_rotation (id int)"],
        capture_output=True, text=True, timeout=20,
        env={**os.environ, "PGPASSWORD": OTHER})
    assert as_alt.returncode == 0, as_alt.stderr
    assert as_alt.stdout.split() == ["rot_alt|rot", "1"], as_alt.stdout + as_alt.stderr
    assert postgres.psql("rot", "SELECT tableowner FROM pg_tables "
                                "WHERE tablename = 'after_rotation'") == "rot"
    step2 = run_script(postgres, provision_sql([DatabaseLogin("rot", "rot_alt", OTHER)]))
    assert step2.returncode == 0, step2.stderr
    assert not can_login(postgres, "rot", PASSWORD)
    assert can_login(postgres, "rot_alt", OTHER, "rot")
    back = run_script(postgres, provision_sql([DatabaseLogin("rot", "rot", PASSWORD)]))
    assert back.returncode == 0, back.stderr
    assert can_login(postgres, "rot", PASSWORD)
    assert not can_login(postgres, "rot_alt", OTHER, "rot")
    again = run_script(postgres, provision_sql([DatabaseLogin("rot", "rot", PASSWORD)]))
    assert again.returncode == 0 and again.stdout == "", again.stderr  # nothing printed
