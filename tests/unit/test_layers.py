"""The pure layer stays pure: rendering, plans, command builders, parsers and reports import
neither pyinfra nor anything that talks to a host, so they can be tested and reused alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = (
    "ops.catalog", "ops.render", "ops.host.state", "ops.host.reads", "ops.host.commands",
    "ops.rollout.plan", "ops.rollout.ledger", "ops.preview.report", "ops.preview.masking",
    "ops.fleet.status", "ops.fleet.drift", "ops.backup.manifest", "ops.backup.commands",
    "ops.secrets.rotation", "ops.console", "ops.schema.plan", "ops.grafana_schema",
    "ops.firewall.policy", "ops.firewall.ruleset", "ops.firewall.commands", "ops.secrets.approle",
    "ops.canary.policy", "ops.canary.prometheus", "ops.dbha.model", "ops.dbha.render",
    "ops.dbha.status", "ops.dbha.commands", "ops.dbha.monitoring",
)


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_pyinfra(module: str) -> None:
    probe = (f"import sys, {module}; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyinfra', 'gevent')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]", f"{module} pulls in {out}"


def test_the_probe_sees_an_effect_module_import_pyinfra() -> None:
    probe = "import sys, ops.host.facts; print('pyinfra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "True"
