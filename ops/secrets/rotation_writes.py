"""The rotation's Vault writes: new KV v2 versions with check-and-set, so a concurrent writer
stops the run instead of being overwritten. The decisions (what to write, which phase comes
next) are pure and live in ops/secrets/rotation.py; this module only writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ops.catalog.model import HMAC_ROTATION_KEY
from ops.secrets.rotation import (
    HmacRotation,
    RotationConflict,
    RotationPlan,
    advance_hmac_data,
    drop_previous_password,
)
from ops.secrets.vault import CasMismatch, VaultError, VaultSession, read_kv, write_kv_cas


def write_cas(session: VaultSession, path: str, data: Mapping[str, Any], cas: int) -> int:
    """Write `data` as a new version of `path` only if its latest is still `cas`; new version."""
    try:
        return write_kv_cas(session, path, data, cas)
    except CasMismatch:
        raise RotationConflict(
            f"{session.settings.mount}/{path} changed since this run read version {cas} "
            "(another rotation or an operator wrote it); re-run") from None


def write_planned(session: VaultSession, plan: RotationPlan) -> dict[str, int]:
    """Write every planned version (CAS); path -> new version. Stops at the first refusal."""
    written: dict[str, int] = {}
    for w in plan.writes:
        try:
            w.new_version = write_cas(session, w.path, w.data, w.old_version)
        except (RotationConflict, VaultError) as e:
            if written:
                done = ", ".join(f"{p} v{v}" for p, v in written.items())
                raise type(e)(f"{e}. Already written, not rolled out: {done} (deploy.py "
                              "rolls them out)") from None
            raise
        written[w.path] = w.new_version
        if w.path == plan.hmac_path:
            plan.hmac_version = w.new_version
    return written


def advance_hmac(session: VaultSession, path: str, record: HmacRotation,
                 version: int) -> tuple[HmacRotation | None, int]:
    """Write the next phase's version of the internal HMAC path, CAS on `version`."""
    kv = read_kv(session, path)
    if kv.version != version or kv.data is None:
        raise RotationConflict(f"{session.settings.mount}/{path} is at version {kv.version}, "
                               f"this run wrote {version}: someone else changed it; re-run")
    current = HmacRotation.parse(kv.data.get(HMAC_ROTATION_KEY), path)
    if current != record:
        raise RotationConflict(f"{path}: the rotation record changed under this run; re-run")
    data, nxt = advance_hmac_data(kv.data, record)
    return nxt, write_cas(session, path, data, version)


def drop_previous(session: VaultSession, path: str, version: int) -> int:
    """A database/Redis password rotation's last write: the old password removed, CAS on
    `version` (the version this run rolled out); the new version."""
    kv = read_kv(session, path)
    if kv.version != version or kv.data is None:
        raise RotationConflict(f"{session.settings.mount}/{path} is at version {kv.version}, "
                               f"this run rolled out {version}: someone else changed it; re-run")
    return write_cas(session, path, drop_previous_password(kv.data), version)
