"""ops.rollout.history: which release a rollback restores, from any state of the fleet."""

from __future__ import annotations

import pytest

from ops.catalog import load_environment
from ops.host.state import HostState
from ops.rollout.engine import migration_head
from ops.rollout.history import (
    head_lines,
    merged_releases,
    release_rows,
    release_stack,
    rollback_lines,
    rollback_target,
)

ENV = load_environment("local")
HOSTS = [h.name for h in ENV.hosts]
ALL = {s.name for s in ENV.services.values()}


def image(tag: str) -> str:
    return f"reg/superapp/standin:{tag}"


def images(tag: str, **by_service: str) -> dict[str, str]:
    return {s: image(by_service.get(s, tag)) for s in ALL}


def entry(rid: str, tag: str, result: str = "success", hosts: dict | None = None,
          kind: str = "deploy", back_to: str | None = None, **by_service: str) -> dict:
    e = {"release": rid, "kind": kind, "finished": f"2026-12-02T10:0{rid[-1]}:00+00:00",
         "result": result, "images": images(tag, **by_service), "commit": "c0ffee",
         "user": "ops@ctl", "secret_versions": {"superapp/local/food": int(rid[-1])},
         "hosts": hosts if hosts is not None else {h: {"result": "changed"} for h in HOSTS}}
    if back_to:
        e["rolled_back_to"] = back_to
    return e


def fleet(ledger: list[dict], tag: str, **on_host: str) -> dict[str, HostState]:
    """Every host runs `tag` for every service (a host named in `on_host` runs that tag);
    each host's ledger holds all of `ledger`."""
    states = {}
    for h in HOSTS:
        st = HostState(ledger=list(ledger))
        for s in ENV.services_on(h):
            st.services[s.name] = {"image": image(on_host.get(h, tag)), "slot": "a"}
        states[h] = st
    return states


V1, V2 = entry("r1", "v1"), entry("r2", "v2")


def test_a_whole_fleet_on_the_newest_release_goes_back_one() -> None:
    target = rollback_target(ENV, fleet([V1, V2], "v2"))
    assert target.release["release"] == "r1"


def test_a_rollout_stopped_on_host2_brings_every_host_back_to_the_last_complete_release():
    v3 = entry("r3", "v3", result="failed",
               hosts={"host1": {"result": "changed"}, "host2": {"result": "FAILED"}})
    states = fleet([V1, V2, v3], "v2", host1="v3")
    target = rollback_target(ENV, states)
    assert target.release["release"] == "r2"  # not r1: host2 and host3 never left v2
    assert "host1 runs" in target.reason
    lines = rollback_lines(ENV, states, target.release)
    assert lines and all(line.startswith("host1 ") and "v3 -> v2" in line for line in lines)


def test_a_second_rollback_goes_further_back_never_forward_again() -> None:
    v3 = entry("r3", "v3")
    back = entry("r4", "v2", kind="rollback", back_to="r2")
    assert [e["release"] for e in release_stack([V1, V2, v3, back], HOSTS)] == ["r1", "r2"]
    assert rollback_target(ENV, fleet([V1, V2, v3, back], "v2")).release["release"] == "r1"


def test_a_limit_deploy_is_partial_and_never_current() -> None:
    limited = entry("r3", "v3", hosts={"host2": {"result": "changed"}})
    states = fleet([V1, V2, limited], "v2", host2="v3")
    assert rollback_target(ENV, states).release["release"] == "r2"


def test_no_op_releases_and_lock_breaks_do_not_count_and_one_release_is_not_enough():
    again = entry("r3", "v2")  # a re-run: same images
    broke = {"kind": "lock-broken", "release": "r9", "holder": "x"}
    assert rollback_target(ENV, fleet([V1, V2, again, broke], "v2")).release["release"] == "r1"
    with pytest.raises(LookupError, match="nothing to go back to"):
        rollback_target(ENV, fleet([V1], "v1"))
    with pytest.raises(LookupError, match="no release that succeeded on every host"):
        rollback_target(ENV, fleet([], "v1"))


def test_a_named_release_must_exist_and_be_complete_and_every_host_must_be_read() -> None:
    failed = entry("r3", "v3", result="failed")
    states = fleet([V1, V2, failed], "v2")
    assert rollback_target(ENV, states, "r1").release["release"] == "r1"
    with pytest.raises(LookupError, match="no release 'nope'"):
        rollback_target(ENV, states, "nope")
    with pytest.raises(LookupError, match="did not succeed on every host"):
        rollback_target(ENV, states, "r3")
    del states["host3"]
    with pytest.raises(LookupError, match="host3 not in this run"):
        rollback_target(ENV, states)


def test_schema_heads_name_services_whose_schema_stays_newer() -> None:
    v1 = {**V1, "migrations": {"payments": "at version 1"}}
    v2 = {**V2, "migrations": {"payments": "at version 2", "taxi": "at version 1"}}
    v3 = {**entry("r3", "v3", result="failed"), "migrations": {"payments": "at version 3"}}
    lines = head_lines(merged_releases([v1, v2, v3]), "r2")
    assert lines == ["payments: schema stays at 'at version 3'; release r2 had 'at version 2' "
                     "(no migration runs on rollback)"]
    assert len(head_lines(merged_releases([v1, v2, v3]), "r1")) == 2


def test_release_rows_merge_hosts_and_show_what_changed() -> None:
    a = {**V1, "hosts": {"host1": {"result": "changed", "changed": ["chat"]},
                         "host2": {"result": "unchanged", "changed": []}}}
    back = entry("r2", "v1", kind="rollback", back_to="r1")
    rows = release_rows(merged_releases([a, a, back, {"kind": "lock-broken"}]))
    assert [r[0] for r in rows] == ["r1", "r2"]
    assert rows[0][6] == "host1:changed, host2:unchanged" and rows[0][7] == "chat"
    assert rows[1][4] == "rollback -> r1"


def test_the_schema_head_is_read_from_alembic_or_the_stand_in_never_guessed() -> None:
    alembic = ["INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.",
               "INFO  [alembic.runtime.migration] Running upgrade 1a2b -> 3c4d, add refunds",
               "INFO  [alembic.runtime.migration] Running upgrade 3c4d -> 5e6f, index refunds"]
    assert migration_head(alembic) == "5e6f"
    assert migration_head(["migrate: payments applied 0 migration(s), now at version 3"]) == "3"
    assert migration_head(alembic[:1]) == ""  # nothing applied: the last recorded head stays
    assert migration_head(["done"]) == ""
