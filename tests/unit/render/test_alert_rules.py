"""Alert rules: `promtool check rules` and `promtool test rules` on the rendered rules of each
environment, a check that the rule tests cover every alert both ways, and that every alert's
runbook_url has its page in ops/runbooks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.catalog import REPO_ROOT
from ops.render import PlaceholderSecrets, render_host, render_rule_tests
from ops.render.prometheus import (
    ALERT_NAMES,
    PITR_ALERT_NAMES,
    RULE_FILES,
    RULE_TESTS,
    RULES_DIR,
    alert_names,
    runbook_slug,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RUNBOOKS = REPO_ROOT / "ops" / "runbooks"
# the seed's runbooks that are not one alert's page
SEED_RUNBOOKS = ("rate-limit-tuning", "payments-webhook-retries", "db-failover", "restore",
                 "firewall-and-host-keys", "tls")


def rule_files_of(environment) -> dict[str, str]:
    """rule file name -> its rendered content, as deployed on the monitoring host."""
    host = environment.monitoring_host.name
    files = {f.path: f for f in render_host(environment, host, PlaceholderSecrets())}
    return {name: files[f"{RULES_DIR}/{name}"].content for name in RULE_FILES}


def rules_of(environment) -> str:
    """Every rule file's groups as one YAML document."""
    groups = [g for text in rule_files_of(environment).values()
              for g in yaml.safe_load(text)["groups"]]
    return yaml.safe_dump({"groups": groups})


def all_rule_tests(environment) -> list[dict]:
    return [t for text in render_rule_tests(environment).values()
            for t in yaml.safe_load(text)["tests"]]


