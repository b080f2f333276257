"""Dependency audit of the pinned requirements with pip-audit (CI, `python -m ops.audit --ci`).

pip-audit asks PyPI for each pinned version (`/pypi/<name>/<version>/json`). From the CI
machines that per-version endpoint answers 404, so plain pip-audit "skips" every package and
still prints "No known vulnerabilities found" with exit 0: an audit that audited nothing. So:
- every vulnerability pip-audit reports: `deps.vulnerable` (high);
- every skipped package: ask the per-project endpoint (`/pypi/<name>/json`, which does answer):
  when its latest version IS our pin, its `vulnerabilities` list applies to our pin (high if
  any); otherwise the pin cannot be audited from here: `deps.unaudited` (medium, listed);
- pip-audit failing to run: `deps.audit-failed` (high).
Never installs into our venv (pip-audit resolves in its own temporary environment).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ops.audit.findings import Finding

REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
PYPI_PROJECT = "https://pypi.org/pypi/{name}/json"


def pip_audit_command(root: Path) -> list[str]:
    args = [str(Path(sys.executable).parent / "pip-audit"), "--format", "json",
            "--progress-spinner", "off"]
    for req in REQUIREMENTS:
        args += ["-r", str(root / req)]
    return args


def fetch_project(name: str) -> dict | None:
    import requests

    try:
        response = requests.get(PYPI_PROJECT.format(name=name), timeout=30)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def audit_dependencies(root: Path, run: Callable[[list[str]], subprocess.CompletedProcess]
                       | None = None,
                       project: Callable[[str], dict | None] = fetch_project) -> list[Finding]:
    run = run or (lambda args: subprocess.run(args, capture_output=True, text=True, check=False,
                                              cwd=root))
    where = " + ".join(REQUIREMENTS)
    result = run(pip_audit_command(root))
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        tail = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return [Finding("deps.audit-failed", "high", where,
                        f"pip-audit did not produce a report (exit {result.returncode}): "
                        f"{tail[0][:200]}", "check network access to pypi.org and rerun",
                        key="pip-audit")]
    out = []
    unaudited = []
    deps = report.get("dependencies", [])
    skipped = [d["name"] for d in deps if "skip_reason" in d]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one PyPI lookup per skipped package
        projects = dict(zip(skipped, pool.map(project, skipped), strict=True))
    for dep in deps:
        name = dep["name"]
        for vuln in dep.get("vulns", []):
            out.append(vulnerable(name, dep.get("version", "?"), vuln.get("id", "?"),
                                  vuln.get("fix_versions", []), where))
        if "skip_reason" not in dep:
            continue
        match = re.search(r"\(([^()]+)\)\s*$", dep["skip_reason"])
        version = match.group(1) if match else "?"
        data = projects[name]
        latest = (data or {}).get("info", {}).get("version")
        if data is None or latest != version:
            unaudited.append(f"{name}=={version}")
            continue
        for vuln in data.get("vulnerabilities") or []:
            if vuln.get("withdrawn"):
                continue
            out.append(vulnerable(name, version, vuln.get("id", "?"),
                                  vuln.get("fixed_in", []), where))
    if unaudited:
        out.append(Finding("deps.unaudited", "medium", where,
                           f"{len(unaudited)} pinned package(s) could not be audited (PyPI has "
                           f"no vulnerability data for these versions here): "
                           f"{', '.join(sorted(unaudited))}",
                           "pin the latest release, or audit these by hand",
                           key="deps.unaudited"))
    return out


def vulnerable(name: str, version: str, vuln_id: str, fixes: list[str], where: str) -> Finding:
    fix = f"upgrade {name} to {', '.join(fixes)}" if fixes else f"no fix released: replace " \
                                                                f"{name} or waive with a reason"
    return Finding("deps.vulnerable", "high", where, f"{name}=={version} has {vuln_id}", fix,
                   key=f"{name}:{vuln_id}")
