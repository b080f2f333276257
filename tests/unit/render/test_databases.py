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
    PROVISION_SQL,
    PROVISIONED_MARKER,
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


def run_script(pg: Postgres, script: str) -> subprocess.CompletedProcess:
    """psql reading the script from stdin, as the deploy runs it in the container."""
    return subprocess.run([*pg.psql_argv("postgres")[:-1], "-X", "-q", "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=60)


def can_login(pg: Postgres, role: str, password: str) -> bool:
    """A password login over TCP (scram-sha-256 in pg_hba), the password in psql's env."""
    res = subprocess.run([str(pg.bindir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(pg.port),
                          "-U", role, "-d", role, "-Atqc", "SELECT 1"],
                         capture_output=True, text=True, timeout=20,
                         env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
    return res.returncode == 0 and res.stdout.strip() == "1"


def test_roles_and_databases_are_created_with_a_password_only_the_verifier_of() -> None:
    script = provision_sql({"svc_new": PASSWORD})
    assert PASSWORD not in script and "CANARY" not in script
    assert scram_verifier("svc_new", PASSWORD) in script


def test_the_script_is_stable_and_changes_exactly_with_a_password() -> None:
    assert provision_sql({"a": "x", "b": "y"}) == provision_sql({"b": "y", "a": "x"})
    assert provision_sql({"a": "x"}) != provision_sql({"a": "z"})
    assert scram_verifier("a", "x") != scram_verifier("b", "x")  # salts differ per role


def test_provisioning_runs_for_real_is_idempotent_and_applies_a_changed_password(
        postgres) -> None:  # noqa: F811 - the fixture
    first = run_script(postgres, provision_sql({"prov_one": PASSWORD, "prov_two": OTHER,
                                                "prov_o'q\"x": PASSWORD}))  # quoting holds
    assert first.returncode == 0, first.stderr
    assert can_login(postgres, "prov_o'q\"x", PASSWORD)
    assert can_login(postgres, "prov_one", PASSWORD) and can_login(postgres, "prov_two", OTHER)
    assert not can_login(postgres, "prov_one", OTHER)
    postgres.psql("prov_one", "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    again = run_script(postgres, provision_sql({"prov_one": PASSWORD, "prov_two": OTHER,
                                                "prov_o'q\"x": PASSWORD}))
    assert again.returncode == 0 and again.stdout == "", again.stderr
    # a new service and a rotated password; prov_two left out of the catalog: nothing dropped
    rotated = run_script(postgres, provision_sql({"prov_one": OTHER, "prov_three": PASSWORD}))
    assert rotated.returncode == 0, rotated.stderr
    assert can_login(postgres, "prov_one", OTHER) and not can_login(postgres, "prov_one", PASSWORD)
    assert can_login(postgres, "prov_three", PASSWORD) and can_login(postgres, "prov_two", OTHER)
    assert postgres.psql("prov_one", "SELECT count(*) FROM kept") == "1"
    owner = postgres.psql("postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database "
                                      "WHERE datname = 'prov_three'")
    assert owner == "prov_three"


def test_a_failing_statement_stops_the_script_and_shows_no_password(postgres) -> None:  # noqa: F811
    # a predefined role cannot log in: its ALTER ROLE (the statement with the verifier) fails
    res = run_script(postgres, provision_sql({"pg_monitor": PASSWORD, "zz_after": PASSWORD}))
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
    script.write_text(provision_sql({"svc": PASSWORD}))
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
    apply_infra(remote, plan)
    provisioned = next(i for i, c in enumerate(remote.commands) if "psql" in c)
    marker = next(i for i, c in enumerate(remote.commands) if PROVISIONED_MARKER in c)
    assert provisioned < marker
    assert not any("provision.sql" in path for path in remote.files)  # only the marker


@pytest.mark.parametrize("password", [PASSWORD, OTHER])
def test_the_verifier_is_postgres_own_format(password) -> None:
    kind, rest = scram_verifier("r", password).split("$", 1)
    iterations, keys = rest.split(":", 1)
    assert kind == "SCRAM-SHA-256" and iterations == "4096" and keys.count(":") == 1
