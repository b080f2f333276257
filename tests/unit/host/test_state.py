"""ops.hoststate parses the one-command host snapshot (recorded from a testbed host)."""

from __future__ import annotations

from pathlib import Path

from ops.host.state import STATE_SCRIPT, parse_host_state

RECORDED = Path(__file__).parents[2] / "fixtures" / "hoststate" / "host2.txt"


def test_parses_a_recorded_snapshot() -> None:
    state = parse_host_state(RECORDED.read_text().splitlines())
    assert "/opt/superapp/compose/payments.yml" in state.files
    assert all(len(d) == 64 for d in state.files.values())
    assert state.containers["traefik"].state == "running"
    assert state.containers["traefik"].health == "healthy"
    payments = next(c for c in state.containers.values()
                    if c.labels.get("superapp.service") == "payments"
                    and c.labels.get("superapp.role") == "serve")
    assert payments.labels["superapp.slot"] in ("a", "b")
    assert "10.231.0.1:5000/superapp/traefik:3.7.15" in state.images
    assert state.digests["10.231.0.1:5000/superapp/traefik:3.7.15"].startswith("sha256:")
    assert state.services["payments"]["slot"] == payments.labels["superapp.slot"]
    assert state.lock is None
    assert state.ledger and state.ledger[-1]["env"] == "local"


def test_empty_host_and_garbage_are_not_fatal() -> None:
    fresh = parse_host_state(["@@files", "@@containers", "@@images", "@@services", "@@lock",
                              "@@ledger"])
    assert fresh.files == {} and fresh.containers == {} and fresh.ledger == []
    noisy = parse_host_state(["@@files", "not a checksum line", "@@ledger", "{broken json",
                              "[1, 2]", '{"release": "r1"}', "@@lock", '{"owner": "a@b"}'])
    assert noisy.files == {} and noisy.ledger == [{"release": "r1"}]
    assert noisy.lock == {"owner": "a@b"}


def test_the_script_reads_hashes_never_contents() -> None:
    assert "sha256sum" in STATE_SCRIPT
    assert "cat /etc/superapp" not in STATE_SCRIPT and "/etc/superapp/env" not in STATE_SCRIPT
