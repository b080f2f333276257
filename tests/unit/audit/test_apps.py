"""ops/audit/apps.py against Super-App monorepo checkouts built in tmp dirs: one violation per
rule, each at the right location, and a clean checkout with no finding; the monorepo's secret
scans (tree and git history) and how the CLI and `make prod-audit` run them.

Fake secrets are made at run time and written only into the scratch monorepos, never into this
file: this repository's own secret scan must not flag it.
"""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
from pathlib import Path

import pytest

from ops.audit import known_rules, rule_scope, run_audit
from ops.audit import repository as repo_rules
from ops.audit.__main__ import main
from ops.audit.apps import DEPLOY_TEMPLATE, audit_apps, check_apps_history, check_apps_tree_secrets
from ops.catalog import REPO_ROOT, load_environment

CREATE_ALL_MODULE = (
    "from app.models import Base\n"
    "def init(engine):\n"
    "    Base.metadata.create_all(bind=engine)\n"
)
TEMPLATE = """services:
  payments:
    image: superapp/payments:1.2.3
    environment:
      - APP_ENV=prod
      - INTERNAL_REQUIRE_HMAC={hmac}
  taxi:
    image: superapp/taxi:1.2.3
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def monorepo(root: Path, services: list[str], alembic: set[str], hmac: str = "true") -> Path:
    """Every service gets app/db.py calling create_all and a .env.example; `alembic` ones get
    an Alembic directory and alembic.ini."""
    for name in services:
        write(root, f"apps/{name}/app/db.py", CREATE_ALL_MODULE)
        write(root, f"apps/{name}/.env.example", "DB_URL=\n")
        if name in alembic:
            write(root, f"apps/{name}/alembic.ini", "[alembic]\n")
            write(root, f"apps/{name}/alembic/env.py", "# alembic env\n")
    write(root, DEPLOY_TEMPLATE, TEMPLATE.format(hmac=hmac))
    return root


@pytest.fixture(scope="module")
def prod():
    return load_environment("prod")


@pytest.fixture
def migrating_catalog(repo_copy):
    """A catalog where every service has Alembic and a migrate command (the goal state)."""
    repo_copy.replace("ops/catalog/services.yml", r"^  has_alembic: false", "  has_alembic: true")
    repo_copy.replace("ops/catalog/services.yml", r"^  migrate_command: null",
                      "  migrate_command: [alembic, upgrade, head]")
    return repo_copy


def test_clean_monorepo_has_no_finding(tmp_path, migrating_catalog):
    environment = migrating_catalog.load()
    root = monorepo(tmp_path / "superapp", list(environment.services),
                    alembic=set(environment.services))
    assert audit_apps(root, environment) == []


def test_one_violation_per_rule(tmp_path, prod):
    names = list(prod.services)
    root = monorepo(tmp_path / "superapp", names, alembic=set(names) - {"food"}, hmac="false")
    write(root, "apps/food/.env", "JWT_SECRET=x\n")
    found = audit_apps(root, prod)
    by_rule = {}
    for f in found:
        by_rule.setdefault(f.rule, []).append(f)
    assert [f.where for f in by_rule["apps.env-file"]] == ["apps/food/.env"]
    assert [f.where for f in by_rule["apps.create-all-without-alembic"]] == [
        "apps/food/app/db.py:3"]
    # food has no Alembic but its catalog entry declares the bootstrap job: not unprovisioned
    assert [f for f in by_rule.get("apps.schema-unprovisioned", []) if f.severity == "high"] == []
    assert [f.where for f in by_rule["apps.deploy-template-hmac"]] == [f"{DEPLOY_TEMPLATE}:6"]
    assert "'false'" in by_rule["apps.deploy-template-hmac"][0].message
    # the catalog lags the monorepo: Alembic exists but no migrate command (medium, not high)
    lagging = {f.where.rsplit(".", 1)[1] for f in by_rule["apps.schema-unprovisioned"]
               if f.severity == "medium"}
    assert lagging == {n for n, s in prod.services.items() if not s.migrate_command} - {"food"}


def test_a_service_declaring_the_schema_bootstrap_is_not_unprovisioned(tmp_path, prod):
    """Today's monorepo: only payments and taxi have Alembic."""
    root = monorepo(tmp_path / "superapp", list(prod.services), alembic={"payments", "taxi"})
    found = [f for f in audit_apps(root, prod) if f.rule == "apps.schema-unprovisioned"]
    assert found == []  # every one declares schema_bootstrap_command (rendered.schema-bootstrap)
    create_all = [f for f in audit_apps(root, prod) if f.rule == "apps.create-all-without-alembic"]
    assert len(create_all) == len(prod.services) - 2


def test_deploy_template_mapping_form_and_missing_key(tmp_path):
    root = tmp_path / "superapp"
    write(root, "apps/payments/alembic.ini", "")
    write(root, DEPLOY_TEMPLATE, "services:\n  payments:\n    environment:\n"
                                 "      INTERNAL_REQUIRE_HMAC: true\n")
    assert audit_apps(root, None) == []
    write(root, DEPLOY_TEMPLATE, "services:\n  payments:\n    environment:\n      A: b\n")
    [found] = audit_apps(root, None)
    assert (found.rule, found.where) == ("apps.deploy-template-hmac", f"{DEPLOY_TEMPLATE}:3")


def test_only_committed_env_files_count_in_a_git_checkout(tmp_path):
    root = tmp_path / "superapp"
    write(root, "apps/food/.env", "A=1\n")
    write(root, "apps/food/alembic.ini", "")
    write(root, ".gitignore", ".env\n")
    write(root, DEPLOY_TEMPLATE, TEMPLATE.format(hmac="true"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    assert audit_apps(root, None) == []
    subprocess.run(["git", "-C", str(root), "add", "-f", "apps/food/.env"], check=True)
    assert [f.where for f in audit_apps(root, None)] == ["apps/food/.env"]


def test_run_audit_with_apps_blocks_on_the_food_env_file(tmp_path):
    names = list(load_environment("prod").services)
    root = monorepo(tmp_path / "superapp", names, alembic=set(names))
    write(root, "apps/food/.env", "A=1\n")
    report = run_audit("prod", apps=root, repo=False)
    assert [f.where for f in report.blocking if f.rule.startswith("apps.")] == ["apps/food/.env"]
    assert report.timings["apps"] < 1.0


def test_a_service_declaring_no_way_to_its_schema_is_unprovisioned(tmp_path, repo_copy):
    """Without schema_bootstrap_command (accepted outside prod and staging), a service with no
    migrations and no Alembic is a high finding, as before the bootstrap job existed."""
    catalog = repo_copy.path("ops/catalog/services.yml")
    text, count = re.subn(r"\n    schema_bootstrap_command: .*", "", catalog.read_text())
    assert count == 15
    catalog.write_text(text)
    environment = repo_copy.load("local")
    names = list(environment.services)
    root = monorepo(tmp_path / "superapp", names, alembic={"payments", "taxi"})
    found = [f for f in audit_apps(root, environment) if f.rule == "apps.schema-unprovisioned"]
    assert sorted(f.key for f in found) == sorted(
        f"services.{n}" for n in names if n not in ("payments", "taxi"))
    food = next(f for f in found if f.key == "services.food")
    assert food.severity == "high" and food.where == "ops/catalog/services.yml services.food"
    assert "must be provisioned another way" in food.message


# ---------------------------------------------------------------- secrets in the monorepo

SETTINGS = "apps/payments/app/settings.py"
SKIPPED_LINE = ("monorepo checks skipped: pass APPS=path (make prod-audit APPS=../super-app) "
                "or --apps PATH to audit the Super-App checkout")


def fake_aws_key() -> str:
    """An AWS access key id detect-secrets recognises, different on every run."""
    return "AKIA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=16))


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def superapp(tmp_path: Path) -> Path:
    """A git monorepo with one commit and no secret."""
    root = tmp_path / "superapp"
    write(root, "apps/payments/alembic.ini", "[alembic]\n")
    write(root, SETTINGS, 'REGION = "eu"\n')
    write(root, DEPLOY_TEMPLATE, TEMPLATE.format(hmac="true"))
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    git(root, "config", "user.email", "audit@test.invalid")
    git(root, "config", "user.name", "audit test")
    commit(root, "init")
    return root


def aws(findings):
    return [f for f in findings if "AWS" in f.message]


def test_no_secret_no_finding(superapp):
    assert check_apps_tree_secrets(superapp) == []
    assert check_apps_history(superapp) == []


def test_a_secret_committed_then_deleted_is_found_in_history_naming_the_commit(superapp):
    key = fake_aws_key()
    write(superapp, SETTINGS, f'REGION = "eu"\nAWS_ACCESS_KEY_ID = "{key}"\n')
    leaked = commit(superapp, "add the key")
    write(superapp, SETTINGS, 'REGION = "eu"\n')
    commit(superapp, "remove the key")

    assert aws(check_apps_tree_secrets(superapp)) == []
    [found] = aws(check_apps_history(superapp))
    assert (found.rule, found.severity, found.where) == (
        "apps.secret-in-history", "high", f"git {leaked[:12]}:{SETTINGS}:2")
    assert key not in f"{found.where} {found.message} {found.fix} {found.key}"


def test_a_secret_in_the_tree_is_found_with_file_and_line(superapp):
    key = fake_aws_key()
    write(superapp, SETTINGS, f'REGION = "eu"\nAWS_ACCESS_KEY_ID = "{key}"\n')
    commit(superapp, "add the key")
    [found] = aws(check_apps_tree_secrets(superapp))
    assert (found.rule, found.severity, found.where) == ("apps.secret-in-tree", "high",
                                                         f"{SETTINGS}:2")
    assert key not in f"{found.where} {found.message} {found.fix} {found.key}"


def test_only_tracked_files_are_scanned_in_the_tree(superapp):
    write(superapp, "apps/payments/local.cfg", f"key = {fake_aws_key()}\n")
    assert aws(check_apps_tree_secrets(superapp)) == []
    git(superapp, "add", "apps/payments/local.cfg")
    assert [f.where for f in aws(check_apps_tree_secrets(superapp))] == [
        "apps/payments/local.cfg:1"]


def test_an_env_file_ever_committed_is_reported_from_history(superapp):
    write(superapp, "apps/food/.env", "A=1\n")
    first = commit(superapp, "env")
    (superapp / "apps/food/.env").unlink()
    commit(superapp, "drop env")
    assert [(f.rule, f.where) for f in check_apps_history(superapp)] == [
        ("apps.env-file-in-history", f"git {first[:12]}:apps/food/.env")]


def set_review(root: Path, is_secret: bool | None) -> None:
    path = root / repo_rules.BASELINE
    data = json.loads(path.read_text())
    for entries in data["results"].values():
        for entry in entries:
            entry.pop("is_secret", None)
            if is_secret is not None:
                entry["is_secret"] = is_secret
    path.write_text(json.dumps(data))


def test_only_a_baseline_entry_marked_not_a_secret_silences_it(superapp):
    write(superapp, SETTINGS, f'AWS_ACCESS_KEY_ID = "{fake_aws_key()}"\n')
    commit(superapp, "add the key")
    assert repo_rules.write_baseline(superapp, [SETTINGS]) >= 1
    # written but never reviewed, or reviewed as real: still a finding, high
    for review in (None, True):
        set_review(superapp, review)
        assert [(f.rule, f.severity) for f in aws(check_apps_tree_secrets(superapp))] == [
            ("apps.secret-in-tree", "high")], review
        assert [f.rule for f in aws(check_apps_history(superapp))] == [
            "apps.secret-in-history"], review
    set_review(superapp, False)
    assert aws(check_apps_tree_secrets(superapp)) == []
    assert aws(check_apps_history(superapp)) == []
    commit(superapp, "reviewed baseline")  # the baseline's own hashes are not scanned
    assert check_apps_tree_secrets(superapp) == [] and check_apps_history(superapp) == []


def test_a_monorepo_without_a_baseline_needs_none(superapp):
    """This repository must have a baseline (repo.baseline-missing); the monorepo need not."""
    assert not (superapp / repo_rules.BASELINE).exists()
    assert check_apps_tree_secrets(superapp) == []


def test_a_private_key_is_reported_under_the_apps_rule(superapp):
    write(superapp, "apps/payments/id_rsa", "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow\n"
                                            "-----END RSA " + "PRIVATE KEY-----\n")
    commit(superapp, "key")
    assert [(f.rule, f.where) for f in check_apps_tree_secrets(superapp)] == [
        ("apps.secret-in-tree", "apps/payments/id_rsa:1")]


def test_history_of_an_enclosing_repository_is_not_scanned(superapp):
    """A plain directory inside a git repository is not a checkout of its own."""
    key = fake_aws_key()
    write(superapp, "vendor/settings.py", f'AWS_ACCESS_KEY_ID = "{key}"\n')
    commit(superapp, "add the key")
    (superapp / "vendor/settings.py").unlink()
    commit(superapp, "remove the key")
    assert aws(check_apps_history(superapp))  # the repository's own history: found
    assert check_apps_history(superapp / "apps") == []


def test_run_audit_scans_the_monorepo_and_never_prints_the_value(superapp):
    key = fake_aws_key()
    write(superapp, SETTINGS, f'AWS_ACCESS_KEY_ID = "{key}"\n')
    old = commit(superapp, "add the key")
    write(superapp, "apps/payments/app/other.py", f'KEY = "{key}"\n')
    commit(superapp, "and another copy")
    report = run_audit("prod", apps=superapp, repo=False, secret_scan=True)
    assert sorted((f.rule, f.where) for f in aws(report.blocking)) == sorted([
        ("apps.secret-in-history", f"git {old[:12]}:{SETTINGS}:1"),
        ("apps.secret-in-history", f"git {commit_of(superapp)}:apps/payments/app/other.py:1"),
        ("apps.secret-in-tree", "apps/payments/app/other.py:1"),
        ("apps.secret-in-tree", f"{SETTINGS}:1"),
    ])
    assert {"apps-secrets-tree", "apps-secrets-history"} <= set(report.timings)
    table, data = report.format_table(), report.to_json()
    assert key not in table and key not in data
    assert re.search(rf"\nHIGH +apps\.secret-in-tree +{SETTINGS}:1\n", table)
    assert table.splitlines()[-1] == f"monorepo checked: {superapp.resolve()}"
    assert json.loads(data)["apps"] == str(superapp.resolve())
    # the preflight (no secret_scan) does not pay for the monorepo's history
    quick = run_audit("prod", apps=superapp, repo=False)
    assert not aws(quick.findings) and "apps-secrets-history" not in quick.timings


def commit_of(root: Path) -> str:
    return git(root, "rev-parse", "HEAD")[:12]


def test_a_waiver_accepts_a_rotated_secret_from_the_monorepo_history(superapp, tmp_path):
    assert {"apps.secret-in-tree", "apps.secret-in-history", "apps.env-file-in-history"} <= (
        known_rules())
    assert rule_scope("apps.secret-in-history") == "apps-secrets"
    write(superapp, SETTINGS, f'AWS_ACCESS_KEY_ID = "{fake_aws_key()}"\n')
    commit(superapp, "add the key")
    write(superapp, SETTINGS, 'REGION = "eu"\n')
    commit(superapp, "remove the key")
    waivers = tmp_path / "waivers.yml"
    waivers.write_text("waivers:\n  - rule: apps.secret-in-history\n"
                       f"    match: \"history:{SETTINGS}:AWS Access Key:*\"\n"
                       "    reason: rotated on 2025-11-20, ticket OPS-1\n"
                       "    expires: 2999-12-31\n")
    report = run_audit("prod", apps=superapp, repo=False, secret_scan=True, waivers=waivers)
    [found] = aws(report.findings)
    assert found.waived_by and "waivers.0" in found.waived_by and not found.blocking
    assert not [f for f in report.findings if f.rule.startswith("waiver.")]
    # the preflight does not scan the monorepo's secrets: the waiver is left alone
    quick = run_audit("prod", apps=superapp, repo=False, waivers=waivers)
    assert not [f for f in quick.findings if f.rule.startswith("waiver.")]


@pytest.fixture
def cli(monkeypatch):
    """The CLI without this repository's own (slow) scans: only the monorepo is scanned."""
    monkeypatch.setattr("ops.audit.__main__.run_audit",
                        lambda *a, **k: run_audit(*a, **{**k, "repo": False}))
    return main


def test_without_apps_the_output_says_the_monorepo_was_skipped(cli, capsys):
    cli(["--env", "prod"])
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == SKIPPED_LINE
    cli(["--env", "prod", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["apps"] == "skipped"
    assert {"env", "blocking", "findings", "timings_seconds"} <= set(data)
    # what the deploy prints when it refuses: the blocking findings only
    assert SKIPPED_LINE not in run_audit("prod", repo=False).format_table(only_blocking=True)


def test_the_cli_scans_the_monorepo_given_with_apps(cli, superapp, capsys):
    key = fake_aws_key()
    write(superapp, SETTINGS, f'AWS_ACCESS_KEY_ID = "{key}"\n')
    commit(superapp, "add the key")
    assert cli(["--env", "prod", "--apps", str(superapp)]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"\nHIGH +apps\.secret-in-tree +{SETTINGS}:1\n", out)
    assert SKIPPED_LINE not in out
    assert key not in out
    assert cli(["--env", "prod", "--json", "--apps", str(superapp)]) == 1
    out = capsys.readouterr().out
    assert key not in out
    assert {f["rule"] for f in json.loads(out)["findings"] if "AWS" in f["message"]} == {
        "apps.secret-in-tree", "apps.secret-in-history"}


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_bad_monorepo_path_is_one_error_naming_it(cli, tmp_path, capsys, kind):
    path = tmp_path / "super-app"
    if kind == "file":
        path.write_text("not a checkout\n")
    assert cli(["--env", "prod", "--apps", str(path)]) == 2
    captured = capsys.readouterr()
    why = "does not exist" if kind == "missing" else "is not a directory"
    assert captured.err.splitlines() == [
        f"audit failed: --apps {path}: {why} (pass the Super-App monorepo checkout, "
        "make prod-audit APPS=path)"]
    assert captured.out == ""


def test_make_prod_audit_passes_apps():
    def dry_run(*args: str) -> str:
        return subprocess.run(["make", "-n", "-C", str(REPO_ROOT), "prod-audit", *args],
                              check=True, capture_output=True, text=True).stdout
    with_apps = [line for line in dry_run("APPS=/x").splitlines() if "ops.audit" in line]
    assert with_apps == [".venv/bin/python -m ops.audit --env prod --apps /x"]
    without = [line for line in dry_run().splitlines() if "ops.audit" in line]
    assert [line.rstrip() for line in without] == [".venv/bin/python -m ops.audit --env prod"]
