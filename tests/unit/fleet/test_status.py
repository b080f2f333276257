"""ops/fleet/status.py: the fleet status table from recorded host state (pure)."""

from __future__ import annotations

from ops.catalog import load_environment
from ops.fleet.status import format_status, host_rows, unreachable_rows
from ops.host.reads import ContainerDetail
from ops.host.state import HostState

ENV = load_environment("local")


def detail(name, state="running", health="healthy", image="r:5000/superapp/standin:v2",
           **labels):
    return ContainerDetail(name, state, 137 if state == "exited" else 0,
                           "2026-01-01T10:00:00.123Z", "2026-01-01T11:00:00.5Z", health, image,
                           "sha256:1", labels)


def state() -> HostState:
    s = HostState()
    s.services = {"food": {"service": "food", "slot": "b", "image": "r:5000/superapp/standin:v2",
                           "digest": "sha256:" + "c" * 64}}
    s.digests = {"r:5000/superapp/standin:v2": "sha256:" + "d" * 64}
    s.ledger = [{"release": "R9", "result": "success", "kind": "deploy",
                 "finished": "2026-01-01T09:00:00+00:00"}]
    return s


def test_running_and_stopped_services():
    details = {"food-b": detail("food-b"),
               "traefik": detail("traefik", image="r/traefik:3.7",
                                 **{"com.docker.compose.project": "sa-edge"})}
    rows = host_rows(ENV, "host2", state(), details)
    food = next(r for r in rows if r.service == "food")
    assert (food.container, food.version, food.digest, food.health, food.since) == (
        "food-b", "v2", "d" * 12, "up (healthy)", "2026-01-01 10:00:00Z")
    assert food.release.startswith("R9 (deploy")
    assert next(r for r in rows if r.service == "traefik").version == "3.7"
    assert next(r for r in rows if r.service == "payments").health == "missing"

    details["food-b"] = detail("food-b", state="exited", health="unhealthy")
    (food,) = host_rows(ENV, "host2", state(), details, only="food")
    assert (food.health, food.since) == ("down (exited 137)", "2026-01-01 11:00:00Z")


def test_table():
    rows = host_rows(ENV, "host2", state(), {"food-b": detail("food-b")}, only="food")
    rows += unreachable_rows("host3")
    lines = format_status(rows).splitlines()
    assert lines[0].split()[:6] == ["host", "service", "container", "version", "digest",
                                    "health"]
    assert lines[2].startswith("host3") and "unreachable" in lines[2]


def test_sidecars_have_their_own_rows_in_the_live_slot():
    """A dead Celery worker shows as down; a singleton beat only on its host."""
    s = state()
    s.services["payments"] = {"service": "payments", "slot": "a",
                              "image": "r:5000/superapp/standin:v2"}
    details = {"payments-a": detail("payments-a"),
               "payments-worker-a": detail("payments-worker-a", state="exited")}
    beat_host = ENV.singleton_hosts["payments.beat"]
    other = next(h.name for h in ENV.hosts_running("payments") if h.name != beat_host)
    rows = {r.service: r for r in host_rows(ENV, other, s, details, only="payments")}
    assert set(rows) == {"payments", "payments/worker"}
    assert (rows["payments/worker"].container, rows["payments/worker"].health) == (
        "payments-worker-a", "down (exited 137)")
    rows = {r.service: r for r in host_rows(ENV, beat_host, s, details, only="payments")}
    assert rows["payments/beat"].health == "missing"
