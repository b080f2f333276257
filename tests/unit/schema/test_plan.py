"""Which service the schema bootstrap may run for, who still waits for it, and the command
that counts a database's tables (run with a `docker` that records its argv)."""

from __future__ import annotations

import subprocess

import pytest

from ops.catalog import load_environment
from ops.host import commands as cmd
from ops.schema.plan import KIND, check_service, pending_bootstrap

PROD = load_environment("prod")
LOCAL = load_environment("local")
WITHOUT_MIGRATIONS = sorted(n for n, s in PROD.services.items() if not s.migrate_command)


@pytest.mark.parametrize(("name", "why"), [
    ("", "name the service: --data service=<name>"),
    ("realestat", "unknown service 'realestat' (did you mean 'realestate'?)"),
    ("payments", "payments has migrations (migrate_command): they create its schema"),
])
def test_the_job_is_refused_for_a_service_it_is_not_for(name, why) -> None:
    with pytest.raises(ValueError) as info:
        check_service(PROD, name)
    assert why in str(info.value)


def test_a_service_without_migrations_may_be_bootstrapped() -> None:
    assert check_service(PROD, "realestate").database == "realestate"
    assert check_service(LOCAL, "realestate").name == "realestate"  # the catalog decides


def test_services_wait_until_the_ledger_records_their_bootstrap() -> None:
    assert len(WITHOUT_MIGRATIONS) == 15
    assert pending_bootstrap(PROD, []) == WITHOUT_MIGRATIONS
    ledger = [{"kind": KIND, "service": "food", "result": "success"},
              {"kind": KIND, "service": "chat", "result": "failed"},
              {"kind": "deploy", "release": "x", "result": "success"}]
    assert pending_bootstrap(PROD, ledger) == [n for n in WITHOUT_MIGRATIONS if n != "food"]
    assert pending_bootstrap(LOCAL, []) == []  # the stand-in's migrations create every schema


def test_count_tables_reaches_psql_with_its_query_as_one_argument(tmp_path) -> None:
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    res = subprocess.run(["sh", "-c", cmd.count_tables("postgres", "real estate")],
                         capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    argv = res.stdout.splitlines()
    assert argv[:3] == ["exec", "postgres", "psql"]
    assert argv[argv.index("-d") + 1] == "real estate"
    assert argv[-1].startswith("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN")
