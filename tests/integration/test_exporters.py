"""postgres_exporter and redis_exporter on the testbed: the live Prometheus scrapes both, with
every metric the data alerts (templates/prometheus/data.yml.j2) read; each exporter logs in with
its own login, which reads statistics but no data; and a real deadlock in payments' database
fires PostgresDeadlocks, naming the database, in the live Prometheus.

The alerts' logic, both ways, is in their promtool tests (unit suite); this proves the series
they read exist with the labels they use.
"""

from __future__ import annotations

import shlex
import subprocess
import time

import hvac
import pytest

from ops.catalog import load_environment
from ops.render.databases import MONITOR_ROLE
from ops.render.prometheus import DATA_ALERT_NAMES
from ops.render.redis_acl import MONITOR_USER

from .conftest import Testbed
from .test_observability import firing, get_json, prometheus, query, wait_for
from .test_redis_acl import as_user

pytestmark = pytest.mark.integration
ENV = load_environment("local")
MOUNT = ENV.settings["vault"]["mount"]
# every series a rule of data.yml reads (PostgresReplicationLag's needs a standby: none here)
SERIES = ('pg_up{job="postgres"} == 1', 'redis_up{job="redis"} == 1',
          'pg_settings_max_connections{job="postgres"}',
          'pg_stat_activity_count{job="postgres",datname="payments"}',
          'pg_stat_database_deadlocks{job="postgres",datname="payments"}',
          'redis_memory_used_bytes{job="redis"}', 'redis_memory_max_bytes{job="redis"}',
          'redis_total_system_memory_bytes{job="redis"}',
          'redis_rejected_connections_total{job="redis"}')


@pytest.fixture(scope="module")
def monitor_passwords(testbed: Testbed, deployed) -> dict[str, str]:  # noqa: ARG001 - deploy
    client = hvac.Client(testbed.vault_addr, token=testbed.vault_token)
    out = {}
    for server, ref in ENV.monitor_password_refs().items():
        r = client.secrets.kv.v2.read_secret_version(path=ref.path, mount_point=MOUNT,
                                                     raise_on_deleted_version=False)
        out[server] = r["data"]["data"][ref.key]
    return out


def test_both_exporters_are_scraped_with_every_series_the_data_alerts_read(testbed, deployed):
    base = prometheus(testbed)
    for expr in SERIES:
        wait_for(expr, lambda e=expr: query(base, e)["data"]["result"], timeout=120)
    hosts = {r["metric"]["host"] for r in query(base, 'up{job=~"postgres|redis"} == 1')
             ["data"]["result"]}
    assert hosts == {ENV.db_host.name}

    def evaluated_data_rules() -> list[dict] | None:
        groups = get_json(f"{base}/rules?type=alert")["data"]["groups"]
        rules = next(g["rules"] for g in groups if g["name"] == "superapp-data")
        return rules if all(r["health"] == "ok" for r in rules) else None

    rules = wait_for("data rules evaluated", evaluated_data_rules)
    assert {r["name"] for r in rules} == set(DATA_ALERT_NAMES)
    # a healthy server: none of them pending or firing (PostgresDeadlocks may be, later)
    assert all(r["state"] == "inactive" for r in rules if r["name"] != "PostgresDeadlocks"), \
        [(r["name"], r["state"]) for r in rules]


