"""What a canary step must show, and the verdict on what it showed. Pure: no I/O.

The numbers are Traefik's own per-service counters and latency histogram, one Traefik service per
slot during a canary (templates/traefik/dynamic.yml.j2), as *deltas* over the step: the request
count and the 5xx count since the step began, and the histogram's bucket counts since then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MODES = ("run", "skip", "hold")  # --data canary=...


def steps_rise_to_all(steps: list[int]) -> bool:
    """Each step gives the new slot more than the one before, and the last gives it all."""
    return bool(steps) and steps[-1] == 100 and all(
        b > a for a, b in zip(steps, steps[1:], strict=False))


class CanaryInputError(ValueError):
    """A bad `--data canary` / `canary_steps` value; the message names it."""


@dataclass(frozen=True)
class Policy:
    """The group_data `canary` settings, possibly with the run's own steps (`canary_steps`)."""

    steps: tuple[int, ...]
    interval_seconds: int
    min_requests: int
    max_wait_seconds: int
    success_min_percent: float
    success_max_drop_points: float
    p99_max_seconds: float
    p99_max_ratio: float
    hold: bool = False  # --data canary=hold: stop after the last judged step, traffic shared

    @property
    def judged_steps(self) -> tuple[int, ...]:
        """Steps that share traffic (the last, 100%, is the normal switch)."""
        return tuple(s for s in self.steps if s < 100)


def policy_for_run(settings: Mapping[str, Any], mode: object, steps: object) -> Policy | None:
    """The run's canary, or None when it has none (no steps, or `--data canary=skip`).
    pyinfra gives `--data` values as it parsed them: `100` is an int, `[5,100]` a list."""
    mode = str(mode or "run").strip().lower()
    if isinstance(steps, list):
        steps = ",".join(str(x) for x in steps)
    steps = str(steps) if steps not in (None, "") else None
    if mode not in MODES:
        raise CanaryInputError(f"--data canary={mode!r}: expected one of {', '.join(MODES)}")
    c = dict(settings)
    if steps:
        try:
            c["steps"] = [int(x) for x in steps.split(",")]
        except ValueError:
            raise CanaryInputError(f"--data canary_steps={steps!r}: expected percents separated "
                                   "by commas, like 5,25,50,100") from None
        s = c["steps"]
        if any(not 0 < x <= 100 for x in s) or not steps_rise_to_all(s):
            raise CanaryInputError(f"--data canary_steps={steps!r}: percents must rise and end "
                                   "at 100")
    if mode == "skip" or (not c["steps"] and mode == "run"):
        return None
    if mode == "hold" and not [x for x in c["steps"] if x < 100]:
        raise CanaryInputError("--data canary=hold: the canary has no step below 100 to hold "
                               "at; give one with --data canary_steps=10,100")
    return Policy(steps=tuple(c["steps"]), interval_seconds=int(c["interval_seconds"]),
                  min_requests=int(c["min_requests"]),
                  max_wait_seconds=int(c["max_wait_seconds"]),
                  success_min_percent=float(c["success_min_percent"]),
                  success_max_drop_points=float(c["success_max_drop_points"]),
                  p99_max_seconds=float(c["p99_max_seconds"]),
                  p99_max_ratio=float(c["p99_max_ratio"]), hold=mode == "hold")


@dataclass(frozen=True)
class SlotStats:
    """One slot's answers during a step: requests, 5xx answers, latency buckets (le -> count,
    cumulative, as Prometheus histograms are)."""

    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...] = ()

    @property
    def success_percent(self) -> float | None:
        return None if self.requests <= 0 else 100.0 * (1 - self.errors / self.requests)

    @property
    def p99(self) -> float | None:
        return quantile(0.99, self.buckets)


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus's `histogram_quantile`: linear within the bucket holding the q-th
    observation; in the +Inf bucket, the highest finite bound. None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


class Outcome(StrEnum):
    PASSED = "passed"
    WAITING = "waiting"  # too little traffic yet
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    service: str
    outcome: Outcome
    reason: str  # the numbers, for the operator: `payments: 5xx 3.1% vs 0.2% on the old slot`


def fmt_seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


def judge(service: str, weight: int, new: SlotStats, old: SlotStats, policy: Policy) -> Verdict:
    """The new slot against the absolute limits and against the old slot at the same step."""
    at = f"at {weight}%"
    if new.requests < policy.min_requests:
        return Verdict(service, Outcome.WAITING,
                       f"{service}: {new.requests:.0f} request(s) on the new slot {at}, fewer "
                       f"than the {policy.min_requests} needed to judge it")
    new_ok, old_ok = new.success_percent, old.success_percent
    old_judged = old.requests >= policy.min_requests
    errors = f"5xx {100 - new_ok:.1f}%" + (f" vs {100 - old_ok:.1f}% on the old slot"
                                           if old_judged and old_ok is not None else "")
    if new_ok < policy.success_min_percent or (
            old_judged and old_ok is not None
            and new_ok < old_ok - policy.success_max_drop_points):
        return Verdict(service, Outcome.FAILED, f"{service}: {errors} {at}")
    new_p99, old_p99 = new.p99, old.p99 if old_judged else None
    limit = max(policy.p99_max_seconds, policy.p99_max_ratio * (old_p99 or 0.0))
    latency = f"p99 {fmt_seconds(new_p99)}" + (f" vs {fmt_seconds(old_p99)} on the old slot"
                                               if old_p99 is not None else "")
    if new_p99 is not None and new_p99 > limit:
        return Verdict(service, Outcome.FAILED,
                       f"{service}: {latency} {at} (limit {fmt_seconds(limit)})")
    return Verdict(service, Outcome.PASSED, f"{service}: {errors}, {latency} {at}")
