"""One host's canary, step by step (the policy in ops/canary/policy.py, the numbers from
ops/canary/prometheus.py).

Runs inside the slot swap (ops/rollout/swap.py) once the new slots are healthy and before the
switch: at each step the route files become a weighted pair (live slot, new slot), Traefik is
seen serving both, and after the step's interval Prometheus says how each slot answered. Any
failed verdict raises `CanaryFailed`, and the swap's undo puts the plain route files back
(100% old, proven by Traefik's metrics) before it removes the new containers. The last step,
100%, is the swap's normal switch. Ctrl-C at any point is the same undo.

A controller that dies mid-canary leaves weighted route files (marked `# superapp-canary:`);
the next run puts the previous route back before it removes anything (ops/rollout/engine.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gevent

from ops.canary.policy import Outcome, Policy, judge
from ops.canary.prometheus import Prometheus, PrometheusError, slot_service
from ops.catalog.model import Environment
from ops.host.remote import Remote
from ops.render.compose import PROMETHEUS_PORT
from ops.render.traefik import render_dynamic, server_url
from ops.render.traefik import slot_service as traefik_service
from ops.rollout.plan import ServiceChange
from ops.rollout.steps import RolloutError, say, upload


class CanaryFailed(RolloutError):
    """The new release answered worse than the old one (or could not be judged)."""


@dataclass(frozen=True)
class Canary:
    """The run's canary: what a step must show, and where the numbers come from."""

    policy: Policy
    prometheus: Prometheus
    sleep: Callable[[float], None] = gevent.sleep  # a step's wait (Ctrl-C interrupts it)

    @classmethod
    def for_environment(cls, environment: Environment, policy: Policy) -> Canary:
        """The environment's own Prometheus (on its monitoring host, open to admin_sources)."""
        address = environment.monitoring_host.address
        return cls(policy, Prometheus(f"http://{address}:{PROMETHEUS_PORT}"))


Serve = Callable[[dict[str, str], str], None]  # Traefik name -> URL, what: waits or raises
Checkpoint = Callable[[str], None]


def judged(changes: Sequence[ServiceChange]) -> list[ServiceChange]:
    """Services with a live slot to compare with (a first deploy has none)."""
    return [c for c in changes if c.old_slot]


def run_canary(remote: Remote, environment: Environment, changes: Sequence[ServiceChange],
               canary: Canary, checkpoint: Checkpoint, serve: Serve) -> None:
    """Walk the judged steps; return when every step passed, raise `CanaryFailed` otherwise."""
    pairs = judged(changes)
    if not pairs:
        return
    host = environment.host(remote.name)
    policy = canary.policy
    for weight in policy.judged_steps:
        upload(remote, [render_dynamic(environment, environment.services[c.service], host,
                                       c.old_slot, (c.new_slot, weight)) for c in pairs])
        serve({traefik_service(c.service, s): server_url(environment.services[c.service], s)
               for c in pairs for s in (c.old_slot, c.new_slot)},
              f"waiting for Traefik to share traffic {100 - weight}/{weight}")
        checkpoint(f"canary-{weight}")
        say(remote.name, f"canary at {weight}%: " + ", ".join(c.service for c in pairs)
            + f" judged after {policy.interval_seconds}s")
        began = time.monotonic()
        lines = judge_step(remote.name, pairs, weight, canary)
        for line in lines:
            say(remote.name, f"  {line}")
        say(remote.name, f"canary at {weight}%: passed in {time.monotonic() - began:.0f}s")


def judge_step(host: str, pairs: Sequence[ServiceChange], weight: int,
               canary: Canary) -> list[str]:
    """Sample at the start, wait the interval (longer while traffic is too thin), judge."""
    policy, prometheus, sleep = canary.policy, canary.prometheus, canary.sleep
    names = [slot_service(c.service, s) for c in pairs for s in (c.old_slot, c.new_slot)]
    try:
        start = prometheus.sample(host, names)
        waited = policy.interval_seconds
        sleep(waited)
        while True:
            end = prometheus.sample(host, names)
            verdicts = [judge(c.service, weight,
                              end.since(start, slot_service(c.service, c.new_slot)),
                              end.since(start, slot_service(c.service, c.old_slot)), policy)
                        for c in pairs]
            failed = [v.reason for v in verdicts if v.outcome == Outcome.FAILED]
            if failed:
                raise CanaryFailed(f"{host}: the canary failed: " + "; ".join(failed))
            thin = [v.reason for v in verdicts if v.outcome == Outcome.WAITING]
            if not thin:
                return [v.reason for v in verdicts]
            if waited >= policy.interval_seconds + policy.max_wait_seconds:
                raise CanaryFailed(
                    f"{host}: too little traffic to judge the canary after {waited:.0f}s: "
                    + "; ".join(thin) + ". Re-run with `--data canary=skip` to roll out "
                    "without a canary (after checking the release another way)")
            more = min(policy.interval_seconds, 15)
            sleep(more)
            waited += more
    except PrometheusError as e:
        raise CanaryFailed(f"{host}: the canary cannot be judged: {e}") from None
