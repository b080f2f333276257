"""An environment with `db_ha` gets the cluster's scrape jobs (ops/dbha/monitoring.py) in its
rendered prometheus.yml and the cluster's alert group in its rendered data.yml, its runbook
links under the environment's `alerting.runbook_base_url`; the real `promtool` accepts both
and evaluates the rendered rules. Without `db_ha`, nothing of it is rendered."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.audit.rendered import audit_rendered
from ops.catalog.model import Environment
from ops.dbha.model import cluster_from_settings
from ops.dbha.monitoring import ALERT_NAMES, PATRONI_JOB, ROUTER_JOB, alert_group
from ops.render import PlaceholderSecrets, render_environment, render_host, render_rule_tests
from ops.render.files import PROMETHEUS_DIR
from ops.render.prometheus import RULE_FILES, RULE_TESTS, RULES_DIR, alert_names, runbook_slug
from tests.unit.dbha.cluster_data import add_cluster

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RUNBOOKS = Path(__file__).resolve().parents[3] / "ops" / "runbooks"
CONFIG = f"{PROMETHEUS_DIR}/prometheus.yml"
# prod's hosts (group_data/prod.py): db-1 is its `db` host, hence a member
DB_HA = {"scope": "superapp", "members": ["db-1", "backup-1"],
         "etcd": ["db-1", "backup-1", "mon-1"], "replication": "synchronous"}


def with_db_ha(environment: Environment, **changes) -> Environment:
    cluster = cluster_from_settings(
        {**DB_HA, **changes}, {h.name: h.address for h in environment.hosts},
        routers=[h.name for h in environment.hosts_with_role("app")])
    return dataclasses.replace(environment, db_ha=cluster)


@pytest.fixture(scope="module")
def prod(environments) -> Environment:
    assert environments["prod"].db_ha is None
    return environments["prod"]


@pytest.fixture(scope="module")
def prod_ha(prod) -> Environment:
    return with_db_ha(prod)


def prometheus_files(environment: Environment) -> dict[str, str]:
    """prometheus.yml and the rule files, as rendered for the monitoring host, by their path
    under the Prometheus directory (`prometheus.yml`, `rules/<name>`)."""
    host = environment.monitoring_host.name
    return {f.path.removeprefix(PROMETHEUS_DIR + "/"): f.content
            for f in render_host(environment, host, PlaceholderSecrets())
            if f.path == CONFIG or f.path.startswith(RULES_DIR + "/")}


def jobs(files: dict[str, str]) -> dict[str, list[tuple[list[str], dict]]]:
    config = yaml.safe_load(files["prometheus.yml"])
    return {j["job_name"]: [(c["targets"], c.get("labels")) for c in j["static_configs"]]
            for j in config["scrape_configs"]}


def groups(files: dict[str, str]) -> dict[str, dict]:
    return {g["name"]: g for name in RULE_FILES
            for g in yaml.safe_load(files[f"rules/{name}"])["groups"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def write(files: dict[str, str], root: Path) -> Path:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return root


def test_the_scrape_jobs_target_exactly_every_members_patroni_and_every_app_hosts_router(
        prod, prod_ha) -> None:
    rendered = jobs(prometheus_files(prod_ha))
    assert rendered[PATRONI_JOB] == [(["10.10.1.11:8008"], {"member": "db-1"}),
                                     (["10.10.3.11:8008"], {"member": "backup-1"})]
    assert rendered[ROUTER_JOB] == [([f"10.10.0.1{i}:8404"], {"host": f"app-{i}"})
                                    for i in (1, 2, 3, 4)]
    assert [h.name for h in prod.hosts_with_role("app")] == ["app-1", "app-2", "app-3", "app-4"]
    # the environment's own jobs are untouched, and come first
    before = jobs(prometheus_files(prod))
    assert list(rendered) == [*before, PATRONI_JOB, ROUTER_JOB]
    assert {k: rendered[k] for k in before} == before
    config = yaml.safe_load(prometheus_files(prod_ha)["prometheus.yml"])
    assert {j["job_name"]: j.get("metrics_path") for j in config["scrape_configs"]
            if j["job_name"] in (PATRONI_JOB, ROUTER_JOB)} == {PATRONI_JOB: "/metrics",
                                                                ROUTER_JOB: "/metrics"}


def test_the_alert_group_is_rendered_with_the_environments_runbook_links(prod, prod_ha) -> None:
    base = prod.settings["alerting"]["runbook_base_url"].rstrip("/")
    rendered = groups(prometheus_files(prod_ha))
    group = rendered["superapp-database-superapp"]
    # exactly what ops.dbha.monitoring builds, no rule text of its own
    assert group == alert_group(prod_ha.db_ha, prod.settings["alerting"]["runbook_base_url"])
    assert [r["alert"] for r in group["rules"]] == list(ALERT_NAMES)
    for rule in group["rules"]:
        assert rule["annotations"]["runbook_url"] == f"{base}/{runbook_slug(rule['alert'])}"
        assert (RUNBOOKS / f"{runbook_slug(rule['alert'])}.md").is_file(), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")
    # with PostgreSQL's own alerts, after them; the other groups as without db_ha
    data = yaml.safe_load(prometheus_files(prod_ha)["rules/data.yml"])["groups"]
    assert [g["name"] for g in data] == ["superapp-data", "superapp-database-superapp"]
    assert {k: v for k, v in rendered.items() if k != group["name"]} == groups(
        prometheus_files(prod))
    assert alert_names(prod_ha) == alert_names(prod) + ALERT_NAMES


def test_an_asynchronous_cluster_renders_no_sync_standby_alert(prod) -> None:
    environment = with_db_ha(prod, replication="asynchronous")
    rules = groups(prometheus_files(environment))["superapp-database-superapp"]["rules"]
    assert "PostgresNoSyncStandby" not in [r["alert"] for r in rules]
    assert "PostgresNoSyncStandby" not in alert_names(environment)
    assert "PostgresLeaderMissing" in alert_names(environment)


def test_without_db_ha_nothing_of_the_cluster_is_rendered(prod) -> None:
    files = prometheus_files(prod)
    assert not {PATRONI_JOB, ROUTER_JOB} & set(jobs(files))
    assert not [g for g in groups(files) if g.startswith("superapp-database")]
    assert not set(ALERT_NAMES) & set(alert_names(prod))
    for content in files.values():
        assert "patroni" not in content.lower() and "db_ha" not in content


def test_promtool_checks_the_rendered_config_and_rules(prod_ha, tmp_path: Path) -> None:
    root = write(prometheus_files(prod_ha), tmp_path)
    config = promtool("check", "config", "prometheus.yml", cwd=root)
    assert config.returncode == 0, config.stdout + config.stderr
    # check config also checks the rule files prometheus.yml lists: data.yml among them
    assert "rules/data.yml" in config.stdout + config.stderr
    for name in RULE_FILES:
        rules = promtool("check", "rules", f"rules/{name}", cwd=root)
        assert rules.returncode == 0, name + ": " + rules.stdout + rules.stderr
    data = promtool("check", "rules", "rules/data.yml", cwd=root)
    count = sum(len(g["rules"]) for g in groups(prometheus_files(prod_ha)).values()
                if g["name"] in ("superapp-data", "superapp-database-superapp"))
    assert f"SUCCESS: {count} rules found" in data.stdout, data.stdout


def test_the_environments_own_rule_tests_still_pass_beside_the_cluster_group(
        prod_ha, tmp_path: Path) -> None:
    rules = write({k.removeprefix("rules/"): v for k, v in prometheus_files(prod_ha).items()
                   if k.startswith("rules/")}, tmp_path)
    for name, content in render_rule_tests(prod_ha).items():
        assert RULE_TESTS[name] in yaml.safe_load(content)["rule_files"]
        (rules / name).write_text(content)
        result = promtool("test", "rules", name, cwd=rules)
        assert result.returncode == 0, name + ": " + result.stdout + result.stderr


def rendered_rule_test(prod_ha, tmp_path: Path, expected_host: str) -> subprocess.CompletedProcess:
    """promtool evaluates the RENDERED data.yml: backup-1's Patroni and app-3's router cannot be
    scraped, with the targets' labels as the rendered scrape jobs give them."""
    files = prometheus_files(prod_ha)
    base = prod_ha.settings["alerting"]["runbook_base_url"].rstrip("/")
    (tmp_path / "data.yml").write_text(files["rules/data.yml"])
    series = [
        {"series": 'up{job="patroni", instance="10.10.1.11:8008", member="db-1"}',
         "values": "1x20"},
        {"series": 'up{job="patroni", instance="10.10.3.11:8008", member="backup-1"}',
         "values": "0x20"},
        *({"series": f'up{{job="db-router", instance="10.10.0.1{i}:8404", host="app-{i}"}}',
           "values": "0x20" if i == 3 else "1x20"} for i in (1, 2, 3, 4)),
        *({"series": f'haproxy_backend_active_servers{{job="db-router", proxy="primary", '
                     f'instance="10.10.0.1{i}:8404", host="app-{i}"}}',
           "values": "1x20"} for i in (1, 2, 4)),
    ]
    tests = [{"interval": "15s", "input_series": series, "alert_rule_test": [
        {"eval_time": "3m", "alertname": "PatroniMemberDown", "exp_alerts": [{
            "exp_labels": {"severity": "warning", "job": "patroni", "member": "backup-1",
                           "instance": "10.10.3.11:8008"},
            "exp_annotations": {
                "summary": "backup-1: Patroni or its PostgreSQL is down (no failover to it)",
                "runbook_url": f"{base}/patroni-member-down"}}]},
        {"eval_time": "3m", "alertname": "DbRouterNoPrimary", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "job": "db-router", "host": expected_host,
                           "instance": "10.10.0.13:8404"},
            "exp_annotations": {
                "summary": f"{expected_host}: the database router reaches no primary: the "
                           "host's services cannot write",
                "runbook_url": f"{base}/db-router-no-primary"}}]}]}]
    (tmp_path / "db_ha_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["data.yml"], "evaluation_interval": "15s", "tests": tests}))
    return promtool("test", "rules", "db_ha_test.yml", cwd=tmp_path)


def test_promtool_evaluates_the_rendered_cluster_rules(prod_ha, tmp_path: Path) -> None:
    result = rendered_rule_test(prod_ha, tmp_path, "app-3")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_rule_test_would_see_a_wrong_expectation(prod_ha, tmp_path: Path) -> None:
    result = rendered_rule_test(prod_ha, tmp_path, "app-4")
    assert result.returncode != 0
    assert "DbRouterNoPrimary" in result.stdout + result.stderr


def test_promtool_would_refuse_a_broken_rendered_rule(prod_ha, tmp_path: Path) -> None:
    files = prometheus_files(prod_ha)
    broken = files["rules/data.yml"].replace("patroni_primary{", "patroni_primary{{", 1)
    assert broken != files["rules/data.yml"]
    root = write({**files, "rules/data.yml": broken}, tmp_path)
    assert promtool("check", "rules", "rules/data.yml", cwd=root).returncode != 0
    assert promtool("check", "config", "prometheus.yml", cwd=root).returncode != 0


def test_the_rendered_audit_finds_nothing_new_with_the_cluster(prod, prod_ha) -> None:
    def findings(environment: Environment) -> list[tuple[str, str, str]]:
        rendered = render_environment(environment, PlaceholderSecrets())
        return sorted((f.rule, f.key, f.severity) for f in audit_rendered(environment, rendered))

    # the one difference: no single PostgreSQL, so no longer its accepted root entrypoint;
    # etcd, Patroni and HAProxy run as their images' own users
    single = [f for f in findings(prod) if "/data.yml:postgres:" in f[1]]
    assert [f[:2] for f in single] == [
        ("rendered.non-root", "rendered.non-root:db-1:/opt/superapp/compose/data.yml:postgres:"
                              "postgres")]
    assert findings(prod_ha) == [f for f in findings(prod) if f not in single]


def test_a_db_ha_block_in_group_data_reaches_the_rendered_prometheus(repo_copy) -> None:
    """Through the loader: its members are the hosts with role db, so prod gets a db-2."""
    add_cluster(repo_copy)
    loaded = repo_copy.load("prod")
    assert loaded.db_ha is not None
    files = prometheus_files(loaded)
    assert jobs(files)[PATRONI_JOB] == [(["10.10.1.11:8008"], {"member": "db-1"}),
                                        (["10.10.1.12:8008"], {"member": "db-2"})]
    assert jobs(files)[ROUTER_JOB] == [([f"10.10.0.1{i}:8404"], {"host": f"app-{i}"})
                                       for i in (1, 2, 3, 4)]
    assert groups(files)["superapp-database-superapp"] == alert_group(
        loaded.db_ha, loaded.settings["alerting"]["runbook_base_url"])
