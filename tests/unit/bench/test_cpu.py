"""The speed bench's CPU accounting (bench/cpu.py, bench/speed.py `cpu_use`): what it reads
from /proc/stat and the host swap's floor it derives."""

from __future__ import annotations

import time

import pytest

from bench import cpu
from bench.speed import cpu_use

STAT = """cpu  100 5 50 800 20 3 2 0 7 0
cpu0 50 2 25 400 10 1 1 0 0 0
intr 1 2 3
"""


def test_busy_is_everything_but_idle_and_iowait_and_guest_is_not_counted_twice() -> None:
    times = cpu.parse_stat(STAT)
    assert times.total == 100 + 5 + 50 + 800 + 20 + 3 + 2 + 0
    assert times.busy == 100 + 5 + 50 + 3 + 2 + 0


def test_a_stat_without_the_aggregate_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no aggregate"):
        cpu.parse_stat("cpu0 1 2 3 4 5 6 7 8\n")


def test_between_gives_core_seconds_and_the_share_of_all_cores() -> None:
    a, b = cpu.CpuTimes(busy=1000, total=5000), cpu.CpuTimes(busy=1000 + 3 * cpu.TICKS,
                                                              total=5000 + 4 * cpu.TICKS)
    use = cpu.between(a, b, seconds=2.0)
    assert use.busy_core_seconds == 3.0 and use.busy_share == 0.75


def test_extra_core_seconds_take_the_baselines_rate_out() -> None:
    baseline = cpu.CpuUse(seconds=10.0, busy_core_seconds=8.0, busy_share=0.4)
    step = cpu.CpuUse(seconds=20.0, busy_core_seconds=30.0, busy_share=0.75)
    assert step.extra_core_seconds(baseline) == 30.0 - 0.8 * 20.0


def test_the_floor_spreads_the_extra_work_over_the_cores_the_load_leaves() -> None:
    idle = cpu.CpuUse(10.0, 8.0, 0.4)
    loaded = cpu.CpuUse(10.0, 10.0, 0.5)  # 1 of 2 cores busy under the load alone
    deploys = {"single": cpu.CpuUse(20.0, 24.0, 0.6), "host": cpu.CpuUse(40.0, 70.0, 0.875),
               "1": cpu.CpuUse(100.0, 180.0, 0.9), "2": cpu.CpuUse(100.0, 190.0, 0.95)}
    out = cpu_use(idle, loaded, deploys, single_s=8.0)
    cores = out["speed_cpu_cores"]
    assert out["speed_deploy_extra_core_seconds"]["single"] == 24.0 - 20.0
    assert out["speed_deploy_extra_core_seconds"]["host"] == 70.0 - 40.0
    assert out["host_swap_cpu_floor_seconds"] == round(8.0 + (30.0 - 4.0) / (cores * 0.5), 1)
    assert out["speed_idle_cpu_busy_percent"] == 40.0
    assert out["speed_deploy_cpu_busy_percent"]["host"] == 87.5


def test_the_meter_reads_this_machines_counters() -> None:
    with cpu.Meter() as m:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # keep one core busy
            pass
    assert m.use.seconds >= 0.3 and m.use.busy_core_seconds > 0.1
    assert 0 < m.use.busy_share <= 1
