"""The canary inside the rollout, against a scripted host and a scripted Prometheus: weighted
routes step by step, the verdict stops the run before any other host, the undo puts the plain
route back before the new slot goes, and an interrupted canary's shared route is put back
first by the next run."""

from __future__ import annotations

import json

import pytest
import yaml

from ops.canary.policy import policy_for_run
from ops.canary.prometheus import Sample, queries, slot_service
from ops.canary.steps import Canary
from ops.fleet.status import canary_lines
from ops.host.state import CANARY_MARK, LIVE_SLOT_MARK, parse_host_state
from ops.render.traefik import render_dynamic
from ops.rollout.engine import rollout
from ops.rollout.history import held_canaries
from ops.rollout.ledger import Release
from ops.rollout.plan import plan_host, sha256
from ops.rollout.steps import RolloutError
from tests.unit.rollout.test_engine import ENV, FakeRemote, index_of, only_the_ledger
from tests.unit.rollout.test_plan import SECRETS, deployed_state

POLICY = policy_for_run(ENV.settings["canary"], None, "10,50,100")
ROUTE = "/opt/superapp/traefik/dynamic/payments.yml"


class ScriptedPrometheus:
    """Per slot service: requests and 5xx per sample taken (counters grow by that much)."""

    def __init__(self, per_sample: dict[str, tuple[int, int]]):
        self.per_sample, self.taken, self.hosts = per_sample, 0, []

    def sample(self, host: str, names) -> Sample:
        self.hosts.append(host)
        self.taken += 1
        values = {}
        for name in names:
            requests, errors = self.per_sample.get(name, (0, 0))
            n, e = requests * self.taken, errors * self.taken
            values[("requests", name)] = n
            values[("errors", name)] = e
            for le in ("0.1", "0.3", "1.2", "5", "+Inf"):
                values[("buckets", name, le)] = n
        return Sample(values)


class Host(FakeRemote):
    """A scripted host that also logs each upload, in order with the commands."""

    def __init__(self, name: str):
        super().__init__(name)
        self.uploads: list[tuple[str, str]] = []  # (staged path, content)

    def put(self, content: bytes, path: str) -> bool:
        self.commands.append(f"PUT {path}")
        self.uploads.append((path, content.decode()))
        return super().put(content, path)

    def routes(self, service: str) -> list[str]:
        return [c for p, c in self.uploads if f"traefik%dynamic%{service}.yml" in p]


def one_service_release():
    """payments changes image on every host (slot a live, b new)."""
    plans = []
    for h in (h.name for h in ENV.hosts):
        state = deployed_state(h)
        if "payments" in state.services:
            state.services["payments"]["image"] = "reg/superapp/standin:v0"
        plan = plan_host(ENV, h, SECRETS, state)
        plan.services = [c for c in plan.services if c.service == "payments"]
        plans.append(plan)
    return plans, [Host(p.host) for p in plans]


def roll(prometheus: ScriptedPrometheus, slept: list[float]):
    plans, remotes = one_service_release()
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"),
            canary=Canary(POLICY, prometheus, sleep=slept.append))
    return remotes


@pytest.fixture
def no_sleep() -> list[float]:
    """The canary's waits, recorded instead of waited."""
    return []


def test_a_good_release_steps_through_every_weight_then_switches(no_sleep) -> None:
    prometheus = ScriptedPrometheus({"payments-b@file": (50, 0), "payments-a@file": (450, 1)})
    remotes = roll(prometheus, no_sleep)
    routes = remotes[0].routes("payments")
    weighted = [r for r in routes if CANARY_MARK in r]
    assert [r.split(CANARY_MARK)[1].split("\n")[0] for r in weighted] == ["b 10", "b 50"]
    assert f"{LIVE_SLOT_MARK}b" in routes[-1] and CANARY_MARK not in routes[-1]  # the switch
    assert set(prometheus.hosts) == {"host1"}  # the first host only
    assert no_sleep[:1] == [POLICY.interval_seconds]
    # the other hosts switch at once
    assert all(CANARY_MARK not in c for r in remotes[1:] for c in r.routes("payments"))
    assert len(remotes[1].routes("payments")) == 1


def test_a_flaky_release_is_stopped_on_the_canary_host_and_undone_route_first(no_sleep) -> None:
    plans, remotes = one_service_release()
    prometheus = ScriptedPrometheus({"payments-b@file": (100, 5), "payments-a@file": (900, 1)})
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"),
                canary=Canary(POLICY, prometheus, sleep=no_sleep.append))
    msg = str(info.value)
    assert msg.startswith("host1: the canary failed: payments: 5xx 5.0% vs 0.1% on the old "
                          "slot at 10%"), msg
    assert "Not touched: host2, host3." in msg
    host1 = remotes[0].commands
    restored = index_of(host1, f"{ROUTE}.prev", "mv -f")
    back = index_of(host1, "traefik_service_server_up", 'service="payments@file"',
                    'url="http://payments-a:8000"')
    removed = index_of(host1, "compose -p sa-payments-b down")
    assert restored < back < removed
    assert only_the_ledger(remotes[1]) and only_the_ledger(remotes[2])


