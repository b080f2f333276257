"""Where a rollout's time goes, and what hosts at once buy (`make bench`, or
`python -m bench.speed` alone, which writes bench/results/speed-<time>.json).

Under a steady load on every service through every app host's Traefik, canary skipped, each
run swapping every service it names:

- `single_swap_seconds`: one service (payments) on one host (`--limit host1`);
- `host_swap_seconds`: all 17 services on that host (each with its `*_timeline`: when the
  host reached each step of the swap, from the deploy's timeline table);
- `rollout_seconds_by_parallel_hosts`: every service on every host, at `parallel_hosts` 1 and
  2 (the rollout's own time, printed by the deploy: `rolled 3 host(s) in N s`).

Each host's swap time is the rollout's summary (`time`); the ratios are the issue's goals:
host / single <= 2, rollout at 1 <= 1.1 x hosts x host, rollout at 2 <= 0.6 x rollout at 1.

Where those goals meet this machine (bench/cpu.py): how busy its CPUs were idle, under the
load alone, and during each deploy's rollout; the core-seconds each rollout cost beyond the
load's; and from them the floors `host_swap_cpu_floor_seconds` and
`rollout_parallel2_cpu_floor_seconds`: the shortest that rollout could be here if all its work
ran at once on every core the load leaves free. A floor above its goal (2 x
`single_swap_seconds`; 0.6 x the rollout at parallel_hosts 1) means no ordering of the steps
reaches the goal on this machine: it needs more CPU, not more parallelism.
The two full rollouts are drawn to bench/results/rollout.png (bench/plot.py). The fleet ends on
the repo's release. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import cpu
from bench.load import Load, LoadReport, placed_targets
from bench.pitr import progress
from bench.plot import RolloutPicture, draw, parse_began, parse_timeline
from bench.release import release_copy
from ops.catalog import load_environment

PICTURE = Path(__file__).resolve().parent / "results" / "rollout.png"
RATE_PER_HOST = 30  # requests/s through each app host's Traefik, spread over every service
REPO = Path(__file__).resolve().parent.parent
DEPLOY = [str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py", "deploy.py",
          "--data", "canary=skip"]


def host_seconds(text: str) -> dict[str, float]:
    """host -> its swap time, from the rollout's summary table
    (`host1  ...  changed  12.3s  +0.0s`)."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^(\S+)\s+.*\s(?:changed|unchanged)\s+(\d+\.\d)s\s+\+", text, re.M)}


def rolled_seconds(text: str) -> float:
    m = re.search(r"--> rolled \d+ host\(s\) in (\d+\.\d)s", text)
    if not m:
        sys.exit(f"bench: no rollout time in the deploy's output:\n{text[-3000:]}")
    return float(m.group(1))


def deploy(tree: Path, *extra: str, meter: cpu.Meter | None = None) -> str:
    """Run one deploy; `meter` (bench/cpu.py) measures the machine's CPU use during it."""
    with meter or contextlib.nullcontext():
        res = subprocess.run([*DEPLOY, *extra], cwd=tree, capture_output=True, text=True,
                             timeout=1800)
    text = res.stdout + res.stderr
    if res.returncode != 0:
        sys.exit(f"bench: deploy {' '.join(extra)} from {tree.name} failed:\n{text[-4000:]}")
    return text


def picture(label: str, text: str, wall: float, report: LoadReport,
            t0: float) -> RolloutPicture:
    """One rollout for the plot; the rollout began about `rolled` seconds before the deploy
    printed its summary (the end of the command, within a second)."""
    began, timeline = parse_began(text), parse_timeline(text)
    window = LoadReport([r for r in report.results if t0 <= r.at <= t0 + wall])
    shift = int(min((r.at for r in window.results), default=t0) - t0)
    return RolloutPicture(label, max(0.0, wall - rolled_seconds(text) - 1),
                          {h: {"began": began.get(h, 0.0), "timeline": timeline[h]}
                           for h in timeline},
                          [(s + shift, n, b) for s, n, b in window.per_second()])


