"""ops.rollout.plan's typed contracts: why a service is swapped (`Reason`), how that reads, the
printed plan, and the singleton sidecar taken from the catalog (not from rendered text)."""

from __future__ import annotations

from ops.catalog import load_environment
from ops.host.state import Container, HostState
from ops.render import MappingSecrets
from ops.rollout.plan import (
    HostPlan,
    Reason,
    describe_reasons,
    plan_host,
    plan_lines,
)

ENV = load_environment("local")
SECRETS = MappingSecrets({str(r): f"value-{r.key.lower()}-0123456789"
                          for r in ENV.all_secret_refs() if not r.optional})


def fresh_plan(host: str) -> HostPlan:
    return plan_host(ENV, host, SECRETS, HostState())


def test_reasons_are_members_that_read_as_text() -> None:
    change = fresh_plan("host2").services[0]
    assert change.reasons == [Reason.NOT_DEPLOYED]
    assert describe_reasons(change) == ["not deployed yet"]
    change.reasons, change.old_image = [Reason.IMAGE, Reason.NOT_RUNNING], "reg/x:v1"
    assert describe_reasons(change) == [f"image reg/x:v1 -> {change.image}",
                                        "container not running"]


def test_the_beat_singleton_comes_from_the_catalog() -> None:
    beat_host = ENV.singleton_hosts["payments.beat"]
    other = next(h for h in ENV.placement["payments"] if h != beat_host)
    payments = {h: next(c for c in fresh_plan(h).services if c.service == "payments")
                for h in (beat_host, other)}
    assert payments[beat_host].has_singleton and not payments[other].has_singleton
    assert not any(c.has_singleton for c in fresh_plan(beat_host).services
                   if c.service != "payments")
    assert payments[beat_host].compose_file == "/opt/superapp/compose/payments.yml"


def test_the_printed_plan_has_one_line_per_action() -> None:
    plan = fresh_plan("host2")
    lines = plan_lines(plan)
    food = next(c for c in plan.services if c.service == "food")
    # the testbed's stand-in has a migrate command for every service
    assert f"food: swap slot - -> {food.new_slot} (not deployed yet) + migrations" in lines
    assert len([line for line in lines if ": swap slot " in line]) == len(plan.services)
    assert any(line.startswith("update /opt/superapp/traefik/") for line in lines)
    assert any(line.startswith("pull ") for line in lines)
    state = HostState(containers={"chat-b": Container(
        "chat-b", "x", "running", "Up", {"superapp.service": "chat", "superapp.slot": "b"})})
    leftover = plan_host(ENV, "host2", SECRETS, state)
    assert "remove chat-b (left by an interrupted run)" in plan_lines(leftover)


def test_a_host_with_nothing_to_do_says_so() -> None:
    empty = HostPlan("host2", "10.0.0.2", [], set(), set(), [], [], [], [])
    assert plan_lines(empty) == ["nothing to change"]
