"""`make logs`: read the central log store, pure parts (ops/render/logs.py writes the store).

The store holds `<service>/<YYYY-MM-DD>.jsonl` on the monitoring host, one JSON record per
line: ts, host, service, slot, container, stream, msg (plus cid/offset, which identify a line
of a container's json-file log). Delivery is at least once (RELP resends what the store did
not acknowledge), and records from several hosts arrive interleaved: reading drops duplicates
and merges everything in time order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DURATION_RE = re.compile(r"([0-9]+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
TS_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:?00)$")
FILE_MARK = "##superapp-log-file "
MISSING_MARK = "##superapp-log-missing "
SOURCE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class LogQueryError(ValueError):
    """A bad SINCE/RELEASE/SERVICE: one message naming the value."""


def parse_since(text: str) -> timedelta:
    """`15m`, `2h`, `1d`, `90s`."""
    m = DURATION_RE.fullmatch(text.strip())
    if not m:
        raise LogQueryError(f"SINCE={text!r}: expected a duration like 30s, 15m, 2h or 1d")
    return timedelta(**{UNITS[m.group(2)]: int(m.group(1))})


def days_between(start: datetime, end: datetime) -> list[str]:
    """The store's day files (`YYYY-MM-DD`, UTC) a time range touches, oldest first."""
    day, last, out = start.astimezone(UTC).date(), end.astimezone(UTC).date(), []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def sort_key(ts: str) -> str:
    """A timestamp as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, so that string order is time order
    (Docker writes nanoseconds and `Z`, rsyslog microseconds and `+00:00`)."""
    m = TS_RE.match(ts or "")
    if not m:
        return ts or ""
    return f"{m.group(1)}.{(m.group(2) or '').ljust(9, '0')}Z"


@dataclass(frozen=True)
class Record:
    ts: str
    host: str
    service: str
    slot: str
    container: str
    stream: str
    msg: str
    identity: tuple

    @property
    def key(self) -> str:
        return sort_key(self.ts)


def parse_record(line: str) -> Record | None:
    try:
        d = json.loads(line)
    except ValueError:
        return None
    if not isinstance(d, dict) or not d.get("ts"):
        return None
    msg = str(d.get("msg", "")).rstrip("\n")
    identity = ((d.get("host"), d.get("cid"), d.get("offset"), d["ts"]) if d.get("cid")
                else (d.get("host"), d.get("service"), d["ts"], msg))
    return Record(ts=str(d["ts"]), host=str(d.get("host", "")), service=str(d.get("service", "")),
                  slot=str(d.get("slot", "")), container=str(d.get("container", "")),
                  stream=str(d.get("stream", "")), msg=msg, identity=identity)


def parse_store_output(output: Iterable[str]) -> tuple[list[Record], dict[str, int]]:
    """Records and, per day file, the size read up to (the next read of a follow starts there).
    The output is the store read command's: a `FILE_MARK <name> <size>` line before each
    file's lines. A store without the service: LogQueryError naming what it has."""
    records, sizes = [], {}
    for line in output:
        if line.startswith(MISSING_MARK):
            has = line[len(MISSING_MARK):].split()
            raise LogQueryError("no logs of it in the store yet; the store has: "
                                + (", ".join(has) or "nothing"))
        if line.startswith(FILE_MARK):
            name, _, size = line[len(FILE_MARK):].strip().rpartition(" ")
            sizes[name] = int(size) if size.isdigit() else 0
            continue
        if (r := parse_record(line)) is not None:
            records.append(r)
    return records, sizes


def merge(records: Iterable[Record], seen: set | None = None) -> list[Record]:
    """Time order, each line once (`seen`: identities already shown, updated)."""
    seen = set() if seen is None else seen
    out = []
    for r in sorted(records, key=lambda r: (r.key, r.host, r.container)):
        if r.identity in seen:
            continue
        seen.add(r.identity)
        out.append(r)
    return out


@dataclass(frozen=True)
class Window:
    """Lines of one container set of a release: (host, service, slot) from `start` to `end`
    (None: still running)."""
    host: str
    service: str
    slot: str | None
    start: str
    end: str | None


def release_windows(releases: Sequence[dict], release_id: str) -> list[Window]:
    """What `RELEASE=<id>` selects: for each (host, service) the release changed, the slot
    it started, from its start until the next release that changed that service on that host
    finished (its swap ends the old slot). Ledger lines without slots (older tool versions):
    the release's own window, any slot."""
    index = next((i for i, r in enumerate(releases) if r.get("release") == release_id), None)
    if index is None:
        known = ", ".join(r["release"] for r in releases[-5:]) or "none recorded"
        raise LogQueryError(f"RELEASE={release_id}: not in the ledger (latest: {known})")
    release = releases[index]
    windows = []
    for host, entry in (release.get("hosts") or {}).items():
        slots = entry.get("slots")
        services = slots.keys() if slots is not None else entry.get("changed") or []
        for service in services:
            end = release.get("finished") if slots is None else next(
                (r.get("finished") for r in releases[index + 1:]
                 if service in ((r.get("hosts") or {}).get(host) or {}).get("slots", {})), None)
            windows.append(Window(host, service, slots.get(service) if slots else None,
                                  sort_key(release.get("started", "")),
                                  sort_key(end) if end else None))
    return windows


def in_windows(record: Record, windows: Sequence[Window]) -> bool:
    return any(record.host == w.host and record.service == w.service
               and (w.slot is None or record.slot == w.slot)
               and record.key >= w.start and (w.end is None or record.key <= w.end)
               for w in windows)


def select(records: Iterable[Record], since: str | None = None,
           windows: Sequence[Window] | None = None, grep: str = "") -> list[Record]:
    """Records at or after `since` (a sort key), inside a release's windows when given, whose
    message contains `grep` (as the service wrote it, not as the store escapes it)."""
    return [r for r in records
            if (since is None or r.key >= since)
            and (windows is None or in_windows(r, windows))
            and grep in r.msg]


# Characters the store's JSON writes as themselves: a GREP made only of them can be matched
# on the host against the stored line (less to transfer); any other text (quotes, slashes,
# which rsyslog writes as `\/`) is matched after decoding only.
PLAIN_TEXT = re.compile(r"[A-Za-z0-9 _.:,;=@#%+*!?()\[\]{}<>|~^&'$-]*")


def store_grep(grep: str) -> str:
    """The part of GREP the host-side read can apply to stored lines ("" = none)."""
    return grep if PLAIN_TEXT.fullmatch(grep) else ""


def format_record(r: Record) -> str:
    who = r.container or r.service
    return f"{r.key[:23]}Z {r.host} {who}: {r.msg}"
