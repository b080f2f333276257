"""ops.dbha.monitoring: the scrape jobs pass `promtool check config`, and every alert is
evaluated by `promtool test rules` on series shaped like what Patroni's and HAProxy's own
exporters serve (their names and labels are read from the live ones in
tests/integration/test_db_ha.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from ops.dbha.model import cluster_from_settings
from ops.dbha.monitoring import ALERT_NAMES, alert_group, scrape_configs
from ops.render.prometheus import runbook_slug
from tests.unit.dbha.cluster_data import ADDRESSES, SETTINGS

BASE = "https://runbooks.example/ops"
RUNBOOKS = Path(__file__).resolve().parents[3] / "ops" / "runbooks"


def cluster(**changes):
    return cluster_from_settings({**SETTINGS, **changes}, ADDRESSES, routers=["app-1", "app-2"])


def member(metric: str, name: str, values: str) -> dict:
    """Patroni labels its own series `scope`; Prometheus' `up` has the target's labels only."""
    scope = "" if metric == "up" else ', scope="superapp"'
    return {"series": f'{metric}{{job="patroni", instance="{ADDRESSES[name]}:8008", '
                      f'member="{name}"{scope}}}', "values": values}


def router(metric: str, host: str, values: str, proxy: str | None = None) -> dict:
    extra = f', proxy="{proxy}"' if proxy else ""
    return {"series": f'{metric}{{job="db-router", instance="{ADDRESSES[host]}:8404", '
                      f'host="{host}"{extra}}}', "values": values}


def healthy(**overrides: str) -> list[dict]:
    """db-1 leads, db-2 is the synchronous standby and has received everything; both routers
    route to db-1. `overrides`: `<metric>__<host>` -> values."""
    values = {"up__db-1": "1x40", "up__db-2": "1x40",
              "patroni_postgres_running__db-1": "1x40", "patroni_postgres_running__db-2": "1x40",
              "patroni_primary__db-1": "1x40", "patroni_primary__db-2": "0x40",
              "patroni_replica__db-1": "0x40", "patroni_replica__db-2": "1x40",
              "patroni_sync_standby__db-1": "0x40", "patroni_sync_standby__db-2": "1x40",
              "patroni_xlog_location__db-1": "50000000x40", "patroni_xlog_location__db-2": "0x40",
              "patroni_xlog_received_location__db-1": "0x40",
              "patroni_xlog_received_location__db-2": "50000000x40",
              "up__app-1": "1x40", "up__app-2": "1x40",
              "haproxy_backend_active_servers__app-1": "1x40",
              "haproxy_backend_active_servers__app-2": "1x40"}
    values.update({k.replace("_DASH_", "-"): v for k, v in overrides.items()})
    series = []
    for key, v in values.items():
        metric, host = key.split("__")
        if host.startswith("app"):
            proxy = "primary" if metric.startswith("haproxy") else None
            series.append(router(metric, host, v, proxy))
            if proxy:  # the read listener: never alerts, whatever it holds
                series.append(router(metric, host, "0x40", "replicas"))
        else:
            series.append(member(metric, host, v))
    return series


def alert(name: str, at: str, labels: dict, summary: str) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{
        "exp_labels": labels,
        "exp_annotations": {"summary": summary, "runbook_url": f"{BASE}/{runbook_slug(name)}"}}]}


def quiet(at: str, *names: str) -> list[dict]:
    return [{"eval_time": at, "alertname": n, "exp_alerts": []} for n in names]


def run_promtool(tmp_path: Path, group: dict, tests: list[dict]) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [group]}))
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": tests}))
    return subprocess.run(["promtool", "test", "rules", str(tmp_path / "rules_test.yml")],
                          capture_output=True, text=True, timeout=120)


MEMBER_LABELS = {"job": "patroni", "scope": "superapp"}


def cases() -> list[dict]:
    sync = "superapp has no synchronous standby: the primary commits alone: a failover now " \
           "can lose acknowledged writes"
    return [
        # a healthy cluster: nothing fires, over ten minutes
        {"interval": "15s", "input_series": healthy(),
         "alert_rule_test": quiet("9m", *ALERT_NAMES)},
        # an election that never ends: no member reports primary; an election's worth of it
        # (60 s with a 30 s lease) is not an alert yet
        {"interval": "15s",
         "input_series": healthy(**{"patroni_primary__db_DASH_1": "0x40",
                                    "patroni_sync_standby__db_DASH_2": "0x40"}),
         "alert_rule_test": [
             *quiet("45s", "PostgresLeaderMissing"),
             alert("PostgresLeaderMissing", "2m", {"severity": "critical", "scope": "superapp"},
                   "superapp: 0 members report primary (one expected): writes fail, or two "
                   "primaries take them"),
             # no primary: the missing sync standby is not what matters
             *quiet("2m", "PostgresNoSyncStandby")]},
        # two primaries
        {"interval": "15s", "input_series": healthy(**{"patroni_primary__db_DASH_2": "1x40"}),
         "alert_rule_test": [alert(
             "PostgresLeaderMissing", "2m", {"severity": "critical", "scope": "superapp"},
             "superapp: 2 members report primary (one expected): writes fail, or two "
             "primaries take them")]},
        # db-2's PostgreSQL stopped; then db-1's Patroni unreachable
        {"interval": "15s",
         "input_series": healthy(**{"patroni_postgres_running__db_DASH_2": "1 1 0x38",
                                    "up__db_DASH_1": "1x20 0x20"}),
         "alert_rule_test": [
             alert("PatroniMemberDown", "2m", {**MEMBER_LABELS, "severity": "warning",
                                               "member": "db-2", "instance": "10.0.0.12:8008"},
                   "db-2: Patroni or its PostgreSQL is down (no failover to it)"),
             {"eval_time": "8m", "alertname": "PatroniMemberDown", "exp_alerts": [
                 {"exp_labels": {**MEMBER_LABELS, "severity": "warning", "member": "db-2",
                                 "instance": "10.0.0.12:8008"},
                  "exp_annotations": {
                      "summary": "db-2: Patroni or its PostgreSQL is down (no failover to it)",
                      "runbook_url": f"{BASE}/patroni-member-down"}},
                 {"exp_labels": {"job": "patroni", "severity": "warning", "member": "db-1",
                                 "instance": "10.0.0.11:8008"},
                  "exp_annotations": {
                      "summary": "db-1: Patroni or its PostgreSQL is down (no failover to it)",
                      "runbook_url": f"{BASE}/patroni-member-down"}}]}]},
        # db-2 received 40 MB less than db-1 wrote: beyond maximum_lag_on_failover (1 MiB)
        {"interval": "15s",
         "input_series": healthy(**{"patroni_xlog_received_location__db_DASH_2": "10000000x40"}),
         "alert_rule_test": [
             *quiet("90s", "PostgresStandbyTooFarBehind"),
             alert("PostgresStandbyTooFarBehind", "3m",
                   {**MEMBER_LABELS, "severity": "warning", "member": "db-2",
                    "instance": "10.0.0.12:8008"},
                   "db-2 is 38.15MiB behind the leader: Patroni would not promote it")]},
        # half a MiB behind: within the limit
        {"interval": "15s",
         "input_series": healthy(**{"patroni_xlog_received_location__db_DASH_2": "49500000x40"}),
         "alert_rule_test": quiet("5m", "PostgresStandbyTooFarBehind")},
        # the synchronous standby is gone while db-1 leads
        {"interval": "15s",
         "input_series": healthy(**{"patroni_sync_standby__db_DASH_2": "1 0x39"}),
         "alert_rule_test": [
             *quiet("45s", "PostgresNoSyncStandby"),
             alert("PostgresNoSyncStandby", "2m", {"severity": "critical", "scope": "superapp"},
                   sync)]},
        # app-1's router routes to no primary; app-2's router cannot be scraped
        {"interval": "15s",
         "input_series": healthy(**{"haproxy_backend_active_servers__app_DASH_1": "0x40",
                                    "up__app_DASH_2": "0x40"}),
         "alert_rule_test": [
             *quiet("45s", "DbRouterNoPrimary"),
             {"eval_time": "2m", "alertname": "DbRouterNoPrimary", "exp_alerts": [
                 {"exp_labels": {"severity": "critical", "job": "db-router", "host": h,
                                 "instance": f"{ADDRESSES[h]}:8404", **extra},
                  "exp_annotations": {
                      "summary": f"{h}: the database router reaches no primary: the host's "
                                 "services cannot write",
                      "runbook_url": f"{BASE}/db-router-no-primary"}}
                 for h, extra in (("app-1", {"proxy": "primary"}), ("app-2", {}))]}]},
    ]


def test_every_alert_fires_on_its_fault_and_not_on_a_healthy_cluster(tmp_path: Path) -> None:
    res = run_promtool(tmp_path, alert_group(cluster(), BASE), cases())
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_would_see_a_wrong_expectation(tmp_path: Path) -> None:
    wrong = [{"interval": "15s", "input_series": healthy(),
              "alert_rule_test": [alert("PostgresLeaderMissing", "2m",
                                        {"severity": "critical", "scope": "superapp"}, "x")]}]
    res = run_promtool(tmp_path, alert_group(cluster(), BASE), wrong)
    assert res.returncode != 0 and "PostgresLeaderMissing" in res.stdout + res.stderr


def test_the_no_sync_standby_alert_follows_the_replication_mode() -> None:
    def names(**changes) -> list[str]:
        return [r["alert"] for r in alert_group(cluster(**changes), BASE)["rules"]]

    assert "PostgresNoSyncStandby" not in names(replication="asynchronous")
    assert names() == list(ALERT_NAMES)
    strict = alert_group(cluster(synchronous_strict=True), BASE)["rules"]
    summary = next(r for r in strict if r["alert"] == "PostgresNoSyncStandby")
    assert summary["annotations"]["summary"].endswith("writes block until one is back")


@pytest.mark.parametrize("ttl, wait", [(30, "60s"), (45, "90s")])
def test_no_leader_pages_after_an_election_would_have_ended(ttl, wait) -> None:
    rules = alert_group(cluster(ttl_seconds=ttl), BASE)["rules"]
    assert next(r for r in rules if r["alert"] == "PostgresLeaderMissing")["for"] == wait


def test_prometheus_accepts_the_scrape_jobs_with_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [alert_group(cluster(),
                                                                               BASE)]}))
    jobs = scrape_configs(cluster())
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yml"], "scrape_configs": jobs}))
    res = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    targets = {j["job_name"]: [(c["targets"], c["labels"]) for c in j["static_configs"]]
               for j in jobs}
    assert targets == {
        "patroni": [(["10.0.0.11:8008"], {"member": "db-1"}),
                    (["10.0.0.12:8008"], {"member": "db-2"})],
        "db-router": [(["10.0.0.21:8404"], {"host": "app-1"}),
                      (["10.0.0.22:8404"], {"host": "app-2"})]}


def test_every_alert_has_its_runbook_page() -> None:
    for rule in alert_group(cluster(), BASE)["rules"]:
        page = RUNBOOKS / f"{runbook_slug(rule['alert'])}.md"
        assert page.is_file(), page
        assert page.read_text().startswith(f"# {rule['alert']}\n")
