"""The metric-gated canary on the testbed (`make bench`, or `python -m bench.canary` alone,
which writes bench/results/canary-<time>.json).

One service (payments) on every app host, under load through every app host's Traefik (the
canary host, host1, the heaviest, so its smallest step still has enough requests to judge):

- a good release through the default steps of prod (5, 25, 50, then the switch): failed
  requests (goal 0) and seconds per step;
- a release that answers 5% of its requests with 500 (the testbed's `flaky`): where it was
  stopped, the failed requests (the new slot's share only), and the abort time, from the failed
  check to Traefik serving only the old slot again (the undo's own measure, printed by the
  rollout);
- the fleet back on the repo's release.

A benchmark, not a test: nothing asserts beyond "the run did what it was asked".
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load import Load, LoadReport, Target
from bench.pitr import progress, ssh
from bench.release import release_copy
from ops.catalog import load_environment

SERVICE = "payments"
STEPS = "5,25,50,100"  # prod's default steps
RATES = {"host1": 40, "host2": 10, "host3": 10}  # requests/s through each host's Traefik


def run_loaded(status: dict, argv: list[str], cwd: Path):
    environment = load_environment("local")
    path = f"{environment.services[SERVICE].routes[0]}/api/ping"
    domain = environment.settings["api_domains"][0]
    loads = {h["name"]: Load([Target(h["address"], domain, (path,))],
                             rate=RATES.get(h["name"], 10), workers=8)
             for h in status["hosts"] if "app" in h["roles"]}
    for load in loads.values():
        load.start()
    time.sleep(3)
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - t0
    time.sleep(3)
    reports: dict[str, LoadReport] = {name: load.stop() for name, load in loads.items()}
    return res, seconds, reports


def current_tag(status: dict) -> str:
    """payments' tag on host1 now, from its record."""
    host = next(h for h in status["hosts"] if h["name"] == "host1")
    out = ssh(status, host, f"cat /var/lib/superapp/services/{SERVICE}.json", timeout=60)
    return json.loads(out)["image"].rsplit(":", 1)[-1]


def measure(status: dict) -> dict:
    repo = Path(__file__).resolve().parent.parent
    pyinfra = [str(repo / ".venv/bin/pyinfra"), "-y", "inventories/local.py", "deploy.py"]
    good = "v3" if current_tag(status) == "v2" else "v2"
    out: dict = {"canary_service": SERVICE, "canary_steps": STEPS,
                 "canary_rates": RATES, "canary_good_tag": good}
    with tempfile.TemporaryDirectory(prefix="superapp-bench-canary-") as tmp:
        trees = {tag: release_copy(Path(tmp) / tag, {"image_tags": f'{{"{SERVICE}": "{tag}"}}'})
                 for tag in (good, "flaky")}
        progress(f"canary: {SERVICE} -> {good} through steps {STEPS} under load")
        res, seconds, reports = run_loaded(status, [*pyinfra, "--data", f"canary_steps={STEPS}"],
                                           trees[good])
        text = res.stdout + res.stderr
        if res.returncode != 0:
            sys.exit(f"bench: the good canary failed:\n{text[-4000:]}")
        out.update(
            canary_rollout_seconds=round(seconds, 1),
            canary_total_requests=sum(r.total for r in reports.values()),
            canary_failed_requests=sum(len(r.failed) for r in reports.values()),
            canary_step_seconds={m.group(1): int(m.group(2)) for m in re.finditer(
                r"canary at (\d+)%: passed in (\d+)s", text)})

        progress(f"canary: {SERVICE} -> flaky (5% of 500s) under load")
        res, seconds, reports = run_loaded(status, [*pyinfra, "--data", f"canary_steps={STEPS}"],
                                           trees["flaky"])
        text = res.stdout + res.stderr
        stopped = re.search(r"the canary failed: .* at (\d+)%", text)
        back = re.search(r"traffic is back on the previous containers \((\d+\.\d)s after", text)
        if res.returncode == 0 or not stopped or not back:
            sys.exit(f"bench: the flaky release was not stopped by the canary:\n{text[-4000:]}")
        host1 = reports["host1"]
        out.update(
            canary_abort_step_percent=int(stopped.group(1)),
            canary_abort_seconds=float(back.group(1)),
            canary_abort_run_seconds=round(seconds, 1),
            canary_abort_host1_requests=host1.total,
            canary_abort_failed_requests=sum(len(r.failed) for r in reports.values()),
            canary_abort_failures=dict(host1.failures_by_kind()))

    progress("canary: the fleet back on the repo's release (--data canary=skip)")
    res = subprocess.run([*pyinfra, "--data", "canary=skip"], cwd=repo, capture_output=True,
                         text=True, timeout=1800)
    if res.returncode != 0:
        sys.exit(f"bench: putting the fleet back failed:\n{(res.stdout + res.stderr)[-4000:]}")
    return out


def rows(r: dict) -> list[tuple[str, str]]:
    steps = ", ".join(f"{k}%: {v}s" for k, v in r["canary_step_seconds"].items())
    return [
        (f"canary {r['canary_steps']}, failed / total requests",
         f"{r['canary_failed_requests']} / {r['canary_total_requests']} (goal 0)"),
        ("canary, seconds per step / whole run", f"{steps} / {r['canary_rollout_seconds']}s"),
        ("canary abort (flaky): stopped at / back to 100% old",
         f"{r['canary_abort_step_percent']}% / {r['canary_abort_seconds']}s after the failed "
         "check"),
        ("canary abort: failed requests (the new slot's share)",
         f"{r['canary_abort_failed_requests']} of {r['canary_abort_host1_requests']} on host1"),
    ]


if __name__ == "__main__":
    from bench.run import standalone
    sys.exit(standalone("canary", measure, rows))
