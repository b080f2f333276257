"""ops.scope: "once for the whole run" and "when every active host has reported", under the
concurrency pyinfra prepares hosts with (greenlets), and one scope per pyinfra state."""

from __future__ import annotations

import gevent
import pytest

from ops.scope import RunScope, scope_of


def test_once_makes_the_value_once_for_every_caller() -> None:
    scope, calls = RunScope(), []

    def make() -> dict:
        calls.append(1)
        gevent.sleep(0.01)  # another host's greenlet runs meanwhile
        return {"made": len(calls)}

    values = [g.value for g in gevent.joinall([gevent.spawn(scope.once, "run", make)
                                               for _ in range(5)])]
    assert calls == [1]
    assert all(v is values[0] for v in values)
    assert scope.get("run") == {"made": 1}


def test_a_failed_make_stores_nothing_so_every_host_refuses_the_same_way() -> None:
    scope, attempts = RunScope(), []

    def refuse() -> None:
        attempts.append(1)
        raise ValueError("refused")

    for _ in range(2):
        with pytest.raises(ValueError, match="refused"):
            scope.once("run", refuse)
    assert len(attempts) == 2
    with pytest.raises(KeyError):
        scope.get("run")


def test_gather_hands_every_report_to_exactly_the_caller_that_completes_the_set() -> None:
    scope = RunScope()
    expected = {"host1", "host2", "host3"}
    assert scope.gather("status", "host2", 2, expected) is None
    assert scope.gather("status", "host1", 1, expected) is None
    assert scope.gather("status", "host3", 3, expected) == {"host1": 1, "host2": 2,
                                                             "host3": 3}
    assert scope.gather("status", "host3", 3, expected) is None  # fires once
    assert scope.gather("drift", "host1", "x", {"host1"}) == {"host1": "x"}  # keys apart


def test_gather_from_parallel_hosts_fires_once() -> None:
    scope = RunScope()
    hosts = [f"host{i}" for i in range(8)]

    def report(name: str):
        gevent.sleep(0.001 * (hash(name) % 5))
        return scope.gather("preview", name, name.upper(), hosts)

    results = [g.value for g in gevent.joinall([gevent.spawn(report, h) for h in hosts])]
    fired = [r for r in results if r is not None]
    assert fired == [{h: h.upper() for h in hosts}]


def test_each_pyinfra_state_has_its_own_scope() -> None:
    class State:  # stands for pyinfra's State: any object the run context hangs off
        pass

    one, two = State(), State()
    assert scope_of(one) is scope_of(one)
    assert scope_of(one) is not scope_of(two)
    scope_of(one).once("run", lambda: "first")
    assert scope_of(two).once("run", lambda: "second") == "second"
