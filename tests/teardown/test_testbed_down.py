"""`make testbed-down` leaves no namespace, bridge, mount or process of the testbed.

Runs last in `make test` (its own phase): it takes the testbed down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE = Path("/var/lib/superapp-testbed")

pytestmark = pytest.mark.integration


def run_testbed(*args: str) -> subprocess.CompletedProcess:
    argv = [str(REPO / ".venv/bin/python"), str(REPO / "testbed/testbed.py"), *args]
    return subprocess.run(argv,
                          capture_output=True, text=True, timeout=300)


def test_down_removes_everything_it_made() -> None:
    state = json.loads((STATE / "state.json").read_text())
    recorded = [p["pid"] for p in state["procs"].values()]
    netns_pids = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in listing.split():
        if ns.startswith("sa-host"):
            netns_pids += subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                         text=True).stdout.split()
    assert recorded and netns_pids, "the testbed should be up before this test"
    # A crashed builder: dockerd undoes its data-root bind mount only on a clean stop, so a
    # SIGKILL leaves the mount behind, as a machine restart does. `down` must still remove it.
    assert "superapp-testbed/builder-docker " in Path("/proc/self/mountinfo").read_text()
    os.kill(state["procs"]["builder"]["pid"], signal.SIGKILL)

    res = run_testbed("down")
    assert res.returncode == 0, res.stderr

    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "sa-host" not in netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "sa-br0" not in links and "sa-veth" not in links
    alive = [p for p in recorded + [int(x) for x in netns_pids] if os.path.exists(f"/proc/{p}")]
    assert not alive, f"processes left: {alive}"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "superapp-testbed" not in mounts
    assert not any(Path("/sys/fs/cgroup/pids").glob("sa-*"))
    assert not STATE.exists()
    assert json.loads(run_testbed("status").stdout)["running"] is False
