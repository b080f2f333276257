"""A remembered validation pass (ops/validate_passed.py): skipped only on the same inputs, and
a failure is never remembered. The last test runs the real validators on a real tree."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from ops.catalog import load_environment
from ops.validate import ValidationError, locate_tool, validate_tree
from ops.validate_passed import validate_unless_passed

ENV = load_environment("local")


class Validate:
    """Counts its runs; raises while `failing` is set, as validate_tree does on a failure."""

    def __init__(self) -> None:
        self.runs, self.failing = 0, False

    def __call__(self, root: Path, environment) -> dict:
        self.runs += 1
        if self.failing:
            raise ValidationError("traefik failed for host2/...: a router to a missing service")
        return {}


def tools(version: str = "3.7.15"):
    return lambda name: f"/opt/{name}-{version}"


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "host2/opt/superapp/traefik/dynamic").mkdir(parents=True)
    (root / "host2/opt/superapp/traefik/dynamic/chat.yml").write_text("http: {}\n")
    return root


def test_the_same_tree_is_validated_once(tmp_path):
    root, validate, cache = tree(tmp_path), Validate(), tmp_path / "cache"
    ran = [validate_unless_passed(root, ENV, validate, tools(), cache) for _ in range(3)]
    assert ran == [True, False, False] and validate.runs == 1


@pytest.mark.parametrize("change", ["a byte of a file", "a new file", "a renamed file",
                                    "a validator's version", "the settings"])
def test_any_changed_input_is_validated_again(tmp_path, change):
    root, validate, cache = tree(tmp_path), Validate(), tmp_path / "cache"
    env, found = ENV, tools()
    validate_unless_passed(root, env, validate, found, cache)
    route = root / "host2/opt/superapp/traefik/dynamic/chat.yml"
    if change == "a byte of a file":
        route.write_text("http: {}\n ")
    elif change == "a new file":
        (route.parent / "food.yml").write_text("http: {}\n")
    elif change == "a renamed file":
        route.rename(route.parent / "food.yml")
    elif change == "a validator's version":
        found = tools("3.7.16")
    else:
        env = replace(ENV, settings={**ENV.settings, "deploy_lock_lease_seconds": 31})
    assert validate_unless_passed(root, env, validate, found, cache)
    assert validate.runs == 2


def test_a_prometheus_tree_is_validated_again_when_the_catalog_changes_its_rule_tests(
        tmp_path):
    root, validate, cache = tree(tmp_path), Validate(), tmp_path / "cache"
    (root / "host1/opt/superapp/prometheus").mkdir(parents=True)
    (root / "host1/opt/superapp/prometheus/prometheus.yml").write_text("global: {}\n")
    validate_unless_passed(root, ENV, validate, tools(), cache)
    services = dict(ENV.catalog.services)
    services.pop(list(services)[-1])  # the last database is the rule tests' never-backed-up one
    fewer = replace(ENV, catalog=replace(ENV.catalog, services=services))
    assert validate_unless_passed(root, fewer, validate, tools(), cache)
    assert validate.runs == 2


def test_a_failure_is_raised_every_time_and_never_remembered(tmp_path):
    root, validate, cache = tree(tmp_path), Validate(), tmp_path / "cache"
    validate.failing = True
    for _ in range(2):
        with pytest.raises(ValidationError):
            validate_unless_passed(root, ENV, validate, tools(), cache)
    assert validate.runs == 2 and not any(cache.glob("*"))
    validate.failing = False  # fixed: validated, then remembered
    assert validate_unless_passed(root, ENV, validate, tools(), cache)
    assert not validate_unless_passed(root, ENV, validate, tools(), cache)


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path):
    root, validate = tree(tmp_path), Validate()
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    for _ in range(2):
        assert validate_unless_passed(root, ENV, validate, tools(), blocked / "cache")
    assert validate.runs == 2


def test_the_cache_is_private_and_holds_digests_only(tmp_path):
    root, cache = tree(tmp_path), tmp_path / "cache"
    validate_unless_passed(root, ENV, Validate(), tools(), cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    [entry] = cache.iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600 and entry.stat().st_size == 0
    assert len(entry.name) == 64


def test_the_real_validators_refuse_a_broken_file_on_every_run(tmp_path):
    """docker compose itself: a broken compose file fails each time, a fixed one passes and
    is then not checked again."""
    root, cache = tmp_path / "tree", tmp_path / "cache"
    compose = root / "host2/opt/superapp/compose/chat.yml"
    compose.parent.mkdir(parents=True)
    compose.write_text("services:\n  chat:\n    image: x\n    bogus: 1\n")
    for _ in range(2):
        with pytest.raises(ValidationError, match="docker compose config failed"):
            validate_unless_passed(root, ENV, validate_tree, locate_tool, cache)
    compose.write_text("services:\n  chat:\n    image: x\n")
    assert validate_unless_passed(root, ENV, validate_tree, locate_tool, cache)
    assert not validate_unless_passed(root, ENV, validate_tree, locate_tool, cache)