def measure(status: dict) -> dict:
    environment = load_environment("local")
    apps = [h for h in status["hosts"] if "app" in h["roles"]]
    out: dict = {"speed_rate_per_app_host": RATE_PER_HOST, "speed_hosts": len(apps)}
    with tempfile.TemporaryDirectory(prefix="superapp-bench-speed-") as tmp:
        def tree(name: str, edits: dict[str, str]) -> Path:
            return release_copy(Path(tmp) / name, edits)
        single = tree("single", {"image_tags": '{"payments": "v3"}'})
        every = {tag: tree(tag, {"default_image_tag": f'"{tag}"', "image_tags": "{}"})
                 for tag in ("v2", "v3")}
        # before the load: on a fresh testbed no host has a Traefik to answer it yet
        progress("speed: starting point, the repo's release everywhere")
        deploy(REPO)
        progress("speed: the machine's CPU use, idle then under the load alone (10 s each)")
        idle = cpu.measure_for(10)
        meters = {name: cpu.Meter() for name in ("single", "host", "1", "2")}
        with Load(placed_targets([(h["name"], h["address"]) for h in apps], environment),
                  rate=RATE_PER_HOST, workers=12) as load:
            time.sleep(3)
            loaded = cpu.measure_for(10)
            progress("speed: one service on one host (payments -> v3, --limit host1)")
            text = deploy(single, "--limit", "host1", meter=meters["single"])
            rolled = {"single": rolled_seconds(text)}
            out["single_swap_seconds"] = host_seconds(text)["host1"]
            out["single_swap_timeline"] = parse_timeline(text)["host1"]
            progress("speed: every service on one host (-> v2, --limit host1)")
            text = deploy(every["v2"], "--limit", "host1", meter=meters["host"])
            rolled["host"] = rolled_seconds(text)
            out["host_swap_seconds"] = host_seconds(text)["host1"]
            out["host_swap_timeline"] = parse_timeline(text)["host1"]
            by_width: dict[str, float] = {}
            per_host: dict[str, dict[str, float]] = {}
            pictures = []
            for width, tag in ((1, "v3"), (2, "v2")):
                progress(f"speed: every service on every host (-> {tag}), parallel_hosts {width}")
                t0 = time.time()
                text = deploy(every[tag], "--data", f"parallel_hosts={width}",
                              meter=meters[str(width)])
                wall = time.time() - t0
                by_width[str(width)] = rolled[str(width)] = rolled_seconds(text)
                per_host[str(width)] = host_seconds(text)
                pictures.append(picture(f"every service, parallel_hosts {width}", text, wall,
                                        load.report, t0))
            out["rollout_seconds_by_parallel_hosts"] = by_width
            out["rollout_host_seconds_by_parallel_hosts"] = per_host
            progress("speed: the fleet back on the repo's release")
            deploy(REPO, "--data", "parallel_hosts=2")
            time.sleep(3)
        report = load.report
    drawn = draw(pictures, PICTURE)
    out["rollout_picture"] = str(drawn.relative_to(REPO)) if drawn else None
    out.update(speed_total_requests=report.total, speed_failed_requests=len(report.failed),
               speed_failures=dict(report.failures_by_kind()))
    single_s, host_s = out["single_swap_seconds"], out["host_swap_seconds"]
    out["host_over_single_ratio"] = round(host_s / single_s, 2)
    out["rollout_over_hosts_x_host_ratio"] = round(by_width["1"] / (len(apps) * host_s), 2)
    out["rollout_parallel2_over_parallel1_ratio"] = round(by_width["2"] / by_width["1"], 2)
    out.update(cpu_use(idle, loaded, {k: m.last(rolled[k]) for k, m in meters.items()}))
    return out


def cpu_use(idle: cpu.CpuUse, loaded: cpu.CpuUse, rollouts: dict[str, cpu.CpuUse]) -> dict:
    """The CPU side of the speed runs (see the module docstring), over each deploy's rollout
    only (`single`, `host`, and the full rollouts at parallel_hosts `1` and `2`): busy shares
    in percent, core-seconds beyond the load's, and the floors. A rollout that needs W
    core-seconds beyond the load's, on the cores the load leaves free, cannot take less than
    W / those cores however its work is ordered."""
    cores = os.cpu_count() or 1
    extra = {k: u.extra_core_seconds(loaded) for k, u in rollouts.items()}
    spare = cores * (1 - loaded.busy_share)

    def floor(key: str) -> float | None:
        return round(max(0.0, extra[key]) / spare, 1) if spare > 0 else None

    return {
        "speed_cpu_cores": cores,
        "speed_idle_cpu_busy_percent": round(100 * idle.busy_share, 1),
        "speed_load_cpu_busy_percent": round(100 * loaded.busy_share, 1),
        "speed_rollout_cpu_busy_percent": {k: round(100 * u.busy_share, 1)
                                           for k, u in rollouts.items()},
        "speed_rollout_extra_core_seconds": extra,
        "host_swap_cpu_floor_seconds": floor("host"),
        "rollout_parallel2_cpu_floor_seconds": floor("2"),
    }


def rows(r: dict) -> list[tuple[str, str]]:
    by = r["rollout_seconds_by_parallel_hosts"]
    return [
        ("one service on one host / all 17 on it", f"{r['single_swap_seconds']}s / "
         f"{r['host_swap_seconds']}s = {r['host_over_single_ratio']}x (goal <= 2)"),
        (f"full rollout, {r['speed_hosts']} hosts, parallel_hosts 1",
         f"{by['1']}s = {r['rollout_over_hosts_x_host_ratio']} x hosts x host swap (goal <= 1.1)"),
        ("full rollout, parallel_hosts 2", f"{by['2']}s = "
         f"{r['rollout_parallel2_over_parallel1_ratio']} x parallel_hosts 1 (goal <= 0.6)"),
        ("CPU busy: idle / the load alone / during the single, host, p1, p2 rollouts",
         f"{r['speed_idle_cpu_busy_percent']}% / {r['speed_load_cpu_busy_percent']}% / "
         + ", ".join(f"{v}%" for v in r["speed_rollout_cpu_busy_percent"].values())
         + f" of {r['speed_cpu_cores']} cores"),
        ("CPU floors here (core-s beyond the load / cores it leaves): host swap",
         f"{r['host_swap_cpu_floor_seconds']}s vs goal 2 x single = "
         f"{round(2 * r['single_swap_seconds'], 1)}s"),
        ("CPU floors here: full rollout at parallel_hosts 2",
         f"{r['rollout_parallel2_cpu_floor_seconds']}s vs goal 0.6 x parallel_hosts 1 = "
         f"{round(0.6 * by['1'], 1)}s"),
        ("speed runs under load, failed / total requests",
         f"{r['speed_failed_requests']} / {r['speed_total_requests']}"),
        ("rollout picture (hosts' steps over the load)", r["rollout_picture"] or
         "not drawn (matplotlib missing: pip install -r bench/requirements.txt)"),
    ]


if __name__ == "__main__":
    from bench.run import standalone
    sys.exit(standalone("speed", measure, rows))