def test_too_little_traffic_waits_then_stops_and_names_the_way_on(no_sleep) -> None:
    prometheus = ScriptedPrometheus({"payments-b@file": (1, 0)})
    with pytest.raises(RolloutError, match="too little traffic to judge the canary") as info:
        roll(prometheus, no_sleep)
    assert "--data canary=skip" in str(info.value)
    waited = sum(no_sleep)
    assert POLICY.interval_seconds + POLICY.max_wait_seconds <= waited


def test_a_sample_subtracts_the_start_and_survives_a_counter_reset() -> None:
    start = Sample({("requests", "x-b@file"): 100.0, ("errors", "x-b@file"): 4.0})
    end = Sample({("requests", "x-b@file"): 160.0, ("errors", "x-b@file"): 1.0,
                  ("buckets", "x-b@file", "0.1"): 60.0, ("buckets", "x-b@file", "+Inf"): 60.0})
    stats = end.since(start, "x-b@file")
    assert (stats.requests, stats.errors) == (60.0, 1.0)  # errors reset: counted from zero
    assert stats.buckets == ((0.1, 60.0), (float("inf"), 60.0))
    assert Sample({}).since(Sample({}), "y").requests == 0


def test_the_queries_read_the_canary_hosts_traefik_only() -> None:
    q = queries("host1", [slot_service("payments", "a"), slot_service("payments", "b")])
    assert q["errors"] == ('sum by (service) (traefik_service_requests_total{job="traefik",'
                           'host="host1",service=~"payments-a@file|payments-b@file",'
                           'code=~"5.."})')


def test_an_interrupted_canary_is_put_back_before_its_new_slot_is_removed() -> None:
    state = deployed_state("host1")
    shared = render_dynamic(ENV, ENV.services["payments"], ENV.host("host1"), "a", ("b", 10))
    lines = ["@@canaries", f"{ROUTE}:{shared.content.splitlines()[3]}"]
    state.canaries = parse_host_state(lines).canaries
    assert state.canaries == {"payments": "b 10"}
    state.containers["payments-b"] = type(state.containers["payments-a"])(
        "payments-b", ENV.image(ENV.services["payments"]), "running", "Up",
        {"superapp.service": "payments", "superapp.slot": "b",
         "com.docker.compose.project": "sa-payments-b"})
    plan = plan_host(ENV, "host1", SECRETS, state)
    assert [f.path for f in plan.canary_routes] == [ROUTE] and plan.changed
    remote = Host("host1")
    rollout(ENV, [plan], [remote], Release(env="local", commit="abc"))
    put_back = index_of(remote.commands, "PUT ", "payments.yml")
    served = index_of(remote.commands, "traefik_service_server_up",
                      'url="http://payments-a:8000"')
    removed = index_of(remote.commands, "compose -p sa-payments-b down")
    assert put_back < served < removed
    plain = remote.routes("payments")[0]
    assert CANARY_MARK not in plain and f"{LIVE_SLOT_MARK}a" in plain
    assert json.dumps(plan.canary_servers) == '{"payments": "http://payments-a:8000"}'


HOLD = policy_for_run(ENV.settings["canary"], "hold", "10,50,100")


def test_hold_stops_after_the_last_judged_step_with_traffic_still_shared(no_sleep) -> None:
    plans, remotes = one_service_release()
    prometheus = ScriptedPrometheus({"payments-b@file": (50, 0), "payments-a@file": (450, 1)})
    results = rollout(ENV, plans, remotes, Release(env="local", commit="abc"),
                      canary=Canary(HOLD, prometheus, sleep=no_sleep.append))
    assert [(r.host, r.result) for r in results] == [("host1", "HELD")]
    host1 = remotes[0]
    assert remotes[0].routes("payments")[-1].count(f"{CANARY_MARK}b 50") == 1
    held = [c for c in host1.commands if "payments.json.next" in c]
    assert '"held":50' in held[-1] and '"slot":"b"' in held[-1]
    assert not any("sa-payments-b down" in c or "sa-payments-a down" in c
                   for c in host1.commands)  # neither undone nor switched
    assert not any(f"{ROUTE}.prev" in c and "mv -f" in c for c in host1.commands)
    ledger = [c for c in host1.commands if "releases.jsonl" in c][-1]
    assert '"result":"held"' in ledger
    assert only_the_ledger(remotes[1], "held") and only_the_ledger(remotes[2], "held")


def held_state(**intent_changes):
    """host1 as a hold left it: slot a live and recorded, slot b running the release, its
    route shared 50%, its intent marked held; `intent_changes` alter the intent."""
    plan = one_service_release()[0][0]
    change = plan.services[0]
    state = deployed_state("host1")
    state.services["payments"]["image"] = "reg/superapp/standin:v0"
    state.intents["payments"] = {"service": "payments", "slot": "b", "image": change.image,
                                 "hash": change.config_hash, "release": "r1", "held": 50,
                                 "at": "2026-12-04T10:00:00+00:00"} | intent_changes
    state.canaries = {"payments": "b 50"}
    a = state.containers["payments-a"]
    state.containers["payments-b"] = type(a)("payments-b", change.image, "running", "Up",
                                             {**a.labels, "superapp.slot": "b",
                                              "com.docker.compose.project": "sa-payments-b"})
    for f in change.files:  # staged by the run that held
        state.files[f.path] = sha256(f.content)
        state.files[f"{f.path}.prev"] = "x"
    state.files[f"{ROUTE}.prev"] = "x"
    return state


