"""ops/audit/repository.py against scratch git repositories built in tmp dirs.

Fake secrets are assembled at run time (never written whole in this file), so the repository's
own secret scan does not flag this test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ops.audit import repository

FAKE_AWS_KEY = "AKIA" + "Z3MSJV4WXTREBDQK"
PRIVATE_KEY = ("-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n"
               "-----END RSA PRIVATE KEY-----\n")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    root = tmp_path / "scratch"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "audit@test.invalid")
    git(root, "config", "user.name", "audit test")
    (root / "README.md").write_text("scratch\n")
    return root


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def test_aws_key_deleted_later_is_still_found_in_history(scratch):
    (scratch / "settings.py").write_text(f'REGION = "eu"\nAWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\n')
    leaked = commit(scratch, "add settings")
    (scratch / "settings.py").write_text('REGION = "eu"\n')
    commit(scratch, "remove the key")

    assert not [f for f in repository.check_tree_secrets(scratch, ["settings.py"])
                if f.rule == "repo.secret"]
    found = [f for f in repository.check_history(scratch) if f.rule == "repo.secret-in-history"]
    aws = [f for f in found if "AWS" in f.message]
    assert [f.where for f in aws] == [f"git {leaked[:12]}:settings.py:2"]
    assert FAKE_AWS_KEY not in aws[0].message and aws[0].severity == "high"


def test_aws_key_in_tree_not_in_baseline_is_high(scratch):
    (scratch / "deploy.cfg").write_text(f"key = {FAKE_AWS_KEY}\n")
    files = repository.repo_files(scratch)
    found = repository.check_tree_secrets(scratch, files)
    rules = {(f.rule, f.where) for f in found}
    assert ("repo.baseline-missing", ".secrets.baseline") in rules
    assert any(r == "repo.secret" and w == "deploy.cfg:1" for r, w in rules)


def test_reviewed_baseline_entry_is_accepted_and_unreviewed_is_medium(scratch):
    (scratch / "deploy.cfg").write_text(f"key = {FAKE_AWS_KEY}\n")
    files = repository.repo_files(scratch)
    assert repository.write_baseline(scratch, files) >= 1
    unreviewed = repository.check_tree_secrets(scratch, files)
    assert {f.rule for f in unreviewed} == {"repo.baseline-unreviewed"}
    assert {f.severity for f in unreviewed} == {"medium"}
    data = json.loads((scratch / repository.BASELINE).read_text())
    for entries in data["results"].values():
        for entry in entries:
            entry["is_secret"] = False
    (scratch / repository.BASELINE).write_text(json.dumps(data))
    assert repository.check_tree_secrets(scratch, files) == []
    commit(scratch, "reviewed")
    assert not [f for f in repository.check_history(scratch) if "AWS" in f.message]


def test_private_key(scratch):
    (scratch / "id_rsa").write_text(PRIVATE_KEY)
    found = repository.check_tree_secrets(scratch, repository.repo_files(scratch))
    assert [(f.rule, f.where) for f in found if f.rule == "repo.private-key"] == [
        ("repo.private-key", "id_rsa:1")]


def test_env_files_in_tree_and_history(scratch):
    (scratch / "svc").mkdir()
    (scratch / "svc/.env").write_text("A=1\n")
    (scratch / "svc/.env.example").write_text("A=\n")
    first = commit(scratch, "env")
    (scratch / "svc/.env").unlink()
    (scratch / "config").mkdir()
    (scratch / "config/.env.production").write_text("B=2\n")
    found = repository.check_env_files(scratch, repository.repo_files(scratch))
    assert [f.where for f in found] == ["config/.env.production"]
    history = [f for f in repository.check_history(scratch) if f.rule == "repo.env-file"]
    assert [f.where for f in history] == [f"git {first[:12]}:svc/.env"]


def test_literal_secrets_in_group_data_and_inventories(tmp_path):
    (tmp_path / "group_data").mkdir()
    (tmp_path / "inventories").mkdir()
    (tmp_path / "group_data/prod.py").write_text(
        'env = "prod"\n'
        'vault = {"auth_method": "token", "addr": "https://v"}\n'
        'smtp = {"host": "mail", "password": "hunter2-but-longer"}\n'
        'api_token = "abc"\n'
        'token_ttl = 30\n'
        'ssh_strict_host_key_checking = "yes"\n'
        'ssh_host_key = "AAAAC3NzaC1lZDI1NTE5"\n')
    (tmp_path / "inventories/prod.py").write_text('hosts = [("a", {"ssh_password": "pw"})]\n')
    found = repository.check_data_secrets(tmp_path)
    assert [(f.where, f.message.split(" ")[0]) for f in found] == [
        ("group_data/prod.py:3", "smtp.password"),
        ("group_data/prod.py:4", "api_token"),
        ("group_data/prod.py:7", "ssh_host_key"),
        ("inventories/prod.py:1", "hosts.0.1.ssh_password"),
    ]
    assert {f.severity for f in found} == {"high"}


def test_this_repository_has_no_env_file_and_no_literal_secret_in_data():
    """(The detect-secrets scan of this tree vs its baseline is `python -m ops.audit --ci`.)"""
    from ops.catalog import REPO_ROOT
    assert repository.check_env_files(REPO_ROOT, repository.repo_files(REPO_ROOT)) == []
    assert repository.check_data_secrets(REPO_ROOT) == []


def test_a_blocking_tree_skips_the_slow_scans_and_says_so(scratch, monkeypatch):
    # make test must learn of a secret in the tree in seconds, not after the history scan and
    # pip-audit (minutes): both are skipped, named in the report, and the run still fails
    from ops.audit import __main__ as cli
    from ops.audit import deps

    def never(*_args, **_kwargs):
        raise AssertionError("a slow step ran although the tree already blocks")

    monkeypatch.setattr(repository, "check_history", never)
    monkeypatch.setattr(deps, "audit_dependencies", never)
    (scratch / "deploy.cfg").write_text(f"key = {FAKE_AWS_KEY}\n")
    commit(scratch, "a key")
    waivers = scratch / "waivers.yml"
    waivers.write_text("waivers: []\n")
    report = cli.run_ci(scratch, waivers)
    assert report.blocking
    assert [line.split(":")[0] for line in report.skipped] == ["secrets-history", "pip-audit"]
    assert "skipped: secrets-history: the tree already has a blocking finding" in \
        report.format_table()
    assert json.loads(report.to_json())["skipped"] == report.skipped
