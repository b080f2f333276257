"""Databases and roles provisioned by every deploy that changes them, on the testbed's real
PostgreSQL: a password changed in Vault reaches the server and the service without restarting
PostgreSQL, and a database that was never created (a service new to the catalog, or a run that
died before provisioning finished) is created by the next deploy; the one-off schema bootstrap
fills an empty database once, refuses one with tables, and is recorded in every ledger."""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import time

import hvac
import pytest

from bench.load import Load
from ops.host import commands as cmd

from .conftest import REPO, Testbed
from .release import deploy, output, pyinfra
from .test_crash import lock_live
from .test_rollout import app_targets, ledger, set_secret

pytestmark = pytest.mark.integration

MARKER = "/etc/superapp/postgres/provisioned"
NEW_PASSWORD = "CANARY-dbpw-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:20]


def login_works(testbed: Testbed, role: str, password: str) -> bool:
    """A password login over TCP inside the postgres container; the password on stdin."""
    script = (f"read -r pw; PGPASSWORD=$pw psql -X -h 127.0.0.1 -U {shlex.quote(role)} "
              f"-d {shlex.quote(role)} -Atqc 'SELECT 1'")
    res = subprocess.run(testbed.ssh_argv(testbed.host("host1"),
                                          f"docker exec -i postgres sh -c {shlex.quote(script)}"),
                         input=password + "\n", capture_output=True, text=True, timeout=60)
    return res.returncode == 0 and res.stdout.strip() == "1"


def service_connects(testbed: Testbed, host: str, service: str) -> str:
    """The live container of `service` on `host` opens its own DATABASE_URL."""
    h = testbed.host(host)
    slot = testbed.ssh(h, f"sed -n 's/.*\"slot\": *\"\\([ab]\\)\".*/\\1/p' "
                          f"/var/lib/superapp/services/{service}.json").stdout.strip()
    probe = ("import os, psycopg2; psycopg2.connect(os.environ['DATABASE_URL']).close(); "
             "print('connected')")
    res = testbed.ssh(h, f"docker exec {service}-{slot} python3 -c {shlex.quote(probe)} 2>&1",
                      check=False)
    return res.stdout.strip()[-300:]


def postgres_started(testbed: Testbed) -> str:
    return testbed.ssh(testbed.host("host1"),
                       "docker inspect -f '{{.State.StartedAt}}' postgres").stdout.strip()


def test_a_database_password_changed_in_vault_reaches_server_and_service(testbed, deployed):
    h1 = testbed.host("host1")
    assert testbed.ssh(h1, "docker exec postgres sh -c 'env | grep -c ^SUPERAPP_DB_; true'"
                       ).stdout.strip() == "0"  # the server's env holds no service password
    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    old = client.secrets.kv.v2.read_secret_version(
        path="superapp/local/chat", mount_point="secret",
        raise_on_deleted_version=True)["data"]["data"]["DB_PASSWORD"]
    started = postgres_started(testbed)
    set_secret(client, "superapp/local/chat", "DB_PASSWORD", NEW_PASSWORD)
    with Load(app_targets(testbed), rate=15, workers=2) as load:
        res = deploy(REPO)
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"\[host1\] updating \d+ config file\(s\): .*databases", out), out[-4000:]
    assert NEW_PASSWORD not in out and old not in out
    assert not load.report.failed, load.report.failures_by_kind()
    assert login_works(testbed, "chat", NEW_PASSWORD) and not login_works(testbed, "chat", old)
    for host in ("host1", "host2", "host3"):
        assert service_connects(testbed, host, "chat") == "connected", host
    assert postgres_started(testbed) == started  # no restart of the database server


def test_a_database_never_created_or_a_provisioning_that_died_is_done_by_the_next_deploy(
        testbed, deployed):
    h1 = testbed.host("host1")
    # what a service new to the catalog finds: no role, no database (realestate's stand-in
    # does not use the database while serving; its migrations run with its next release)
    testbed.ssh(h1, "docker exec postgres psql -X -q -U postgres -d postgres "
                    "-c 'DROP DATABASE realestate' -c 'DROP ROLE realestate'")
    testbed.ssh(h1, f"rm -f {MARKER}")  # as if the run died after the upload
    res = deploy(REPO, "--limit", "host1")
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"\[host1\] updating 1 config file\(s\): databases", out), out[-4000:]
    owner = testbed.ssh(h1, "docker exec postgres psql -X -Atq -U postgres -d postgres -c "
                            "\"SELECT pg_get_userbyid(datdba) FROM pg_database "
                            "WHERE datname = 'realestate'\"").stdout.strip()
    assert owner == "realestate"
    assert service_connects(testbed, "host1", "realestate") == "connected"
    again = deploy(REPO, "--limit", "host1")
    assert again.returncode == 0 and "nothing to change on any host" in output(again)


def bootstrap(service: str) -> subprocess.CompletedProcess:
    return pyinfra(REPO, "-y", "inventories/local.py", "tasks/bootstrap_schema.py", "--data",
                   f"service={service}", timeout=600)


def tables(testbed: Testbed, database: str) -> int:
    return int(testbed.ssh(testbed.host("host1"),
                           cmd.count_tables("postgres", database)).stdout.strip())


def bootstraps(testbed: Testbed) -> list[list[dict]]:
    return [[e for e in ledger(testbed, h) if e.get("kind") == "schema-bootstrap"]
            for h in testbed.hosts]


def test_the_schema_bootstrap_fills_an_empty_database_once_and_is_recorded(testbed, deployed):
    """Runs after the test above left realestate's database empty."""
    assert tables(testbed, "realestate") == 0
    refused = bootstrap("payments")
    assert refused.returncode != 0 and "payments has migrations" in output(refused)
    res = bootstrap("realestate")
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    created = tables(testbed, "realestate")
    assert created > 0 and f"schema created in realestate ({created} table(s))" in out
    recorded = bootstraps(testbed)
    assert all(len(r) == 1 and r[0]["service"] == "realestate" and r[0]["tables"] == created
               for r in recorded), recorded
    again = bootstrap("realestate")
    text = output(again)
    assert again.returncode != 0
    assert f"already has {created} table(s)" in text and "nothing was changed" in text
    assert bootstraps(testbed) == recorded and tables(testbed, "realestate") == created
    assert not lock_live(testbed)
