"""What the speed bench reads from a deploy's output: each host's swap time and start, the
rollout's own time and the timeline table (bench/speed.py, bench/plot.py)."""

from __future__ import annotations

from bench.plot import parse_began, parse_timeline
from bench.speed import host_seconds, rolled_seconds
from ops.rollout.engine import HostResult, summary_table, timeline_table

RESULTS = [HostResult("host1", ["payments"], "changed", 12.34, began=0.4,
                      timeline={"pulled": 0.4, "switched": 9.9, "done": 12.3}),
           HostResult("host2", [], "unchanged", 0.5, began=12.8, timeline={"done": 0.5}),
           HostResult("host3", ["payments"], "changed", 11.0, began=12.8,
                      timeline={"pulled": 0.2, "done": 11.0})]


def deploy_output() -> str:
    return ("--> host1: ...\n\n" + summary_table(RESULTS)
            + "\n--> rolled 3 host(s) in 24.1s (parallel_hosts 2)\n"
            + "\nseconds since each host's rollout began, per step:\n"
            + timeline_table(RESULTS) + "\n--> Disconnecting from hosts...\n")


def test_the_summary_gives_each_hosts_time_and_start() -> None:
    text = deploy_output()
    assert host_seconds(text) == {"host1": 12.3, "host2": 0.5, "host3": 11.0}
    assert parse_began(text) == {"host1": 0.4, "host2": 12.8, "host3": 12.8}
    assert rolled_seconds(text) == 24.1


def test_the_timeline_table_reads_back_with_missing_steps_left_out() -> None:
    assert parse_timeline(deploy_output()) == {
        "host1": {"pulled": 0.4, "switched": 9.9, "done": 12.3},
        "host2": {"done": 0.5},
        "host3": {"pulled": 0.2, "done": 11.0},
    }
    assert parse_timeline("no rollout here") == {}
