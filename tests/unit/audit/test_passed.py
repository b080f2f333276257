"""A remembered audit pass (ops/audit/passed.py): skipped only on exactly the same inputs."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

from ops.audit.findings import AuditReport, Finding
from ops.audit.passed import audit_unless_passed, inputs_digest

TODAY = dt.date(2026, 12, 4)
SETTINGS = {"env": "local", "hosts": [{"name": "host1"}]}


class Audit:
    """Counts its runs; blocks while `blocking` is set."""

    def __init__(self) -> None:
        self.runs, self.blocking = 0, False

    def __call__(self, env_name: str) -> AuditReport:
        self.runs += 1
        found = [Finding("repo.env-file", "high", ".env", "committed", "delete it")]
        return AuditReport(env=env_name, findings=found if self.blocking else [])


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "group_data").mkdir(parents=True)
    (root / "group_data/local.py").write_text('env = "local"\n')
    (root / "deploy.py").write_text("print('runbook')\n")
    return root


def test_a_pass_is_remembered_and_the_same_inputs_are_not_audited_again(tmp_path):
    root, audit, cache = tree(tmp_path), Audit(), tmp_path / "cache"
    for _ in range(3):
        assert audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache) is None
    assert audit.runs == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    [entry] = cache.iterdir()
    assert entry.stat().st_size == 0 and stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_any_changed_input_audits_again(tmp_path):
    root, audit, cache = tree(tmp_path), Audit(), tmp_path / "cache"
    audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache)
    (root / "group_data/local.py").write_text('env = "local"\nedge = {}\n')  # a file's content
    audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache)
    (root / "new.env").write_text("X=1\n")  # a new file
    audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache)
    hosts = {**SETTINGS, "hosts": [{"name": "host1"}, {"name": "host4"}]}  # the loaded settings
    audit_unless_passed("local", hosts, audit, root, TODAY, cache)
    audit_unless_passed("local", hosts, audit, root, TODAY + dt.timedelta(days=1), cache)
    audit_unless_passed("staging", hosts, audit, root, TODAY + dt.timedelta(days=1), cache)
    assert audit.runs == 6


def test_a_blocking_report_is_returned_and_never_remembered(tmp_path):
    root, audit, cache = tree(tmp_path), Audit(), tmp_path / "cache"
    audit.blocking = True
    for _ in range(2):
        report = audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache)
        assert report is not None and len(report.blocking) == 1
    assert audit.runs == 2 and not cache.exists()
    audit.blocking = False  # fixed: passes, then is remembered
    assert audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache) is None
    assert audit_unless_passed("local", SETTINGS, audit, root, TODAY, cache) is None
    assert audit.runs == 3


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path):
    root, audit = tree(tmp_path), Audit()
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    for _ in range(2):
        assert audit_unless_passed("local", SETTINGS, audit, root, TODAY, blocked / "c") is None
    assert audit.runs == 2


def test_the_digest_names_no_input(tmp_path):
    root = tree(tmp_path)
    digest = inputs_digest(root, "local", SETTINGS, TODAY)
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    assert digest == inputs_digest(root, "local", dict(reversed(SETTINGS.items())), TODAY)
