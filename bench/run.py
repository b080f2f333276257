"""`make bench`: what the rollout costs and whether it drops requests, on the testbed.

Measures, in one run, with a steady load through Traefik on every app host:
  - failed/total requests while rolling a new version of every service across all hosts;
  - the same for a plain in-place `docker compose up -d` (what most tools do), as a baseline;
  - a no-op redeploy's wall time over a bare pyinfra connect + one fact (the no-op ratio);
  - wall times of the full rollout and of a rollback;
  - rendering the whole prod bundle, apart from its validators, and the audit of it that
    every deploy's preflight runs;
  - point-in-time recovery: archive RPO under writes, full/diff backup time and size, the
    time to restore the cluster (bench/pitr.py);
  - central logs: delivery latency p50/p99 and the burst throughput (bench/logs.py);
  - the canary (bench/canary.py), and where a rollout's time goes: one service, one host, the
    fleet at parallel_hosts 1 and 2 (bench/speed.py);
  - Postgres failover (Patroni): RTO and RPO with synchronous and asynchronous replication,
    and the throughput synchronous replication costs (bench/dbha.py);
  - only with `--fleet` (`make bench FLEET=1`), last: how the no-op, the dry run and a
    one-service rollout grow at 3, 6 and 12 hosts (bench/fleet.py: restarts the testbed at each
    count, long; it ends at 3 hosts).
Prints a table and writes JSON under bench/results/. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import canary, dbha, fleet, pitr, speed
from bench import logs as central_logs
from bench import tls as edge_tls
from bench.hosts import ssh_argv
from bench.load import Load, LoadReport, Target, placed_targets
from bench.release import release_copy
from ops.audit import run_audit
from ops.catalog import load_environment
from ops.render import PlaceholderSecrets, render_environment
from ops.render.files import write_tree
from ops.validate import validate_tree

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PYINFRA = str(REPO / ".venv/bin/pyinfra")
RATE_PER_HOST = 100  # requests/s through each app host's Traefik


def progress(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def testbed_status() -> dict:
    out = subprocess.run([sys.executable, str(REPO / "testbed/testbed.py"), "status"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def release(tmp: Path, tag: str) -> Path:
    """A copy of the repo whose local env runs every service at `tag`."""
    return release_copy(tmp / tag, {"default_image_tag": f'"{tag}"', "image_tags": "{}"})


def timed(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)
    return time.monotonic() - t0, res


def must(res: subprocess.CompletedProcess, what: str) -> None:
    if res.returncode != 0:
        sys.exit(f"bench: {what} failed:\n{(res.stdout + res.stderr)[-4000:]}")


def targets(status: dict, environment) -> list[Target]:
    return placed_targets([(h["name"], h["address"]) for h in status["hosts"]
                           if "app" in h["roles"]], environment)


def under_load(status: dict, environment, action) -> tuple[LoadReport, float, object]:
    with Load(targets(status, environment), rate=RATE_PER_HOST, workers=12) as load:
        time.sleep(3)
        t0 = time.monotonic()
        result = action()
        seconds = time.monotonic() - t0
        time.sleep(3)
    return load.report, seconds, result


def ssh(status: dict, host: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ssh_argv(status, host, command), capture_output=True, text=True, timeout=900)


def baseline_in_place(status: dict, environment, tag: str) -> None:
    """What most tools do: change the image in the compose file and `docker compose up -d`."""
    for host in status["hosts"]:
        if "app" not in host["roles"]:
            continue
        script = (
            "for f in /opt/superapp/compose/*.yml; do case $f in */edge.yml|*/data.yml|"
            "*/monitoring.yml|*/backup.yml) continue;; esac; "
            # the deploy pins `standin:<tag>@sha256:...`: the baseline runs the plain tag
            f"sed -i 's#superapp/standin:[A-Za-z0-9._-]*\\(@sha256:[0-9a-f]*\\)\\?\"#"
            f"superapp/standin:{tag}\"#' \"$f\"; "
            "docker compose -f \"$f\" up -d >/dev/null 2>&1; done")
        ssh(status, host, script)


def render_timing() -> dict:
    prod = load_environment("prod")
    t0 = time.perf_counter()
    rendered = render_environment(prod, PlaceholderSecrets())
    render_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp), rendered)
        t0 = time.perf_counter()
        validate_tree(Path(tmp), prod)
        validate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_audit("prod", repo=False)  # the part of the audit every deploy's preflight runs
    audit_s = time.perf_counter() - t0
    return {"render_prod_seconds": round(render_s, 3),
            "validate_prod_seconds": round(validate_s, 3),
            "audit_rendered_prod_seconds": round(audit_s, 3),
            "render_prod_files": sum(len(f) for f in rendered.values())}


def standalone(kind: str, measure, rows) -> int:
    """`python -m bench.<kind>`: one part of the bench alone, its JSON in bench/results/."""
    results = measure(testbed_status())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    for label, value in rows(results):
        print(f"{label}: {value}")
    print(f"JSON: {path}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fleet", action="store_true",
                    help="also bench.fleet: the testbed restarted at 3, 6 and 12 hosts (long)")
    with_fleet = ap.parse_args().fleet
    status = testbed_status()
    if not status["running"]:
        sys.exit("bench: the testbed is not running (make testbed-up)")
    environment = load_environment("local")
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "rate_per_app_host": RATE_PER_HOST}
    with tempfile.TemporaryDirectory(prefix="superapp-bench-") as tmp:
        v1, v2 = release(Path(tmp), "v1"), release(Path(tmp), "v2")
        deploy = [PYINFRA, "-y", "inventories/local.py", "deploy.py"]

        progress("starting point: every service on v1")
        _, res = timed(deploy, v1)
        must(res, "deploying v1")

        progress("no-op ratio (3 runs each)")
        bare = [timed([PYINFRA, "-y", "inventories/local.py", "fact", "server.Hostname"],
                      REPO)[0] for _ in range(3)]
        noop = []
        for _ in range(3):
            seconds, res = timed(deploy, v1)
            must(res, "no-op deploy")
            noop.append(seconds)
        results.update(bare_connect_seconds=round(statistics.median(bare), 2),
                       noop_seconds=round(statistics.median(noop), 2),
                       noop_ratio=round(statistics.median(noop) / statistics.median(bare), 2))

        progress(f"rolling v1 -> v2 on every host under {RATE_PER_HOST} req/s per app host")
        report, seconds, res = under_load(status, environment, lambda: timed(deploy, v2)[1])
        must(res, "rollout to v2")
        results.update(rollout_seconds=round(seconds, 1), rollout_total_requests=report.total,
                       rollout_failed_requests=len(report.failed),
                       rollout_failures=dict(report.failures_by_kind()))
        rollout_timeline = report.per_second()

        progress("rollback to v1 under load")
        report, seconds, res = under_load(status, environment, lambda: timed(
            [PYINFRA, "-y", "inventories/local.py", "tasks/rollback.py"], v1)[1])
        must(res, "rollback")
        results.update(rollback_seconds=round(seconds, 1),
                       rollback_total_requests=report.total,
                       rollback_failed_requests=len(report.failed))

        progress("baseline: in-place `docker compose up -d` of v2 under the same load")
        report, seconds, _ = under_load(status, environment,
                                        lambda: baseline_in_place(status, environment, "v2"))
        results.update(baseline_seconds=round(seconds, 1),
                       baseline_total_requests=report.total,
                       baseline_failed_requests=len(report.failed),
                       baseline_failures=dict(report.failures_by_kind()))

        progress("putting the fleet back on the recorded release")
        _, res = timed(deploy, v1)
        must(res, "redeploy after the baseline")

    results.update(pitr.measure(status))
    results.update(central_logs.measure(status))
    results.update(edge_tls.measure(status))
    results.update(canary.measure(status))
    results.update(speed.measure(status))
    results.update(dbha.measure(status))
    if with_fleet:  # last: it restarts the testbed (back at 3 hosts when it ends)
        results.update(fleet.measure())

    progress("rendering the prod bundle")
    results.update(render_timing())
    results["rollout_timeline"] = rollout_timeline

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        ("rolling update, failed / total requests",
         f"{results['rollout_failed_requests']} / {results['rollout_total_requests']}"),
        ("in-place compose up -d, failed / total",
         f"{results['baseline_failed_requests']} / {results['baseline_total_requests']}"),
        ("rollback, failed / total requests",
         f"{results['rollback_failed_requests']} / {results['rollback_total_requests']}"),
        ("no-op deploy / bare connect+fact", f"{results['noop_seconds']}s / "
         f"{results['bare_connect_seconds']}s = {results['noop_ratio']}x (goal <= 2)"),
        ("full rollout (17 services x 3 hosts)", f"{results['rollout_seconds']}s"),
        ("rollback", f"{results['rollback_seconds']}s"),
        ("render prod bundle (goal < 3 s)", f"{results['render_prod_seconds']}s "
         f"({results['render_prod_files']} files)"),
        ("validate prod bundle (real tools)", f"{results['validate_prod_seconds']}s"),
        ("audit of the rendered prod bundle (the preflight's part; goal < 1 s)",
         f"{results['audit_rendered_prod_seconds']}s"),
        *pitr.rows(results),
        *central_logs.rows(results),
        *edge_tls.rows(results),
        *canary.rows(results),
        *speed.rows(results),
        *dbha.rows(results),
        *(fleet.rows(results) if with_fleet else []),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    print(f"\nJSON: {RESULTS / f'bench-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
