"""How much CPU a step of the benchmark used, from the kernel's own counters (/proc/stat).

Why: the issue's speed goals ask that a host's 17 swaps cost little more than one, which holds
only where starting containers is not CPU-bound. The testbed's hosts are network and mount
namespaces of this one machine, so its /proc/stat counts every host's dockerd, containers and
Traefik, the load and the controller together: a step that keeps the CPUs busy cannot go
faster by running its work at once, and the share of the CPUs a step used says so.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STAT = Path("/proc/stat")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU ticks so far: busy (all but idle and iowait) and total."""

    busy: int
    total: int


def parse_stat(text: str) -> CpuTimes:
    """The aggregate `cpu ` line of /proc/stat (user nice system idle iowait irq softirq
    steal ...; guest time is already counted in user)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(v) for v in line.split()[1:9]]
            idle = ticks[3] + ticks[4]
            return CpuTimes(busy=sum(ticks) - idle, total=sum(ticks))
    raise ValueError("no aggregate 'cpu ' line in /proc/stat")


def read() -> CpuTimes:
    return parse_stat(STAT.read_text())


@dataclass(frozen=True)
class CpuUse:
    """What the machine's CPUs did between two readings."""

    seconds: float  # wall time
    busy_core_seconds: float  # CPU time spent busy, all cores summed
    busy_share: float  # of all the cores' time, 0..1

    def extra_core_seconds(self, baseline: CpuUse) -> float:
        """Busy core-seconds beyond what `baseline`'s rate would have used in that time (what
        the step itself cost, the load and the testbed's own background taken out)."""
        rate = baseline.busy_core_seconds / baseline.seconds if baseline.seconds else 0.0
        return round(self.busy_core_seconds - rate * self.seconds, 1)


def between(a: CpuTimes, b: CpuTimes, seconds: float) -> CpuUse:
    total = b.total - a.total
    return CpuUse(seconds=round(seconds, 1),
                  busy_core_seconds=round((b.busy - a.busy) / TICKS, 1),
                  busy_share=round((b.busy - a.busy) / total, 3) if total else 0.0)


class Meter:
    """`with Meter() as m: ...` then `m.use`: the machine's CPU use during the block, and
    `m.last(seconds)`: during its last `seconds` only (a deploy's rollout is the end of the
    command: `rolled 1 host(s) in N s`). A thread reads the counters every `every` seconds."""

    use: CpuUse

    def __init__(self, every: float = 0.25):
        self.every = every
        self.samples: list[tuple[float, CpuTimes]] = []
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic(), read()))

    def __enter__(self) -> Meter:
        self.samples = [(time.monotonic(), read())]
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), read()))
        (t0, a), (t1, b) = self.samples[0], self.samples[-1]
        self.use = between(a, b, t1 - t0)

    def last(self, seconds: float) -> CpuUse:
        """The use over the last `seconds` of the block (from the sample nearest before)."""
        t1, b = self.samples[-1]
        t0, a = next(((t, c) for t, c in reversed(self.samples) if t <= t1 - seconds),
                     self.samples[0])
        return between(a, b, t1 - t0)


def measure_for(seconds: float) -> CpuUse:
    """The machine's CPU use over the next `seconds` (a baseline: nothing of ours running)."""
    with Meter() as m:
        time.sleep(seconds)
    return m.use
