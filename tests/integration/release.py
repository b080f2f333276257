"""Run the real pyinfra entry points against the testbed, from a copy of this repo.

A "release" in these tests is what it is in life: the repo with some group_data changed (an
image tag, a service's secret...). The copy keeps the working tree untouched.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from bench.release import release_copy  # noqa: F401 - re-exported for the tests

from .conftest import REPO


def pyinfra(cwd: Path, *args: str, timeout: float = 900,
            env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv/bin/pyinfra"), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def deploy(cwd: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return pyinfra(cwd, "-y", "inventories/local.py", "deploy.py", *extra, timeout=timeout)


def start_deploy(cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py", "deploy.py", *extra],
        cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 300) -> list[str]:
    """Read the process's output until a line matches; return the lines read so far."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def interrupt(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    return out


def output(res: subprocess.CompletedProcess) -> str:
    return res.stdout + res.stderr
