"""Printed at the end of `make demo`: the hosts, a URL answered through Traefik, how to ssh in.

It also checks that URL once, so the demo ends on a fact, not a promise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops.catalog import load_environment  # noqa: E402


def main() -> int:
    status = json.loads(subprocess.run(
        [sys.executable, str(REPO / "testbed/testbed.py"), "status"],
        capture_output=True, text=True, check=True).stdout)
    environment = load_environment("local")
    domain = environment.settings["api_domains"][0]
    app_host = next(h for h in environment.hosts if h.has_role("app"))
    route = environment.services["payments"].routes[0]
    url = f"http://{app_host.address}{route}/health"
    print("\nThe testbed (make testbed-status for JSON):")
    for h in status["hosts"]:
        print(f"  {h['name']:8} {h['address']:14} roles={','.join(h['roles'])}")
    print(f"\nA request through Traefik on {app_host.name}:")
    print(f"  curl -H 'Host: {domain}' {url}")
    req = urllib.request.Request(url, headers={"Host": domain})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            print(f"  -> {r.status} {r.read().decode()[:200]}")
    except OSError as e:
        print(f"  -> FAILED: {e}")
        return 1
    mon = next(h for h in environment.hosts if h.has_role("monitoring"))
    print(f"\nPrometheus: http://{mon.address}:9090/targets   "
          f"Alertmanager: http://{mon.address}:9093")
    print("\nssh into a host:")
    print(f"  ssh -i {status['ssh_key']} -o UserKnownHostsFile={status['ssh_known_hosts']} "
          f"{status['ssh_user']}@{app_host.address}")
    print("\nTear it all down: make testbed-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