def promtool_rules_and_tests(environment, tmp_path: Path) -> None:
    for name, content in rule_files_of(environment).items():
        (tmp_path / name).write_text(content)
        check = subprocess.run([PROMTOOL, "check", "rules", name], cwd=tmp_path,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    for name, content in render_rule_tests(environment).items():
        assert RULE_TESTS[name] in yaml.safe_load(content)["rule_files"]
        (tmp_path / name).write_text(content)
        test = subprocess.run([PROMTOOL, "test", "rules", name], cwd=tmp_path,
                              capture_output=True, text=True)
        assert test.returncode == 0, name + ": " + test.stdout + test.stderr


@pytest.mark.parametrize("env", ["prod", "staging", "local"])
def test_promtool_unit_tests_pass(environments, env, tmp_path: Path):
    promtool_rules_and_tests(environments[env], tmp_path)


def test_without_pitr_no_pitr_rules_and_the_tests_still_pass(repo_copy, tmp_path: Path):
    repo_copy.replace("group_data/prod.py", r"^.*\"backup-1\".*\n", "")
    repo_copy.replace("group_data/all.py", r"^pitr = \{[^}]*\}\n", "")
    environment = repo_copy.load("prod")
    groups = yaml.safe_load(rules_of(environment))["groups"]
    assert [g["name"] for g in groups] == ["superapp-services", "superapp-backups",
                                           "superapp-watch", "superapp-data"]
    assert alert_names(environment) == ALERT_NAMES
    assert "superapp_pitr" not in "".join(render_rule_tests(environment).values())
    promtool_rules_and_tests(environment, tmp_path)


def test_rules_define_exactly_the_spec_alerts_with_severity_and_runbook(environments):
    groups = yaml.safe_load(rules_of(environments["prod"]))["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert sorted({r["alert"] for r in rules}) == sorted(alert_names(environments["prod"]))
    for rule in rules:
        # Watchdog's `none`: no human receiver, the dead-man's switch only
        allowed = ("none",) if rule["alert"] == "Watchdog" else ("critical", "warning", "info")
        assert rule["labels"]["severity"] in allowed
        assert rule["annotations"]["runbook_url"].startswith("https://runbooks.superapp.sy/")
    by_name = {r["alert"]: r for r in rules}
    assert by_name["HighLatencyP99"]["expr"].strip().endswith("> 1")
    assert by_name["HighLatencyP99Critical"]["expr"].strip().endswith("> 2")
    assert "superapp_backup_last_success_timestamp_seconds" in by_name["BackupStale"]["expr"]
    assert "> 93600" in by_name["BackupStale"]["expr"]  # 26 h in prod


def test_pitr_rules_use_the_pitr_thresholds(environments):
    groups = yaml.safe_load(rules_of(environments["prod"]))["groups"]
    pitr = next(g for g in groups if g["name"] == "superapp-pitr")
    base = environments["prod"].settings["alerting"]["runbook_base_url"].rstrip("/")
    exprs: dict[str, list[str]] = {}
    for rule in pitr["rules"]:
        exprs.setdefault(rule["alert"], []).append(" ".join(rule["expr"].split()))
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"]
        assert notes["runbook_url"] == f"{base}/{runbook_slug(rule['alert'])}"
    assert set(exprs) == set(PITR_ALERT_NAMES)
    assert exprs["PitrArchiveLagging"][0] == (
        "time() - superapp_pitr_archive_last_success_timestamp_seconds > 300")
    assert exprs["PitrRepositoryDown"] == ["superapp_pitr_repo_up == 0"]
    assert exprs["PitrMetricsStale"][0].endswith("> 600")
    assert exprs["PitrFullBackupTooOld"][0].endswith("> 691200")  # 192 h
    assert exprs["PitrBackupTooOld"][0].endswith("> 93600")  # 26 h
    assert exprs["BackupVolumeFilling"][0].endswith("> 0.8")
    assert exprs["RestoreDrillStale"][0].endswith("> 691200")  # 8 days
    # a metric that is missing is an alert too, not silence
    assert any("absent(" in e or " unless " in e for e in exprs["PitrArchiveLagging"])
    assert any("absent(" in e or " unless " in e for e in exprs["PitrFullBackupTooOld"])
    assert any("absent(" in e for e in exprs["RestoreDrillStale"])


def test_every_runbook_url_has_its_page(environments):
    base = environments["prod"].settings["alerting"]["runbook_base_url"].rstrip("/")
    groups = yaml.safe_load(rules_of(environments["prod"]))["groups"]
    slugs = {r["annotations"]["runbook_url"] for g in groups for r in g["rules"]}
    assert all(url.startswith(base + "/") for url in slugs)
    slugs = {url.removeprefix(base + "/") for url in slugs}
    missing = sorted(s for s in slugs if not (RUNBOOKS / f"{s}.md").is_file())
    assert not missing, f"no page ops/runbooks/<slug>.md for: {missing}"
    for name in PITR_ALERT_NAMES:
        assert runbook_slug(name) in slugs
    for page in SEED_RUNBOOKS:
        assert (RUNBOOKS / f"{page}.md").is_file(), page


def test_every_runbook_page_starts_with_its_title_and_has_first_checks_and_a_fix():
    for page in sorted(RUNBOOKS.glob("*.md")):
        text = page.read_text()
        assert text.startswith("# "), page.name
        if page.stem not in ("restore", "rollback", "rate-limit-tuning"):  # procedures
            assert "## First checks" in text and "## Fix" in text, page.name


def test_every_alert_is_tested_firing_and_silent(environments):
    names = set(alert_names(environments["prod"]))
    tests = all_rule_tests(environments["prod"])
    cases = [case for t in tests for case in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fires == names
    # the critical latency alert's silence is tested by the 1.2 s series: HighLatencyP99
    # fires for it, HighLatencyP99Critical lists only taxi (2.5 s); Watchdog is never silent
    assert silent | {"HighLatencyP99Critical", "Watchdog"} == names
    critical = next(c for c in cases if c["alertname"] == "HighLatencyP99Critical")
    assert [a["exp_labels"]["service"] for a in critical["exp_alerts"]] == ["taxi"]
    warning = next(c for c in cases if c["alertname"] == "HighLatencyP99" and c["exp_alerts"])
    assert [a["exp_labels"]["service"] for a in warning["exp_alerts"]] == ["payments", "taxi"]
