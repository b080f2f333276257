"""Alertmanager routing, checked by amtool itself: critical reaches ops-admin, email and slack;
warning and info reach ops-admin and slack, never email."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ops.render import PlaceholderSecrets
from ops.render.alertmanager import render_config

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


@pytest.fixture(scope="module")
def config_file(environments, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    path.write_text(render_config(environments["prod"], PlaceholderSecrets()).content)
    return path


def receivers(config_file: Path, *labels: str) -> list[str]:
    result = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={config_file}", *labels],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.strip().split(","))


def test_config_is_valid(config_file):
    result = subprocess.run([AMTOOL, "check-config", str(config_file)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "expected"), [
    (["severity=critical", "alertname=ServiceDown", "service=payments"],
     ["email", "ops-admin", "slack"]),
    (["severity=critical", "alertname=BackupStale", "database=taxi"],
     ["email", "ops-admin", "slack"]),
    (["severity=warning", "alertname=HighLatencyP99", "service=taxi"], ["ops-admin", "slack"]),
    (["severity=info", "alertname=Deployed"], ["ops-admin", "slack"]),
    (["alertname=NoSeverity"], ["ops-admin"]),
])
def test_routes(config_file, labels, expected):
    assert receivers(config_file, *labels) == expected


def test_warning_never_reaches_email(config_file):
    for alert in ("HighLatencyP99", "PaymentsWebhookRetries", "HighErrorRate"):
        assert "email" not in receivers(config_file, "severity=warning", f"alertname={alert}")


def test_receiver_settings_are_secrets_not_repo_values(environments):
    rendered = render_config(environments["prod"], PlaceholderSecrets())
    assert rendered.secret and rendered.mode == 0o600
    assert "superapp/prod/alertmanager" in rendered.content
    for key in ("SLACK_WEBHOOK_URL", "SMTP_PASS", "SMTP_USER", "SLACK_CHANNEL"):
        assert key in rendered.content
