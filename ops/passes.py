"""Remembered passes: a check's success stored as an empty file named by the digest of
everything the check read, so the next run on the same inputs skips it.

Used by the audit (ops/audit/passed.py) and the validation of rendered files
(ops/validate_passed.py). Only passes are stored, in the user's own 0700 directory, as empty
0600 files: digests only, never content. A directory that cannot be read or written only costs
the time of the check.

Each use of a pass renews its mtime; a pass not used for `KEEP_SECONDS` (a week) is removed
when the next one is stored, so the directory holds what recent runs used, not every input
ever checked. Only files named like a digest are ever removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def cache_dir(env_var: str, name: str) -> Path:
    """`$env_var` when set, else `~/.cache/superapp/<name>`."""
    given = os.environ.get(env_var)
    return Path(given) if given else Path.home() / ".cache" / "superapp" / name


def add_files(digest: Any, root: Path, names: Iterable[str]) -> None:
    """Feed each file's name (relative to `root`), length and bytes to the hash `digest`."""
    for name in names:
        try:
            content = (root / name).read_bytes()
        except OSError:
            content = b"\0unreadable"
        digest.update(f"\0{name}\0{len(content)}\0".encode())
        digest.update(content)


KEEP_SECONDS = 7 * 86400
DIGEST_NAME = re.compile(r"[0-9a-f]{64}")


def passed_before(directory: Path, digest: str) -> bool:
    path = directory / digest
    try:
        if not path.is_file():
            return False
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.utime(path)  # used: kept another KEEP_SECONDS
    return True


def remember_pass(directory: Path, digest: str) -> None:
    """Best effort: a cache that cannot be written costs time, never correctness."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(directory / digest, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return
    prune(directory, time.time() - KEEP_SECONDS)


def prune(directory: Path, older_than: float) -> None:
    """Remove the passes last used before `older_than` (epoch seconds)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if (DIGEST_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < older_than):
                os.unlink(entry.path)
        except OSError:
            pass
