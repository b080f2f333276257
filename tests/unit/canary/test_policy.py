"""ops.canary.policy: the verdict on a step's numbers, the quantile, the run's settings."""

from __future__ import annotations

import math

import pytest

from ops.canary.policy import (
    CanaryInputError,
    Outcome,
    Policy,
    SlotStats,
    judge,
    policy_for_run,
    quantile,
)
from ops.catalog import load_environment

POLICY = policy_for_run(load_environment("prod").settings["canary"], None, None)
INF = math.inf


def fast(requests: float) -> tuple[tuple[float, float], ...]:
    """Every answer under 100 ms (Traefik's default buckets, cumulative)."""
    return ((0.1, requests), (0.3, requests), (1.2, requests), (5.0, requests), (INF, requests))


def test_prod_runs_the_documented_steps() -> None:
    assert isinstance(POLICY, Policy)
    assert POLICY.steps == (5, 25, 50, 100) and POLICY.judged_steps == (5, 25, 50)


def test_a_release_as_good_as_the_old_one_passes() -> None:
    v = judge("payments", 5, SlotStats(200, 0, fast(200)), SlotStats(3800, 2, fast(3800)), POLICY)
    assert v.outcome == Outcome.PASSED
    assert v.reason == "payments: 5xx 0.0% vs 0.1% on the old slot, p99 99 ms vs 99 ms " \
                       "on the old slot at 5%"


def test_five_percent_of_500s_fails_with_the_numbers() -> None:
    v = judge("payments", 25, SlotStats(1000, 31, fast(1000)), SlotStats(3000, 6, fast(3000)),
              POLICY)
    assert v.outcome == Outcome.FAILED
    assert v.reason == "payments: 5xx 3.1% vs 0.2% on the old slot at 25%"


def test_worse_than_the_old_slot_by_more_than_the_allowed_drop_fails() -> None:
    # 99.2% is above the absolute 99%, but 0.7 points below an old slot at 99.9%
    v = judge("taxi", 5, SlotStats(1000, 8, fast(1000)), SlotStats(10000, 10, fast(10000)),
              POLICY)
    assert v.outcome == Outcome.FAILED


def test_a_slow_tail_fails_on_latency_and_says_the_limit() -> None:
    # 5% of the answers take 3 s: the p99 lands in Traefik's 1.2-5 s bucket
    slow = ((0.1, 950), (0.3, 950), (1.2, 950), (5.0, 1000), (INF, 1000))
    v = judge("food", 5, SlotStats(1000, 0, slow), SlotStats(9000, 0, fast(9000)), POLICY)
    assert v.outcome == Outcome.FAILED
    assert v.reason.startswith("food: p99 4240 ms vs 99 ms on the old slot at 5% (limit 1000 ms)")


def test_too_little_traffic_is_not_a_pass() -> None:
    v = judge("bus", 5, SlotStats(3, 0, fast(3)), SlotStats(60, 0, fast(60)), POLICY)
    assert v.outcome == Outcome.WAITING and "3 request(s) on the new slot at 5%" in v.reason


def test_an_old_slot_without_traffic_leaves_only_the_absolute_limits() -> None:
    v = judge("bus", 50, SlotStats(500, 0, fast(500)), SlotStats(0, 0, ()), POLICY)
    assert v.outcome == Outcome.PASSED and "old slot" not in v.reason


@pytest.mark.parametrize(("buckets", "expected"), [
    (((0.1, 50), (0.3, 100), (INF, 100)), 0.1 + 0.2 * (99 - 50) / 50),
    (((0.1, 0), (INF, 10)), 0.1),  # in +Inf: the highest finite bound, as Prometheus says
    (((0.1, 0), (INF, 0)), None),
    ((), None),
])
def test_quantile_is_prometheus_histogram_quantile(buckets, expected) -> None:
    got = quantile(0.99, buckets)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_skip_and_empty_steps_mean_no_canary() -> None:
    settings = load_environment("prod").settings["canary"]
    assert policy_for_run(settings, "skip", None) is None
    assert policy_for_run(load_environment("local").settings["canary"], None, None) is None


def test_hold_keeps_the_steps_and_needs_one_to_hold_at() -> None:
    held = policy_for_run(load_environment("prod").settings["canary"], "hold", None)
    assert held is not None and held.hold and held.judged_steps == (5, 25, 50)
    assert not policy_for_run(load_environment("prod").settings["canary"], "run", None).hold
    with pytest.raises(CanaryInputError, match="no step below 100 to hold at"):
        policy_for_run(load_environment("local").settings["canary"], "hold", None)


@pytest.mark.parametrize(("given", "steps"), [("10,100", (10, 100)), (100, (100,)),
                                              ([5, 50, 100], (5, 50, 100))])
def test_the_run_may_give_its_own_steps(given, steps) -> None:
    policy = policy_for_run(load_environment("local").settings["canary"], None, given)
    assert policy is not None and policy.steps == steps


@pytest.mark.parametrize(("mode", "steps", "message"), [
    ("hold-on", None, "--data canary='hold-on': expected one of run, skip, hold"),
    (None, "ten", "--data canary_steps='ten': expected percents"),
    (None, "50,10,100", "--data canary_steps='50,10,100': percents must rise and end at 100"),
    (None, "10,50", "percents must rise and end at 100"),
    ("hold", "100", "--data canary=hold: the canary has no step below 100 to hold at"),
])
def test_a_bad_run_setting_is_refused_by_name(mode, steps, message) -> None:
    with pytest.raises(CanaryInputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        policy_for_run(load_environment("prod").settings["canary"], mode, steps)
