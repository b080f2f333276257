"""ops.rollout.lock: expiry compared as datetimes, the holder parsed, a rotation refused while
another run holds the lock (through a scripted Remote)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ops.rollout.lock import lock_expired, lock_holder, refuse_if_locked
from ops.rollout.steps import RolloutError

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("expires", "expired"), [
    ("2026-12-02T09:30:00+00:00", False),
    ("2026-12-02T08:59:59+00:00", True),
    # 10:30 in UTC+02:00 is 08:30 UTC: expired, although "10:30" sorts after "09:00" as text
    ("2026-12-02T10:30:00+02:00", True),
    # 06:00 in UTC-05:00 is 11:00 UTC: not expired, although it sorts before as text
    ("2026-12-02T06:00:00-05:00", False),
    ("2026-12-02T09:30:00", False),  # no offset: read as UTC
    ("", True), ("tomorrow", True), (None, True),  # an undatable lock must not block forever
])
def test_expiry_is_a_time_comparison(expires, expired) -> None:
    holder = {"owner": "ops@box"} if expires is None else {"expires": expires}
    assert lock_expired(holder, NOW) is expired


def test_the_holder_is_the_first_json_line_or_nothing() -> None:
    assert lock_holder('{"owner": "a@b", "token": "t"}\ntrailing') == {"owner": "a@b",
                                                                        "token": "t"}
    assert lock_holder("") == {} and lock_holder("not json") == {} and lock_holder("[1]") == {}


class LockFile:
    """A Remote whose lock file holds `content`."""

    name = "host1"

    def __init__(self, content: str):
        self.content, self.ran = content, []

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.ran.append(command)
        return True, self.content, ""

    def put(self, content: bytes, path: str) -> bool:
        raise AssertionError("a lock check uploads nothing")


def test_a_rotation_is_refused_while_a_live_lock_is_held() -> None:
    live = json.dumps({"owner": "ana@laptop", "started": "2026-12-02T08:00:00+00:00",
                       "expires": "2999-01-01T00:00:00+00:00"})
    with pytest.raises(RolloutError, match="ana@laptop since 2026-12-02T08:00:00"):
        refuse_if_locked(LockFile(live), "prod")


def test_no_lock_or_an_expired_one_lets_a_rotation_go_on() -> None:
    refuse_if_locked(LockFile(""), "prod")
    remote = LockFile(json.dumps({"owner": "x", "expires": "2001-01-01T00:00:00+00:00"}))
    refuse_if_locked(remote, "prod")
    assert remote.ran == ["cat /var/lib/superapp/deploy.lock 2>/dev/null; true"]
