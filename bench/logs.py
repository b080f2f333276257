"""Central logs on the testbed, measured (`make bench`, or `python -m bench.logs` alone, which
writes bench/results/logs-<time>.json):

  - delivery latency: a service container on an app host writes a line every 20 ms; a watcher
    on the monitoring host notes when each line becomes readable in the store. Latency = that
    moment minus the line's own timestamp (Docker's, taken as the line was written). The
    testbed's hosts share one kernel clock, so the two times compare exactly. p50/p99/max.
  - throughput: one container writes a burst of lines as fast as its shell can; the rate at
    which they reach the store, and whether every one arrived exactly once (the burst is
    large enough for Docker's json-file to rotate under the shipper).
A benchmark, not a test: nothing asserts. The lines stay in the store (retention removes them).
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

from bench.hosts import ssh_argv
from bench.pitr import progress, ssh
from ops.render.logs import STORE_DIR

SERVICE = "food"
LATENCY_LINES = 300
LATENCY_INTERVAL = 0.02
BURST_LINES = 100_000
WATCHER_START_SECONDS = 2.0  # ssh + python start, then it seeks to the end of the file

# Runs on the monitoring host: follows the service's store file from its end, notes when each
# marker line appears; prints one JSON summary. (python3 is on every testbed host.)
WATCHER = r'''
import json, os, sys, time
path, marker, expect, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while not os.path.exists(path):
    time.sleep(0.05)
f = open(path, "rb"); f.seek(0, 2)
seen, buf, deadline = [], b"", time.time() + timeout
while len(seen) < expect and time.time() < deadline:
    chunk = f.read(1 << 20)
    if not chunk:
        time.sleep(0.005); continue
    now = time.time_ns()
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for line in lines:
        if marker.encode() in line:
            d = json.loads(line)
            seen.append([now, d["ts"], d["msg"].split()[1], d.get("offset", "")])
print(json.dumps(seen))
'''


def ns_of(ts: str) -> int:
    """Docker's `2026-12-03T15:01:02.123456789Z` as epoch nanoseconds."""
    base, _, frac = ts.rstrip("Z").partition(".")
    secs = datetime.fromisoformat(base + "+00:00").timestamp()
    return int(secs) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def watch(status: dict, store: dict, marker: str, expect: int, timeout: float) -> subprocess.Popen:
    """The watcher, started and following the file's end before the caller writes."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    command = (f"python3 -c {shlex.quote(WATCHER)} {STORE_DIR}/{SERVICE}/{day}.jsonl "
               f"{marker} {expect} {timeout}")
    proc = subprocess.Popen(
        ssh_argv(status, store, command), stdout=subprocess.PIPE, text=True)
    time.sleep(WATCHER_START_SECONDS)
    return proc


def container(status: dict, host: dict) -> str:
    return ssh(status, host, "docker ps --format '{{.Names}}' --filter "
                             f"label=superapp.service={SERVICE} "
                             "--filter label=superapp.role=serve").split()[0]


def write(status: dict, host: dict, name: str, script: str) -> None:
    ssh(status, host, f"docker exec {name} sh -c {shlex.quote(script + ' > /proc/1/fd/1')}")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(status: dict) -> dict:
    store = next(h for h in status["hosts"] if "monitoring" in h["roles"])
    app = next(h for h in status["hosts"] if "app" in h["roles"] and h is not store)
    name = container(status, app)
    out: dict = {}

    progress(f"logs: delivery latency, {LATENCY_LINES} lines at {1 / LATENCY_INTERVAL:.0f}/s "
             f"from {app['name']} to the store on {store['name']}")
    marker = f"benchlat-{uuid.uuid4().hex[:8]}"
    watcher = watch(status, store, marker, LATENCY_LINES, 120)
    write(status, app, name, f'i=0; while [ $i -lt {LATENCY_LINES} ]; do echo "{marker} $i"; '
                             f'i=$((i+1)); sleep {LATENCY_INTERVAL}; done')
    seen = json.loads(watcher.communicate(timeout=180)[0] or "[]")
    lat = [(now - ns_of(ts)) / 1e6 for now, ts, _, _ in seen]
    out.update(logs_latency_lines=len(seen),
               logs_latency_ms_p50=round(statistics.median(lat), 1) if lat else None,
               logs_latency_ms_p99=round(percentile(lat, 99), 1) if lat else None,
               logs_latency_ms_max=round(max(lat), 1) if lat else None)

    progress(f"logs: a burst of {BURST_LINES} lines from one container")
    marker = f"benchtput-{uuid.uuid4().hex[:8]}"
    watcher = watch(status, store, marker, BURST_LINES, 600)
    write(status, app, name, f'i=0; while [ $i -lt {BURST_LINES} ]; do echo "{marker} $i"; '
                             f'i=$((i+1)); done')
    seen = json.loads(watcher.communicate(timeout=900)[0] or "[]")
    numbers = [int(n) for _, _, n, _ in seen]
    descents = sum(b < a for a, b in zip(numbers, numbers[1:], strict=False))
    written = [ns_of(ts) for _, ts, _, _ in seen]
    arrived = [now for now, _, _, _ in seen]
    span = (max(arrived) - min(written)) / 1e9 if seen else 0
    out.update(logs_burst_lines=BURST_LINES, logs_burst_received=len(seen),
               logs_burst_unique=len(set(numbers)),
               # records stored after a later one of the same container: Docker's json-file
               # rotates under the burst and the shipper reads the old and new file at once
               # (`make logs` orders by each line's own timestamp, so it shows them in order)
               logs_burst_stored_out_of_order=descents,
               logs_burst_write_seconds=round((max(written) - min(written)) / 1e9, 2)
               if seen else None,
               logs_burst_seconds=round(span, 2),
               logs_throughput_lines_per_second=round(len(set(numbers)) / span) if span else None)
    return out


def rows(r: dict) -> list[tuple[str, str]]:
    return [
        ("logs: delivery latency p50 / p99 / max",
         f"{r['logs_latency_ms_p50']} ms / {r['logs_latency_ms_p99']} ms / "
         f"{r['logs_latency_ms_max']} ms ({r['logs_latency_lines']} lines)"),
        ("logs: burst, lines/s into the store",
         f"{r['logs_throughput_lines_per_second']}/s: {r['logs_burst_unique']} of "
         f"{r['logs_burst_lines']} arrived ({r['logs_burst_received']} records, "
         f"{r['logs_burst_stored_out_of_order']} stored after a later line), written in "
         f"{r['logs_burst_write_seconds']}s, "
         f"stored in {r['logs_burst_seconds']}s"),
    ]


if __name__ == "__main__":
    from bench.run import standalone
    sys.exit(standalone("logs", measure, rows))
