"""What the fleet bench computes from its timings (bench/fleet.py): the host counts it takes,
the growth from the smallest count to the largest, the goals, the table; and, without a
testbed, the order of its steps and that it always leaves the testbed at three hosts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import fleet
from bench.fleet import parse_counts, rollout_rounds, rows, summarize

SECONDS = {
    "3": {"noop_deploy": 2.0, "dry_run": 4.0, "one_service_rollout_p1": 30.0,
          "one_service_rollout_p3": 20.0},
    "12": {"noop_deploy": 2.8, "dry_run": 6.4, "one_service_rollout_p1": 120.0,
           "one_service_rollout_p3": 50.0},
    "6": {"noop_deploy": 2.4, "dry_run": 5.0, "one_service_rollout_p1": 60.0,
          "one_service_rollout_p3": 30.0},
}


def test_host_counts_are_distinct_ascending_and_at_least_the_three_listed_hosts() -> None:
    assert parse_counts("12,3,6,6") == [3, 6, 12]
    assert parse_counts("3") == [3]
    for bad in ("", "3,x", "2,6", "3,51"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_counts(bad)


def test_a_rollout_takes_one_host_then_parallel_hosts_at_a_time() -> None:
    assert [rollout_rounds(n, 1) for n in (1, 3, 6, 12)] == [1, 3, 6, 12]
    assert [rollout_rounds(n, 3) for n in (3, 4, 6, 12)] == [2, 2, 3, 5]


def test_growth_is_the_largest_count_over_the_smallest_with_the_goals() -> None:
    r = summarize(SECONDS)
    assert list(r["fleet_seconds"]) == ["3", "6", "12"]
    assert r["fleet_growth_3_to_max"] == {"noop_deploy": 1.4, "dry_run": 1.6,
                                          "one_service_rollout_p1": 4.0,
                                          "one_service_rollout_p3": 2.5}
    assert r["fleet_growth_hosts"] == [3, 12]
    assert r["fleet_expected_rollout_growth"] == {"one_service_rollout_p1": 4.0,
                                                  "one_service_rollout_p3": 2.5}
    assert r["noop_flat_within_1_5x"] is True
    assert r["dry_run_flat_within_1_5x"] is False


def test_one_count_is_flat() -> None:
    r = summarize({"3": SECONDS["3"]})
    assert set(r["fleet_growth_3_to_max"].values()) == {1.0}
    assert r["noop_flat_within_1_5x"] and r["dry_run_flat_within_1_5x"]


def test_the_table_has_one_row_per_measure_with_each_count() -> None:
    table = dict(rows(summarize(SECONDS)))
    assert table["fleet: seconds at 3 / 6 / 12 hosts"] == "growth 3 -> 12 hosts"
    assert table["no-op deploy"] == "2.0s / 2.4s / 2.8s = 1.4x (goal <= 1.5x: True)"
    assert table["dry run (--dry)"] == "4.0s / 5.0s / 6.4s = 1.6x (goal <= 1.5x: False)"
    assert table["payments rollout, parallel_hosts 3"] == (
        "20.0s / 30.0s / 50.0s = 2.5x (hosts / parallel_hosts predicts 2.5x)")


class FakeTestbed:
    """fresh_testbed, deploy and the local environment of bench.fleet, without a testbed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> None:
        self.ups: list[int] = []
        self.deploys: list[tuple[str, ...]] = []
        self.fail_at = fail_at
        monkeypatch.setattr(fleet, "fresh_testbed", self.ups.append)
        monkeypatch.setattr(fleet, "deploy", self.deploy)
        monkeypatch.setattr(fleet, "load_environment",
                            lambda env: SimpleNamespace(hosts=[None] * self.ups[-1]))
        monkeypatch.setattr(fleet, "release_copy", lambda dest, edits: dest)

    def deploy(self, tree: Path, *extra: str) -> str:
        self.deploys.append(extra)
        if self.ups[-1] == self.fail_at and "parallel_hosts=3" in extra:
            sys.exit("bench: deploy failed")
        return f"--> rolled {self.ups[-1]} host(s) in {self.ups[-1] * 2.5}s\n"


def test_each_count_gets_a_fresh_testbed_and_the_run_ends_on_three_hosts(monkeypatch) -> None:
    bed = FakeTestbed(monkeypatch)
    r = fleet.measure([3, 6])
    assert bed.ups == [3, 6, 3]
    assert r["fleet_seconds"]["6"]["one_service_rollout_p3"] == 15.0
    assert set(r["fleet_seconds"]["3"]) == set(fleet.MEASURES)
    assert bed.deploys[:8] == [(), (), (), (), ("--dry",), ("--dry",), ("--dry",),
                               ("--data", "parallel_hosts=1")]


def test_a_run_ending_on_three_hosts_leaves_them_as_they_are(monkeypatch) -> None:
    bed = FakeTestbed(monkeypatch)
    fleet.measure([3])
    assert bed.ups == [3]


def test_a_failed_step_still_puts_the_testbed_back_to_three_hosts(monkeypatch) -> None:
    bed = FakeTestbed(monkeypatch, fail_at=6)
    with pytest.raises(SystemExit, match="deploy failed"):
        fleet.measure([3, 6, 12])
    assert bed.ups == [3, 6, 3]
