"""Remember that an environment's audit passed, so the next run on the same inputs skips it.

Every deploy, dry run, rollback and rotation audits the rendered configuration before it
touches a host: about 1.4 s of the ~3 s a run spends preparing, for a result that only changes
when the repository, the environment's settings or the date (waivers expire) change. A pass is
remembered as an empty file named by the digest of exactly those inputs; any change gives
another digest, and the audit runs again. Only passes are remembered: a run that finds a
blocking finding always audits again, so its refusal is never a stale one.

The directory is the user's own (`$SUPERAPP_AUDIT_CACHE`, default
`~/.cache/superapp/audit-passed`, 0700). It holds digests only, never configuration. When it
cannot be read or written the audit simply runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ops import passes
from ops.audit.findings import AuditReport
from ops.audit.repository import repo_files

CACHE_ENV = "SUPERAPP_AUDIT_CACHE"
FORMAT = 1  # bump when what a digest covers changes


def cache_dir() -> Path:
    return passes.cache_dir(CACHE_ENV, "audit-passed")


def inputs_digest(root: Path, env_name: str, settings: Mapping[str, Any],
                  today: dt.date) -> str:
    """Every input of `run_audit(env_name, root)`: the files the audit reads (the repository's
    own list, as its checks list them, with their contents, code included), the environment's
    loaded settings (group_data, and the testbed hosts the loader adds), the date, Python."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT, env_name, str(root.resolve()), today.isoformat(),
                              sys.version, settings], sort_keys=True, default=str).encode())
    passes.add_files(digest, root, repo_files(root))
    return digest.hexdigest()


def audit_unless_passed(env_name: str, settings: Mapping[str, Any],
                        audit: Callable[[str], AuditReport], root: Path,
                        today: dt.date | None = None,
                        directory: Path | None = None) -> AuditReport | None:
    """`audit(env_name)`'s report when it has a blocking finding; None when it passed, now or
    on a previous run with the same inputs (then it is not run)."""
    directory = directory or cache_dir()
    digest = inputs_digest(root, env_name, settings, today or dt.date.today())
    if passes.passed_before(directory, digest):
        return None
    report = audit(env_name)
    if report.blocking:
        return report
    passes.remember_pass(directory, digest)
    return None
