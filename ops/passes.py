"""Remembered passes: a check's success stored as an empty file named by the digest of
everything the check read, so the next run on the same inputs skips it.

Used by the audit (ops/audit/passed.py) and the validation of rendered files
(ops/validate_passed.py). Only passes are stored, in the user's own 0700 directory, as empty
0600 files: digests only, never content. A directory that cannot be read or written only costs
the time of the check.
"""

from __future__ import annotations

import os
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


def passed_before(directory: Path, digest: str) -> bool:
    try:
        return (directory / digest).is_file()
    except OSError:
        return False


def remember_pass(directory: Path, digest: str) -> None:
    """Best effort: a cache that cannot be written costs time, never correctness."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(directory / digest, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass
