"""ops/audit/apps.py against Super-App monorepo checkouts built in tmp dirs: one violation per
rule, each at the right location, and a clean checkout with no finding."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ops.audit import run_audit
from ops.audit.apps import DEPLOY_TEMPLATE, audit_apps
from ops.catalog import load_environment

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
