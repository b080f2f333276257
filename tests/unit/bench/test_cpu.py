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


def test_the_floor_spreads_each_rollouts_extra_work_over_the_cores_the_load_leaves() -> None:
    idle = cpu.CpuUse(10.0, 8.0, 0.4)
    loaded = cpu.CpuUse(10.0, 10.0, 0.5)  # one core's worth busy under the load alone
    rollouts = {"single": cpu.CpuUse(8.0, 12.0, 0.6), "host": cpu.CpuUse(30.0, 60.0, 0.9),
                "1": cpu.CpuUse(100.0, 180.0, 0.9), "2": cpu.CpuUse(60.0, 120.0, 0.95)}
    out = cpu_use(idle, loaded, rollouts)
    spare = out["speed_cpu_cores"] * 0.5
    assert out["speed_rollout_extra_core_seconds"] == {
        "single": 12.0 - 8.0, "host": 60.0 - 30.0, "1": 180.0 - 100.0, "2": 120.0 - 60.0}
    assert out["host_swap_cpu_floor_seconds"] == round(30.0 / spare, 1)
    assert out["rollout_parallel2_cpu_floor_seconds"] == round(60.0 / spare, 1)
    assert out["speed_idle_cpu_busy_percent"] == 40.0
    assert out["speed_rollout_cpu_busy_percent"]["host"] == 90.0


def test_the_meter_reads_this_machines_counters_over_the_block_and_its_end() -> None:
    with cpu.Meter(every=0.05) as m:
        time.sleep(0.3)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # keep one core busy for the last 0.3 s
            pass
    assert m.use.seconds >= 0.6 and m.use.busy_core_seconds > 0.2
    assert 0 < m.use.busy_share <= 1
    last = m.last(0.3)  # from the sample nearest before the window: the exact choice is
    assert 0.3 <= last.seconds < m.use.seconds  # test_last_takes_the_window_from_the_samples'
    assert last.busy_core_seconds > 0.2
    assert m.last(60).seconds == m.use.seconds  # longer than the block: all of it


def test_last_takes_the_window_from_the_samples() -> None:
    m = cpu.Meter()
    m.samples = [(0.0, cpu.CpuTimes(0, 0)), (5.0, cpu.CpuTimes(100, 1000)),
                 (10.0, cpu.CpuTimes(100 + 4 * cpu.TICKS, 1000 + 10 * cpu.TICKS))]
    assert m.last(5.0) == cpu.CpuUse(seconds=5.0, busy_core_seconds=4.0, busy_share=0.4)
