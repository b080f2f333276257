"""How a deploy's cost grows with the fleet (`python -m bench.fleet [--hosts 3,6,12]`, or
`make bench FLEET=1`), written to bench/results/fleet-<time>.json.

For each host count the testbed is taken down and brought up with that many hosts (hosts past
the third run payments and chat only: group_data/local.py `testbed_fleet`), Vault bootstrapped
and the repo's release deployed (canary skipped). Then, timed:

- `noop_deploy`: the same deploy again, nothing to change (wall time, median of 3);
- `dry_run`: the same deploy with `--dry`, the stages up to the plan (wall time, median of 3);
- `one_service_rollout_p1` / `_p3`: payments to a new tag on every host, canary skipped, at
  parallel_hosts 1 then 3 (the rollout's own time: `rolled N host(s) in X s`).

The issue's goals: the no-op and the dry run, whose hosts work in parallel, stay within 1.5x
from the smallest count to the largest; the rollout grows like its rounds of hosts (one host
alone, then parallel_hosts at once: `rollout_rounds`). At the end the testbed is back at 3 hosts
with Vault bootstrapped, what the next user expects, even when a step failed. It restarts the
testbed several times: long, and never while someone else uses it. A benchmark: nothing asserts.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.pitr import progress
from bench.release import release_copy
from bench.speed import deploy, rolled_seconds
from ops.catalog import load_environment

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv/bin/python")
DEFAULT_COUNTS = (3, 6, 12)
DEFAULT_HOSTS = 3  # testbed.py's default: what the bench leaves behind
RUNS = 3  # no-op and dry-run samples per count (seconds each: the median is kept)
SERVICE = "payments"
# parallel_hosts -> the tag payments rolls to; the repo's release runs v1 (group_data/local.py)
ROLLOUTS = {1: "v2", 3: "v3"}
MEASURES = ("noop_deploy", "dry_run", "one_service_rollout_p1", "one_service_rollout_p3")
FLAT_GOAL = 1.5  # no-op and dry run: largest count / smallest, at most


def parse_counts(text: str) -> list[int]:
    """`--hosts 3,6,12` -> [3, 6, 12]: distinct, ascending, each 3..50 (group_data/local.py
    lists three hosts; testbed.py starts at most 50)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: host counts like 3,6,12") from None
    if not counts or not all(3 <= n <= 50 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: each host count must be 3..50")
    return counts


def rollout_rounds(hosts: int, parallel_hosts: int) -> int:
    """Rounds of a rollout changing every host: the first host alone (the canary host), then
    up to parallel_hosts at once (ops/rollout/pool.py)."""
    return 1 + math.ceil((hosts - 1) / parallel_hosts)


def growth(seconds: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each measure at the largest host count over the same at the smallest."""
    counts = sorted(seconds, key=int)
    low, high = seconds[counts[0]], seconds[counts[-1]]
    return {m: round(high[m] / low[m], 2) for m in MEASURES if low.get(m) and m in high}


def expected_rollout_growth(counts: Sequence[int]) -> dict[str, float]:
    """What "linear in hosts / parallel_hosts" predicts for the rollouts' growth."""
    low, high = min(counts), max(counts)
    return {f"one_service_rollout_p{p}": round(rollout_rounds(high, p) / rollout_rounds(low, p), 2)
            for p in ROLLOUTS}


def summarize(seconds: Mapping[str, Mapping[str, float]]) -> dict:
    """The JSON of the run: seconds per count, growth, the goals as booleans."""
    ratios = growth(seconds)
    counts = sorted(int(n) for n in seconds)
    return {
        "fleet_seconds": {str(n): dict(seconds[str(n)]) for n in counts},
        "fleet_growth_3_to_max": ratios,
        "fleet_growth_hosts": [counts[0], counts[-1]],
        "fleet_expected_rollout_growth": expected_rollout_growth(counts),
        "noop_flat_within_1_5x": ratios.get("noop_deploy", math.inf) <= FLAT_GOAL,
        "dry_run_flat_within_1_5x": ratios.get("dry_run", math.inf) <= FLAT_GOAL,
    }


def step(argv: list[str], what: str) -> None:
    """Run one testbed or Vault command from the repo; stop the bench with its output's tail."""
    from bench.run import must, timed  # bench.run imports this module: import at call time

    seconds, res = timed(argv, REPO)
    must(res, what)
    progress(f"fleet: {what} done in {seconds:.0f}s")


def fresh_testbed(hosts: int) -> None:
    """The testbed down, then up with `hosts` hosts, Vault bootstrapped (nothing deployed)."""
    testbed = [PY, str(REPO / "testbed/testbed.py")]
    progress(f"fleet: testbed down, then up with {hosts} hosts (minutes)")
    step([*testbed, "down"], "testbed down")
    step([*testbed, "up", "--hosts", str(hosts)], f"testbed up --hosts {hosts}")
    step([PY, "-m", "ops.secrets.bootstrap", "local"], "Vault bootstrap (local)")


def timed_deploy(tree: Path, *extra: str) -> tuple[float, str]:
    t0 = time.monotonic()
    text = deploy(tree, *extra)
    return time.monotonic() - t0, text


def measure_count(hosts: int, trees: Mapping[int, Path]) -> dict[str, float]:
    """Every measure on a fresh testbed of `hosts` hosts (nothing deployed yet)."""
    seen = len(load_environment("local").hosts)
    if seen != hosts:
        sys.exit(f"bench: the testbed runs {hosts} hosts but the local environment has {seen} "
                 "(group_data/local.py testbed_fleet, $SA_TESTBED_STATE)")
    progress(f"fleet: {hosts} hosts: deploying the repo's release")
    seconds, _ = timed_deploy(REPO)
    progress(f"fleet: {hosts} hosts: deployed in {seconds:.0f}s")
    out: dict[str, float] = {}
    for key, extra in (("noop_deploy", ()), ("dry_run", ("--dry",))):
        samples = []
        for i in range(RUNS):
            seconds, _ = timed_deploy(REPO, *extra)
            samples.append(seconds)
            progress(f"fleet: {hosts} hosts: {key} {i + 1}/{RUNS}: {seconds:.1f}s")
        out[key] = round(statistics.median(samples), 2)
    for width, tree in trees.items():
        key = f"one_service_rollout_p{width}"
        progress(f"fleet: {hosts} hosts: {SERVICE} -> {ROLLOUTS[width]}, parallel_hosts {width}")
        _, text = timed_deploy(tree, "--data", f"parallel_hosts={width}")
        out[key] = rolled_seconds(text)
        progress(f"fleet: {hosts} hosts: {key}: rolled in {out[key]}s")
    return out


def measure(counts: Sequence[int] = DEFAULT_COUNTS) -> dict:
    """Every count in turn; the testbed back at DEFAULT_HOSTS at the end, also after a failure
    or Ctrl-C (a second Ctrl-C leaves it as it is)."""
    seconds: dict[str, dict[str, float]] = {}
    testbed_hosts = None  # hosts of the testbed this run last brought up
    try:
        with tempfile.TemporaryDirectory(prefix="superapp-bench-fleet-") as tmp:
            trees = {width: release_copy(Path(tmp) / tag,
                                         {"image_tags": f'{{"{SERVICE}": "{tag}"}}'})
                     for width, tag in ROLLOUTS.items()}
            for hosts in counts:
                testbed_hosts = None
                fresh_testbed(hosts)
                testbed_hosts = hosts
                seconds[str(hosts)] = measure_count(hosts, trees)
    finally:
        if testbed_hosts != DEFAULT_HOSTS:
            progress(f"fleet: putting the testbed back to {DEFAULT_HOSTS} hosts")
            fresh_testbed(DEFAULT_HOSTS)
    return summarize(seconds)


def rows(r: dict) -> list[tuple[str, str]]:
    counts = list(r["fleet_seconds"])
    by = r["fleet_seconds"]
    ratios, expected = r["fleet_growth_3_to_max"], r["fleet_expected_rollout_growth"]
    low, high = r["fleet_growth_hosts"]
    labels = {"noop_deploy": "no-op deploy", "dry_run": "dry run (--dry)",
              "one_service_rollout_p1": f"{SERVICE} rollout, parallel_hosts 1",
              "one_service_rollout_p3": f"{SERVICE} rollout, parallel_hosts 3"}
    goals = {"noop_deploy": f"goal <= {FLAT_GOAL}x: {r['noop_flat_within_1_5x']}",
             "dry_run": f"goal <= {FLAT_GOAL}x: {r['dry_run_flat_within_1_5x']}",
             **{m: f"hosts / parallel_hosts predicts {x}x" for m, x in expected.items()}}
    return [(f"fleet: seconds at {' / '.join(counts)} hosts", f"growth {low} -> {high} hosts"),
            *((labels[m], " / ".join(f"{by[n][m]}s" for n in counts)
               + f" = {ratios.get(m, '?')}x ({goals[m]})") for m in MEASURES)]


def main() -> int:
    from bench.run import standalone  # bench.run imports this module: import at call time

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=parse_counts, default=list(DEFAULT_COUNTS),
                    help="host counts to measure, e.g. 3,6 (default 3,6,12)")
    counts = ap.parse_args().hosts
    return standalone("fleet", lambda _status: measure(counts), rows)


if __name__ == "__main__":
    sys.exit(main())
