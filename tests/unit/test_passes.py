"""ops/passes.py: remembered passes are renewed by use and pruned after a week unused; nothing
but a digest-named file is ever removed."""

from __future__ import annotations

import hashlib
import os
import time

from ops.passes import KEEP_SECONDS, passed_before, remember_pass


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_pass_unused_for_a_week_is_removed_when_the_next_is_stored(tmp_path) -> None:
    old, recent, new = digest("old"), digest("recent"), digest("new")
    for d in (old, recent):
        remember_pass(tmp_path, d)
    age(tmp_path / old, KEEP_SECONDS + 60)
    age(tmp_path / recent, KEEP_SECONDS - 3600)
    remember_pass(tmp_path, new)
    assert not passed_before(tmp_path, old)
    assert passed_before(tmp_path, recent) and passed_before(tmp_path, new)


def test_using_a_pass_keeps_it_another_week(tmp_path) -> None:
    d = digest("used")
    remember_pass(tmp_path, d)
    age(tmp_path / d, KEEP_SECONDS + 60)
    assert passed_before(tmp_path, d)  # a hit renews it...
    remember_pass(tmp_path, digest("other"))
    assert passed_before(tmp_path, d)  # ...so the next prune keeps it


def test_only_digest_named_files_are_ever_pruned(tmp_path) -> None:
    # $SUPERAPP_VALIDATE_CACHE may point anywhere: never remove what we did not write
    stranger = tmp_path / "notes.txt"
    stranger.write_text("mine")
    age(stranger, 10 * KEEP_SECONDS)
    remember_pass(tmp_path, digest("x"))
    assert stranger.read_text() == "mine"
