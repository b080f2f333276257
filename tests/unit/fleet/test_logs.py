"""ops.fleet.logs: what `make logs` selects and in which order, from store records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ops.fleet.logs import (
    FILE_MARK,
    LogQueryError,
    days_between,
    format_record,
    merge,
    parse_record,
    parse_since,
    parse_store_output,
    release_windows,
    select,
    sort_key,
    store_grep,
)


def line(ts, host="host1", service="payments", slot="a", msg="m", cid="abc", offset=0, **kw):
    return json.dumps({"ts": ts, "host": host, "service": service, "slot": slot,
                       "container": f"{service}-{slot}", "cid": cid, "offset": str(offset),
                       "stream": "stdout", "msg": msg + "\n", **kw})


def test_since_accepts_durations_and_names_a_bad_one():
    assert parse_since("15m") == timedelta(minutes=15)
    assert parse_since("2h") == timedelta(hours=2)
    assert parse_since("1d") == timedelta(days=1)
    with pytest.raises(LogQueryError, match=r"SINCE='15 minutes'"):
        parse_since("15 minutes")


def test_days_between_spans_midnight_in_utc():
    start = datetime(2026, 12, 2, 23, 50, tzinfo=UTC)
    assert days_between(start, start + timedelta(minutes=20)) == ["2026-12-02", "2026-12-03"]


def test_docker_and_rsyslog_timestamps_sort_in_time_order():
    docker = "2026-12-03T15:01:02.123456789Z"
    rsyslog_earlier = "2026-12-03T15:01:02.123456+00:00"
    assert sort_key(docker) == docker
    assert sort_key(rsyslog_earlier) == "2026-12-03T15:01:02.123456000Z"
    assert sort_key(rsyslog_earlier) < sort_key(docker)
    assert sort_key("2026-12-03T15:01:02Z") == "2026-12-03T15:01:02.000000000Z"


def test_hosts_merge_in_time_order_and_a_resent_line_shows_once():
    out = [FILE_MARK + "2026-12-03.jsonl 900",
           line("2026-12-03T15:00:02Z", host="host2", cid="b2", msg="second"),
           line("2026-12-03T15:00:01Z", host="host1", cid="a1", msg="first"),
           "not json",
           line("2026-12-03T15:00:01Z", host="host1", cid="a1", msg="first")]  # RELP resend
    records, sizes = parse_store_output(out)
    assert sizes == {"2026-12-03.jsonl": 900}
    merged = merge(records)
    assert [r.msg for r in merged] == ["first", "second"]
    assert format_record(merged[0]) == "2026-12-03T15:00:01.000Z host1 payments-a: first"


def test_two_equal_lines_of_one_container_at_other_offsets_both_show():
    a = parse_record(line("2026-12-03T15:00:01Z", offset=0, msg="retry"))
    b = parse_record(line("2026-12-03T15:00:01Z", offset=10, msg="retry"))
    assert len(merge([a, b])) == 2


def test_follow_shows_only_what_it_has_not_shown():
    seen: set = set()
    first = merge([parse_record(line("2026-12-03T15:00:01Z", offset=0))], seen)
    again = merge([parse_record(line("2026-12-03T15:00:01Z", offset=0)),
                   parse_record(line("2026-12-03T15:00:02Z", offset=90, msg="new"))], seen)
    assert len(first) == 1 and [r.msg for r in again] == ["new"]


LEDGER = [
    {"release": "r1", "started": "2026-12-03T10:00:00+00:00",
     "finished": "2026-12-03T10:05:00+00:00",
     "hosts": {"host1": {"changed": ["payments", "food"],
                         "slots": {"payments": "a", "food": "a"}}}},
    {"release": "r2", "started": "2026-12-03T11:00:00+00:00",
     "finished": "2026-12-03T11:05:00+00:00",
     "hosts": {"host1": {"changed": ["payments"], "slots": {"payments": "b"}}}},
]


def test_a_release_selects_the_slots_it_started_until_the_next_swap_of_that_service():
    windows = release_windows(LEDGER, "r1")
    records = [parse_record(line(ts, service=svc, slot=slot, offset=i)) for i, (ts, svc, slot) in
               enumerate([("2026-12-03T09:59:00Z", "payments", "a"),   # before r1
                          ("2026-12-03T10:01:00Z", "payments", "a"),   # r1's slot
                          ("2026-12-03T11:03:00Z", "payments", "a"),   # draining during r2
                          ("2026-12-03T11:06:00Z", "payments", "a"),   # after r2 finished
                          ("2026-12-03T11:01:00Z", "payments", "b"),   # r2's slot
                          ("2026-12-03T12:00:00Z", "food", "a")])]     # r1's, still live
    picked = [(r.service, r.slot, r.ts[11:16]) for r in select(records, windows=windows)]
    assert picked == [("payments", "a", "10:01"), ("payments", "a", "11:03"),
                      ("food", "a", "12:00")]
    later = select(records, windows=release_windows(LEDGER, "r2"))
    assert [(r.slot, r.ts[11:16]) for r in later] == [("b", "11:01")]


def test_an_unknown_release_is_refused_naming_the_latest():
    with pytest.raises(LogQueryError, match=r"RELEASE=r9: not in the ledger \(latest: r1, r2\)"):
        release_windows(LEDGER, "r9")


def test_since_cuts_older_lines():
    records = [parse_record(line("2026-12-03T15:00:00Z", offset=1)),
               parse_record(line("2026-12-03T15:20:00Z", offset=2))]
    assert len(select(records, since=sort_key("2026-12-03T15:10:00Z"))) == 1


def test_grep_matches_the_message_as_written_not_as_the_store_escapes_it():
    stored = parse_record(line("2026-12-03T15:00:00Z", msg='{"path":"/api/ping","status":500}'))
    assert '\\/api\\/ping' in json.dumps(stored.msg).replace("/", "\\/")  # how rsyslog stores it
    assert select([stored], grep='"status":500') == [stored]
    assert select([stored], grep="/api/ping") == [stored]
    assert select([stored], grep="status=500") == []
    assert store_grep("rid-4f1c2a") == "rid-4f1c2a"  # filtered on the host as well
    assert store_grep("/api/ping") == store_grep('"status"') == ""  # decoded side only