def test_each_exporter_login_reads_statistics_but_no_data(testbed, monitor_passwords):
    # Redis: INFO works; no key, no write, no key listing
    assert "redis_version" in str(as_user(testbed, MONITOR_USER, monitor_passwords["redis"],
                                          "INFO", "server"))
    for command in (("GET", "payments:x"), ("SET", "payments:x", "1"), ("KEYS", "*"),
                    ("FLUSHALL",), ("CONFIG", "SET", "maxclients", "1")):
        reply = str(as_user(testbed, MONITOR_USER, monitor_passwords["redis"], *command))
        assert reply.startswith("error NOPERM"), (command, reply)
    # PostgreSQL, over TCP inside the container, the password on stdin: the catalog and the
    # statistics are readable, a service's table is not
    sql = ("SELECT pg_has_role(current_user, 'pg_monitor', 'MEMBER');"
           "SELECT count(*) > 0 FROM pg_stat_database WHERE datname = 'payments';"
           "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
           "WHERE schemaname = 'public' ORDER BY 1 LIMIT 1")
    first = as_monitor(testbed, monitor_passwords["postgres"], sql)
    assert first.returncode == 0, first.stderr
    member, sees_payments, table = first.stdout.split()
    assert (member, sees_payments) == ("t", "t") and table
    denied = as_monitor(testbed, monitor_passwords["postgres"],
                        f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 - a name it listed
    assert denied.returncode != 0 and "permission denied" in denied.stderr, denied.stderr


def as_monitor(testbed: Testbed, password: str, sql: str) -> subprocess.CompletedProcess:
    script = (f"read -r pw; PGPASSWORD=$pw psql -X -h 127.0.0.1 -U {MONITOR_ROLE} -d payments "
              f"-Atq -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}")
    return subprocess.run(testbed.ssh_argv(testbed.host(ENV.db_host.name),
                                           f"docker exec -i postgres sh -c {shlex.quote(script)}"),
                          input=password + "\n", capture_output=True, text=True, timeout=60)


# Two transactions that update the same two rows in opposite orders: PostgreSQL aborts one
# after deadlock_timeout (1 s) with "deadlock detected".
TABLE = "superapp_it_deadlock"
UPDATE = f"UPDATE {TABLE} SET v = v + 1 WHERE id = %s;"  # noqa: S608 - fixed text
DEADLOCK = f"""
psql="docker exec -i postgres psql -X -q -U postgres -d payments"
echo "CREATE TABLE {TABLE} (id int PRIMARY KEY, v int);
INSERT INTO {TABLE} VALUES (1, 0), (2, 0);" | $psql
for order in "1 2" "2 1"; do
  set -- $order
  printf 'BEGIN;\\n{UPDATE}\\nSELECT pg_sleep(2);\\n{UPDATE}\\nCOMMIT;\\n' "$1" "$2" \\
    | $psql 2>&1 &
done
wait
"""  # noqa: S608 - fixed text


def test_a_deadlock_in_payments_fires_postgres_deadlocks_naming_its_database(testbed, deployed):
    db = testbed.host(ENV.db_host.name)
    base = prometheus(testbed)
    count = ("docker exec postgres psql -X -Atq -U postgres -d postgres -c \"SELECT deadlocks "
             "FROM pg_stat_database WHERE datname = 'payments'\"")
    before = int(testbed.ssh(db, count).stdout)
    # the alert reads an increase: the counter must have been scraped before the deadlock
    wait_for("payments' deadlock counter scraped", lambda: query(
        base, 'pg_stat_database_deadlocks{datname="payments"}')["data"]["result"], timeout=120)
    try:
        out = testbed.ssh(db, DEADLOCK, timeout=120).stdout
        assert "deadlock detected" in out, out
        assert int(testbed.ssh(db, count).stdout) == before + 1
        started = time.time()
        wait_for("PostgresDeadlocks firing for payments",
                 lambda: firing(base, "PostgresDeadlocks", {"datname": "payments",
                                                            "host": db.name}), timeout=120)
        print(f"PostgresDeadlocks fired {time.time() - started:.0f} s after the deadlock")
    finally:
        testbed.ssh(db, f"docker exec postgres psql -X -q -U postgres -d payments -c "
                        f"'DROP TABLE IF EXISTS {TABLE}'", check=False)
    others = [a["labels"] for a in get_json(f"{base}/alerts")["data"]["alerts"]
              if a["labels"]["alertname"] == "PostgresDeadlocks"
              and a["labels"]["datname"] != "payments"]
    assert others == []