def test_a_run_making_the_same_change_continues_the_held_canary(no_sleep) -> None:
    plan = plan_host(ENV, "host1", SECRETS, held_state())
    plan.services = [c for c in plan.services if c.service == "payments"]
    [change] = plan.services
    assert change.held == 50 and not change.migrate
    assert not plan.canary_routes and not plan.stale_intents
    assert not plan.leftover_projects and not plan.leftover_files
    prometheus = ScriptedPrometheus({})
    remote = Host("host1")
    rollout(ENV, [plan], [remote], Release(env="local", commit="abc"),
            canary=Canary(POLICY, prometheus, sleep=no_sleep.append))
    assert prometheus.taken == 0  # judged by the run that held
    assert not any("sa-payments-b" in c and " up " in c for c in remote.commands)  # running
    assert not any(f"{ROUTE}.prev" in c and "cp" in c for c in remote.commands)  # kept .prev
    switched = index_of(remote.commands, "PUT ", "payments.yml")
    down = index_of(remote.commands, "compose -p sa-payments-a down")
    assert switched < down
    route = remote.routes("payments")[-1]
    assert CANARY_MARK not in route and f"{LIVE_SLOT_MARK}b" in route


@pytest.mark.parametrize("other", [{"hash": "another-config"}, {"slot": "a"}])
def test_a_held_canary_another_run_does_not_continue_is_put_back(other) -> None:
    plan = plan_host(ENV, "host1", SECRETS, held_state(**other))
    assert [f.path for f in plan.canary_routes] == [ROUTE]
    assert all(c.held is None for c in plan.services)
    assert "payments" in plan.stale_intents


def test_a_rollback_from_a_hold_goes_back_to_what_the_fleet_records() -> None:
    states = {"host1": held_state(), "host2": deployed_state("host2")}
    assert held_canaries(states) == ["host1 holds a canary of payments "
                                     f"{ENV.image(ENV.services['payments']).rpartition(':')[2]}"
                                     " at 50%"]


def test_status_names_a_held_canary_and_an_interrupted_one() -> None:
    interrupted = held_state()
    del interrupted.intents["payments"]["held"]
    lines = canary_lines({"host1": held_state(), "host2": interrupted})
    assert lines[0].startswith("host1 payments: canary held at 50% (")
    assert "release r1): re-run the deploy to continue, or run the rollback" in lines[0]
    assert lines[1] == ("host2 payments: 50% of its traffic goes to slot b, left by an "
                        "interrupted canary: the next deploy or rollback puts it back")


def test_during_a_canary_prometheus_scrapes_the_live_slot_and_users_get_the_pair() -> None:
    shared = yaml.safe_load(render_dynamic(ENV, ENV.services["payments"], ENV.host("host1"),
                                           "a", ("b", 10)).content)
    routers = shared["http"]["routers"]
    assert routers["payments-internal"]["service"] == "payments-a"  # never alternates
    assert routers["payments"]["service"] == "payments"  # the weighted pair
    assert routers["payments-internal-host"]["service"] == "payments"
    plain = yaml.safe_load(render_dynamic(ENV, ENV.services["payments"], ENV.host("host1"),
                                          "b").content)
    assert plain["http"]["routers"]["payments-internal"]["service"] == "payments"


def test_a_run_that_does_not_continue_a_hold_restores_the_live_files_and_swaps_nothing() -> None:
    """A rollback (the fleet's recorded image) on a host holding a canary of another image:
    the live slot's own files come back from `.prev`, so nothing looks drifted and payments is
    not swapped again; the held slot, its intent and its route go."""
    state = held_state(image="reg/superapp/standin:v9")
    state.services["payments"]["image"] = ENV.image(ENV.services["payments"])
    live = deployed_state("host1").files
    for path in [p for p in state.files if p.endswith(".prev")]:
        state.files[path] = live[path.removesuffix(".prev")]  # as the hold's staging kept them
        state.files[path.removesuffix(".prev")] = "staged-by-the-hold"
    plan = plan_host(ENV, "host1", SECRETS, state)
    assert [c.service for c in plan.services] == []
    assert ROUTE in plan.restore_files and "/opt/superapp/compose/payments.yml" in \
        plan.restore_files
    assert not [p for p in plan.leftover_files if p.endswith(".prev")]
    assert plan.stale_intents == ["payments"] and plan.leftover_projects == ["sa-payments-b"]
    remote = Host("host1")
    rollout(ENV, [plan], [remote], Release(env="local", commit="abc"))
    put_back = index_of(remote.commands, "PUT ", "payments.yml")
    restored = index_of(remote.commands, "mv -f", f"{ROUTE}.prev")
    removed = index_of(remote.commands, "compose -p sa-payments-b down")
    assert put_back < restored < removed
