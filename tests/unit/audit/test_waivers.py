"""ops/audit/waivers.py and the CLI: valid, expired, unmatched, too broad and broken waivers;
exit codes and --json.

Independent of what the live repository's audit finds today: each test audits a copy of the
catalog and group_data (tests/unit/conftest.py `RepoCopy`) broken on purpose, with exactly two
blocking findings: floating image tags for freight (on app-2 only) and bus (on app-3 only).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ops.audit import run_audit
from ops.audit.__main__ import main
from ops.catalog import ConfigError

TODAY = dt.date(2025, 11, 26)
FREIGHT = {"rule": "rendered.image-pinned", "match": "rendered.image-pinned:app-2:*:freight:*"}
BUS = {"rule": "rendered.image-pinned", "match": "rendered.image-pinned:app-3:*:bus:*"}
BREAKS = ('placement = {"freight": ["app-2"], "bus": ["app-3"]}\n'
          'image_tags = {"freight": "3", "bus": "stable"}')


@pytest.fixture
def broken(repo_copy):
    """A repo copy whose prod group_data has exactly the two findings FREIGHT and BUS match."""
    repo_copy.append("group_data/prod.py", BREAKS)
    report = run_audit("prod", root=repo_copy.root, repo=False, today=TODAY)
    assert sorted(f.key.split(":")[1] for f in report.blocking) == ["app-2", "app-3"], \
        [f.key for f in report.blocking]
    return repo_copy


def waiver_file(tmp_path: Path, entries: list[dict]) -> Path:
    lines = ["waivers:"]
    for e in entries:
        lines.append(f"  - rule: {e['rule']}")
        lines.append(f"    match: {json.dumps(e['match'])}")
        lines.append(f"    reason: {json.dumps(e.get('reason', 'accepted until the fix lands'))}")
        lines.append(f"    expires: {e.get('expires', '2025-12-31')}")
    path = tmp_path / "audit-waivers.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def audit(repo, tmp_path: Path, entries: list[dict]):
    return run_audit("prod", root=repo.root, waivers=waiver_file(tmp_path, entries), repo=False,
                     today=TODAY)


def test_valid_waivers_clear_the_blocking_findings(broken, tmp_path):
    report = audit(broken, tmp_path, [FREIGHT, BUS])
    assert report.blocking == []
    waived = [f for f in report.findings if f.waived_by]
    assert len(waived) == 2
    assert all("audit-waivers.yml: waivers." in f.waived_by for f in waived)
    assert "until 2025-12-31: accepted until the fix lands" in waived[0].waived_by


def test_expired_waiver_is_a_high_finding_and_waives_nothing(broken, tmp_path):
    report = audit(broken, tmp_path, [{**FREIGHT, "expires": "2025-11-25"}, BUS])
    assert {f.rule for f in report.blocking} == {"waiver.expired", "rendered.image-pinned"}
    assert [f.key.split(":")[1] for f in report.blocking
            if f.rule == "rendered.image-pinned"] == ["app-2"]
    [expired] = [f for f in report.findings if f.rule == "waiver.expired"]
    assert "audit-waivers.yml: waivers.0 (rendered.image-pinned " in expired.where


def test_waiver_is_valid_through_its_expiry_day(broken, tmp_path):
    report = audit(broken, tmp_path, [{**FREIGHT, "expires": TODAY.isoformat()}, BUS])
    assert report.blocking == []


def test_unmatched_waiver_is_low(broken, tmp_path):
    report = audit(broken, tmp_path,
                   [{"rule": "rendered.non-root", "match": "*nothing-like-this*"}])
    [unmatched] = [f for f in report.findings if f.rule == "waiver.unmatched"]
    assert unmatched.severity == "low" and "waivers.0" in unmatched.where


def test_too_broad_waiver_waives_nothing(broken, tmp_path):
    report = audit(broken, tmp_path, [{"rule": "rendered.image-pinned", "match": "*"}])
    assert [f.rule for f in report.findings if f.rule.startswith("waiver.")] == [
        "waiver.too-broad"]
    assert len([f for f in report.blocking if f.rule == "rendered.image-pinned"]) == 2


def test_waiver_for_a_scan_that_did_not_run_is_ignored(broken, tmp_path):
    report = audit(broken, tmp_path, [{"rule": "repo.secret-in-history", "match": "history:*"}])
    assert not [f for f in report.findings if f.rule.startswith("waiver.")]


@pytest.mark.parametrize(("entry", "error"), [
    ({**FREIGHT, "expires": "next week"}, "waivers.0.expires: must be a date YYYY-MM-DD"),
    ({**FREIGHT, "expires": "2025-02-30"}, "waivers.0.expires: '2025-02-30' is not a real date"),
    ({**FREIGHT, "rule": "rendered.nope"}, "waivers.0.rule: unknown rule 'rendered.nope'"),
    ({**FREIGHT, "reason": "ok"}, "waivers.0.reason: must be a reason of at least 10"),
])
def test_broken_waiver_file_names_file_and_key(repo_copy, tmp_path, entry, error):
    with pytest.raises(ConfigError) as exc:
        audit(repo_copy, tmp_path, [entry])
    assert f"audit-waivers.yml: {error}" in str(exc.value)


def test_unknown_key_in_waiver(tmp_path):
    path = tmp_path / "audit-waivers.yml"
    path.write_text("waivers:\n  - rule: rendered.non-root\n    match: x\n"
                    "    reason: r12345678901\n    expires: 2025-12-01\n    owner: me\n")
    with pytest.raises(ConfigError, match=r"audit-waivers.yml: waivers.0: unknown key 'owner'"):
        run_audit("prod", waivers=path, repo=False)


def test_cli_exit_codes_and_json(broken, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ops.audit.__main__.run_audit",
                        lambda *a, **k: run_audit(*a, **{**k, "secret_scan": False,
                                                         "repo": False}))
    root = ["--root", str(broken.root)]
    assert main(["--env", "prod", "--json", *root]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["blocking"] == 2
    keys = {f["key"] for f in data["findings"]}
    assert {k.split(":")[1] for k in keys if k.startswith("rendered.image-pinned:")} == {
        "app-2", "app-3"}
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    path = waiver_file(tmp_path, [{**w, "expires": soon} for w in (FREIGHT, BUS)])
    assert main(["--env", "prod", "--waivers", str(path), *root]) == 0
    assert "0 blocking" in capsys.readouterr().out
    broken_file = tmp_path / "broken.yml"
    broken_file.write_text("waivers: [1]\n")
    assert main(["--env", "prod", "--waivers", str(broken_file), *root]) == 2
    assert "broken.yml: waivers.0: must be a mapping" in capsys.readouterr().err
