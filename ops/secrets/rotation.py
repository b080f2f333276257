"""Secret rotation: which secrets, which services use them, and their new KV v2 versions.

    pyinfra -y inventories/<env>.py tasks/rotate_secrets.py --data rotate=<selector>[,...]

Selectors: `<service>/<KEY>` (a Vault key of that service: `food/JWT_SECRET`,
`taxi/ADMIN_TOKEN`, `food/REDIS_PASSWORD`, `food/DB_PASSWORD`), `jwt`, `admin-tokens`, `redis`
and `db` (every secret of that kind), `internal-hmac` (the shared signing secret of payments'
internal API, rotated in phases) and `all` (all of those). The servers' own passwords (the
PostgreSQL superuser, the Redis admin, the backup repository's keys) and third-party keys
(`api-key`: issued by the vendor) are refused with the reason; an operator sets those with
`bao kv patch` and `deploy.py` rolls them.

When Vault is written, and why then
-----------------------------------
pyinfra first *prepares* (runs the task file for each host: checks, Vault reads, render, plan),
then *executes* the queued operations; `--dry`, or answering "no" without `-y`, stops between
the two, and pyinfra tells the prepare phase nothing about `--dry`. So:

- while preparing, once every check has passed (`ops.rollout.stages.check_invariants`,
  `read_secrets`), `plan_rotation` reads the rotated paths at the versions just read, makes
  the new values **in memory** (never on disk) and hands the plan `RotatedSecrets` (what Vault
  holds plus the new values): the printed plan is exactly what execution will do;
- execution starts by writing those values as new KV v2 versions with **check-and-set** on
  the versions the plan was rendered from, before any host is touched, then rolls out with
  the deploy's own stages (`ops.rollout.stages.rollout_callback` -> `ops.rollout.engine`);
  the writes themselves are in ops/secrets/rotation_writes.py.

Hence `--dry` (or a declined prompt) writes nothing and prints what would rotate and restart;
a concurrent writer makes the CAS fail and the run stops with no host changed; a check that
fails while preparing leaves Vault untouched. (Writing during prepare would also feed the
plan, but it would write under `--dry`, and a later prepare failure would leave a version in
Vault that no host runs.) Only the services whose env files change are swapped: that falls
out of the plan (`ops.rollout.plan`).

internal-hmac: phases
---------------------
The shared path `<prefix>/shared/internal-hmac` holds `INTERNAL_HMAC_SECRET` (current),
`INTERNAL_HMAC_SECRET_PREVIOUS` and, during a rotation, `INTERNAL_HMAC_ROTATION` (this JSON
record, not a secret: `{"rotation", "phase", "old_version", "started", "by"}`). Each phase is
one KV version (CAS), then one host-by-host rollout; the renderer
(`ops.render.compose.internal_hmac_values`) maps the phase to what each role holds:

    Vault                           verifiers (payments)    callers sign with   swapped
    idle                            old                     old                 -
    phase 1: current=new, prev=old  new + old               old (Vault's prev)  payments
    phase 2: same, record phase 2   new + old               new                 callers
      ... wait: replay window + margin after phase 2 ended (no old signature still valid)
    phase 3: prev removed           new                     new                 payments
    idle: record removed            new                     new                 -

Whichever host a failure stops on, every signature in use is accepted: in phase 1 callers
sign with the old secret, which every payments (before or after its swap) accepts; phase 2
starts only after phase 1 succeeded everywhere, so every payments accepts both; phase 3 starts
after every caller signs with the new one. A re-run reads the record and resumes: the recorded
phase is rolled again (only what is not on it yet changes), then the next ones. A deploy run
between phases renders the same (the phase is in Vault). A rotation refuses `--limit`: a
secret must reach every host. `--data hmac_stop_after=1` (or 2) pauses after that phase (to
watch the dashboards); a re-run resumes.

Database and Redis passwords: two steps
---------------------------------------
The server checks these, so both the old password and the new must work while a service is
swapped. A service's Redis ACL user may hold two passwords (ops/render/redis_acl.py); a
database has two login roles acting as its owner (ops/render/databases.py), and the one not in
use takes the new password. The first write puts the new password in `REDIS_PASSWORD` /
`DB_PASSWORD` and the old one in `..._PREVIOUS` (and for a database, the other role's name in
`DB_LOGIN`); its rollout gives the db host's servers both (the db host rolls first), then swaps
the service to the new one. Only after that rollout succeeded on every host is `..._PREVIOUS`
removed (CAS) and rolled out: the db host alone changes, and the old password stops working
(the old role becomes NOLOGIN). A rotation that stopped between the two leaves `..._PREVIOUS`
in Vault (deploy.py keeps rendering both); the next rotation of that key resumes it instead of
making a third password.

Never prints, logs or raises a secret value: reports name paths, keys, kinds and versions.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ops.catalog.model import (
    DB_LOGIN_KEY,
    DB_PREVIOUS_KEY,
    HMAC_ROTATION_KEY,
    REDIS_PREVIOUS_KEY,
    Environment,
    SecretRef,
)
from ops.render.compose import hmac_rotation_phase
from ops.render.databases import current_login, other_login
from ops.rollout.plan import HostPlan, Reason, describe_reasons
from ops.secrets.bootstrap import GENERATORS
from ops.secrets.vault import KvRead, refs_by_path

ROTATE_ALL = "all"
INTERNAL_HMAC = "internal-hmac"
KIND_SELECTORS = {"jwt": "jwt", "admin-tokens": "admin-token", "redis": "redis-password",
                  "db": "db-password"}
# Kinds rotated by writing a new generated value and swapping the services that use it.
ROTATED_KINDS = ("jwt", "admin-token", "redis-password", "db-password")
# Passwords a server checks, rotated in two steps: kind -> the key of the one being replaced.
TWO_STEP = {"redis-password": REDIS_PREVIOUS_KEY, "db-password": DB_PREVIOUS_KEY}
# the server that checks each of them (names, not values)
SERVER = {"redis-password": "Redis", "db-password": "PostgreSQL"}  # pragma: allowlist secret
CURRENT_KEY = "INTERNAL_HMAC_SECRET"
PREVIOUS_KEY = "INTERNAL_HMAC_SECRET_PREVIOUS"
# Added to the replay window before phase 3: clock skew between hosts and the controller.
PHASE3_MARGIN_SECONDS = 10
USAGE = ("--data rotate=<service>/<KEY>[,...] | jwt | admin-tokens | redis | db | internal-hmac | "
         "all "
         "(comma-separated)")

PHASES = {
    1: "verifiers accept the new secret and the old; callers keep signing with the old",
    2: "callers sign with the new secret",
    3: "the old secret is removed everywhere",
}


class RotationError(Exception):
    """A selector or a Vault state that refuses the rotation; names what, never a value."""


class RotationConflict(RotationError):
    """Someone wrote a rotated path after this run read it (KV v2 check-and-set failed)."""


# --- selection (pure) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """What to rotate: refs given a new value, plus the phased internal HMAC secret."""

    refs: tuple[SecretRef, ...] = ()
    internal_hmac: bool = False

    def names(self) -> list[str]:
        return [str(r) for r in self.refs] + ([INTERNAL_HMAC] if self.internal_hmac else [])


def not_rotatable_reason(environment: Environment, ref: SecretRef) -> str | None:
    """Why this task does not rotate `ref` (None: it does)."""
    if ref.key == CURRENT_KEY:
        return None
    if ref.key in (PREVIOUS_KEY, HMAC_ROTATION_KEY):
        return "managed by the internal HMAC rotation: use rotate=internal-hmac"
    if (ref.kind in TWO_STEP and ref.optional) or ref.key == DB_LOGIN_KEY:
        current = "REDIS_PASSWORD" if ref.kind == "redis-password" else "DB_PASSWORD"
        return f"managed by the password's rotation: rotate {current}"
    if ref.kind == "password":
        return ("a password the server must change too (PostgreSQL, the Redis admin): not "
                "rotated by this task; change it on the server and in Vault together")
    alertmanager = {str(r) for r in environment.alertmanager_refs().values()}
    if ref.kind not in ROTATED_KINDS or str(ref) in alertmanager:
        return (f"of kind {ref.kind}, issued by a third party or an operator: set the new "
                "value with "
                "`bao kv patch`, then run deploy.py")
    return None


def rotatable_refs(environment: Environment, kind: str | None = None) -> list[SecretRef]:
    """Every secret this task can give a new value (catalog order), optionally of one kind."""
    return [r for r in environment.all_secret_refs()
            if r.key != CURRENT_KEY and not r.optional
            and not_rotatable_reason(environment, r) is None and kind in (None, r.kind)]


def parse_selection(environment: Environment, text: object) -> Selection:
    """`--data rotate=...` -> a `Selection`; a `RotationError` naming the bad item otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise RotationError(f"say what to rotate: {USAGE}")
    refs: dict[str, SecretRef] = {}
    internal_hmac = False
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        word = item.lower()
        if word == ROTATE_ALL:
            refs.update((str(r), r) for r in rotatable_refs(environment))
            internal_hmac = internal_hmac or any(
                s.hmac_role != "none" for s in environment.services.values())
        elif word in KIND_SELECTORS:
            found = rotatable_refs(environment, KIND_SELECTORS[word])
            if not found:
                raise RotationError(f"rotate={item}: no service of {environment.name} has a "
                                    f"{KIND_SELECTORS[word]} secret")
            refs.update((str(r), r) for r in found)
        elif word == INTERNAL_HMAC:
            internal_hmac = True
        elif "/" in item:
            ref = service_ref(environment, item)
            if ref.key == CURRENT_KEY:
                internal_hmac = True
            else:
                refs[str(ref)] = ref
        else:
            hint = did_you_mean(word, [ROTATE_ALL, INTERNAL_HMAC, *KIND_SELECTORS])
            raise RotationError(f"rotate={item}: unknown selector{hint}; {USAGE}")
    if not refs and not internal_hmac:
        raise RotationError(f"say what to rotate: {USAGE}")
    return Selection(tuple(refs.values()), internal_hmac)


def service_ref(environment: Environment, item: str) -> SecretRef:
    name, _, key = item.partition("/")
    if name not in environment.services:
        raise RotationError(f"rotate={item}: no service {name!r} in ops/catalog/services.yml"
                            + did_you_mean(name, list(environment.services)))
    service = environment.services[name]
    refs = {r.key: r for r in environment.secret_refs(service)}
    if key not in refs:
        hint = " (the service gets ADMIN_TOKEN_SHA256; rotate ADMIN_TOKEN)" \
            if key == "ADMIN_TOKEN_SHA256" else did_you_mean(key, list(refs))  # noqa: S105
        raise RotationError(f"rotate={item}: {name} has no secret {key!r}{hint}; its secrets: "
                            + ", ".join(refs))
    ref = refs[key]
    reason = not_rotatable_reason(environment, ref)
    if reason:
        raise RotationError(f"rotate={item}: {ref} is {reason}")
    return ref


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def services_using(environment: Environment, ref: SecretRef) -> list[str]:
    """Services whose env files (their own or a sidecar's) are rendered from `ref`."""
    return [s.name for s in environment.services.values()
            if any(str(r) == str(ref) for r in environment.secret_refs(s))]


def services_swapped_in_phase(environment: Environment, phase: int) -> list[str]:
    """Phase 1 and 3 change the verifiers' env files, phase 2 the callers'."""
    role = "caller" if phase == 2 else "verifier"
    return [s.name for s in environment.services.values() if s.hmac_role == role]


# --- internal HMAC phases (pure) ----------------------------------------------------------------

@dataclass(frozen=True)
class HmacRotation:
    """The record of an internal HMAC rotation in progress (stored beside the secret)."""

    rotation: str
    phase: int
    old_version: int  # the KV version whose current secret is being replaced
    started: str
    by: str

    def to_json(self) -> str:
        return json.dumps({"rotation": self.rotation, "phase": self.phase,
                           "old_version": self.old_version, "started": self.started,
                           "by": self.by}, sort_keys=True)

    @classmethod
    def parse(cls, text: object, where: str = "") -> HmacRotation | None:
        """The record, None when absent; a broken one refuses (never guess a phase)."""
        if text in (None, ""):
            return None
        phase = hmac_rotation_phase(text if isinstance(text, str) else None)
        try:
            data = json.loads(text)  # type: ignore[arg-type]
            record = cls(str(data["rotation"]), int(data["phase"]), int(data["old_version"]),
                         str(data["started"]), str(data["by"]))
        except (TypeError, ValueError, KeyError):
            record = None
        if record is None or phase != record.phase:
            raise RotationError(f"{where}#{HMAC_ROTATION_KEY}: unreadable rotation record; "
                                "fix it by hand (see ops/secrets/rotation.py) before rotating")
        return record


def start_hmac_data(data: Mapping[str, Any], new_secret: str,
                    record: HmacRotation) -> dict[str, Any]:
    """Phase 1: the new secret becomes current, the old one previous."""
    return {**data, CURRENT_KEY: new_secret, PREVIOUS_KEY: data[CURRENT_KEY],
            HMAC_ROTATION_KEY: record.to_json()}


def advance_hmac_data(data: Mapping[str, Any],
                      record: HmacRotation) -> tuple[dict[str, Any], HmacRotation | None]:
    """The KV data (and record) of the phase after `record.phase`; record None = finished."""
    out = dict(data)
    if record.phase == 1:
        nxt: HmacRotation | None = replace(record, phase=2)
    elif record.phase == 2:
        out.pop(PREVIOUS_KEY, None)
        nxt = replace(record, phase=3)
    else:
        out.pop(PREVIOUS_KEY, None)
        out.pop(HMAC_ROTATION_KEY, None)
        return out, None
    out[HMAC_ROTATION_KEY] = nxt.to_json()
    return out, nxt


def phase3_wait_seconds(environment: Environment) -> int:
    return int(environment.settings["hmac_replay_window_seconds"]) + PHASE3_MARGIN_SECONDS


# --- the plan of a rotation (pure, given a reader) ----------------------------------------------

@dataclass
class PathWrite:
    """One new KV version to write with check-and-set on `old_version`."""

    path: str
    keys: tuple[str, ...]  # the rotated keys (for the record)
    old_version: int
    data: dict[str, Any] = field(repr=False)  # holds values: never printed
    new_version: int | None = None


@dataclass
class RotationPlan:
    id: str
    selection: Selection
    writes: list[PathWrite]  # written first thing at execution, before any host changes
    overrides: dict[str, str | None] = field(repr=False)  # "path#KEY" -> value the plan renders
    hmac: HmacRotation | None = None  # the phase the first rollout brings the hosts to
    hmac_path: str | None = None
    hmac_version: int | None = None  # Vault version of that phase (after the write, if any)
    hmac_resumed: bool = False
    stop_after_phase: int | None = None  # `--data hmac_stop_after=N`: pause after phase N
    # database and Redis passwords: path -> the KV version whose `..._PREVIOUS` the last step
    # removes (CAS); keys of an unfinished rotation, resumed (no new password made)
    two_step_paths: dict[str, int] = field(default_factory=dict)
    two_step_resumed: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        keys = [f"{w.path}#{k}" for w in self.writes for k in w.keys]
        if self.hmac_resumed and self.hmac_path:
            keys.append(f"{self.hmac_path}#{CURRENT_KEY}")
        return keys


def new_secret_value(kind: str) -> str:
    return GENERATORS[kind]()


def plan_rotation(environment: Environment, selection: Selection, versions: Mapping[str, int],
                  read: Callable[[str, int | None], KvRead], *, rotation_id: str, user: str,
                  now: str, generate: Callable[[str], str] = new_secret_value) -> RotationPlan:
    """New values for every selected key, or the internal HMAC phase to resume.

    `read(path, version)` reads a KV version (the one `read_secrets` read, from `versions`), so
    the new versions are computed from, and later CAS-written on, exactly what the plan saw.
    """
    writes: list[PathWrite] = []
    overrides: dict[str, str | None] = {}
    two_step: dict[str, int] = {}
    resumed: list[str] = []
    for path, refs in refs_by_path(list(selection.refs)).items():
        kv = read_existing(read, path, versions.get(path))
        data = dict(kv.data or {})
        rotated = []
        for ref in refs:
            if ref.kind in TWO_STEP:
                two_step[path] = kv.version or 0
                previous = replace(ref, key=TWO_STEP[ref.kind], optional=True)
                if data.get(previous.key):  # an unfinished rotation: finish it
                    resumed.append(str(ref))
                    continue
                data[previous.key] = overrides[str(previous)] = data[ref.key]
                if ref.kind == "db-password":  # the role not in use takes the new password
                    login = replace(ref, key=DB_LOGIN_KEY, kind="string", optional=True)
                    data[login.key] = overrides[str(login)] = switched_login(
                        environment, ref, data.get(DB_LOGIN_KEY))
            data[ref.key] = overrides[str(ref)] = generate(ref.kind)
            rotated.append(ref.key)
        if rotated:
            writes.append(PathWrite(path, tuple(rotated), kv.version or 0, data))
    plan = RotationPlan(rotation_id, selection, writes, overrides, two_step_paths=two_step,
                        two_step_resumed=resumed)
    if selection.internal_hmac:
        refs = environment.internal_hmac_refs()
        path = plan.hmac_path = refs["current"].path
        kv = read_existing(read, path, versions.get(path))
        data = kv.data or {}
        record = HmacRotation.parse(data.get(HMAC_ROTATION_KEY), path)
        if record is None:
            record = HmacRotation(rotation_id, 1, kv.version or 0, now, user)
            new = start_hmac_data(data, generate("hmac"), record)
            writes.append(PathWrite(path, (CURRENT_KEY,), kv.version or 0, new))
            for name in ("current", "previous", "rotation"):
                overrides[str(refs[name])] = new[refs[name].key]
        else:
            plan.hmac_resumed, plan.hmac_version = True, kv.version
        plan.hmac = record
    return plan


def drop_previous_password(data: Mapping[str, Any]) -> dict[str, Any]:
    """The KV data of a Redis rotation's last step: only the new password is left."""
    return {k: v for k, v in data.items() if k not in TWO_STEP.values()}


def switched_login(environment: Environment, ref: SecretRef, recorded: object) -> str:
    """The database login role that takes the new password: the one not in use."""
    service = environment.services[services_using(environment, ref)[0]]
    database = service.database or ""
    return other_login(database, current_login(database, recorded
                                               if isinstance(recorded, str) else None))


def resumed_services(environment: Environment, plan: RotationPlan) -> set[str]:
    """Services whose resumed two-step rotation may still swap them (expected, not
    unrelated)."""
    return {s for ref in plan.selection.refs if str(ref) in plan.two_step_resumed
            for s in services_using(environment, ref)}


def read_existing(read: Callable[[str, int | None], KvRead], path: str,
                  version: int | None) -> KvRead:
    kv = read(path, version)
    if kv.data is None:
        raise RotationError(f"{path}" + (f" version {version}" if version else "")
                            + ": nothing there to rotate (run tasks/bootstrap_vault.py first)")
    return kv


def plan_lines(environment: Environment, plan: RotationPlan, dry: bool) -> list[str]:
    """What the run will rotate and which services each step swaps; names, never values."""
    when = ("dry run: nothing is written" if dry else
            "the new versions are written when the run executes, before any host changes")
    out = [f"rotation {plan.id} ({', '.join(plan.selection.names())}); {when}"]
    for w in plan.writes:
        if w.path == plan.hmac_path:
            continue
        for key in w.keys:
            ref = next(r for r in plan.selection.refs if r.path == w.path and r.key == key)
            out.append(f"  rotate {ref} ({ref.kind}): new version of {w.path} (now "
                       f"v{w.old_version}); swaps {', '.join(services_using(environment, ref))}"
                       + (f"; {SERVER[ref.kind]} accepts the old password and the new until "
                          "then" if ref.kind in TWO_STEP else ""))
    for name in plan.two_step_resumed:
        out.append(f"  resume {name}: an earlier rotation left the old password beside it; no "
                   "new password, its rollout is finished")
    if plan.two_step_paths:
        out.append("  then: the old password removed from "
                   + ", ".join(sorted(plan.two_step_paths)) + "; the db host stops accepting "
                   "it (no service swapped)")
    if plan.hmac:
        path, first = plan.hmac_path, plan.hmac.phase
        if plan.hmac_resumed:
            out.append(f"  internal-hmac: resume rotation {plan.hmac.rotation} (by "
                       f"{plan.hmac.by}, {plan.hmac.started}) at phase {first}, recorded in "
                       f"{path} v{plan.hmac_version}")
        else:
            out.append(f"  internal-hmac: rotate {path}#{CURRENT_KEY} in 3 phases (now "
                       f"v{plan.hmac.old_version}), each host by host")
        for phase in range(first, 4):
            wait = (f" (after waiting {phase3_wait_seconds(environment)} s: the replay window "
                    "+ margin)" if phase == 3 else "")
            out.append(f"    phase {phase}{wait}: {PHASES[phase]}; swaps "
                       + ", ".join(services_swapped_in_phase(environment, phase)))
    return out


def unrelated_changes(base_plan: HostPlan, expected: set[str]) -> list[str]:
    """What a host would change WITHOUT the rotation's new values: a rotation only rotates, so
    a fleet that is not on the repo's release (new images, config, a secret rolled by no one)
    is refused. `expected`: services the resumed HMAC phase swaps anyway."""
    out = [f"{c.service}: {'; '.join(describe_reasons(c))}" for c in base_plan.services
           if c.service not in expected or c.reasons != [Reason.CONFIG]]
    out += [f"update {f.path}" for f in base_plan.infra_files]
    out += [f"pull {image}" for image in sorted(base_plan.missing_images)]
    return out


# --- the values the plan renders ----------------------------------------------------------------

class RotatedSecrets:
    """A `SecretValues`: what Vault returned, with the rotation's new values on top.

    Lives in memory only: no value in its repr, and it refuses to be pickled or copied.
    """

    __slots__ = ("_base", "_overrides")

    def __init__(self, base: Any, overrides: Mapping[str, str | None]):
        self._base = base
        self._overrides = dict(overrides)

    def get(self, ref: SecretRef) -> str | None:
        if str(ref) in self._overrides:
            value = self._overrides[str(ref)]
            if value is None and not ref.optional:
                raise KeyError(f"missing secret {ref}")
            return value
        return self._base.get(ref)

    def versions(self) -> dict[str, int]:
        return self._base.versions()

    @property
    def base(self) -> Any:
        """What Vault holds now, without the new values."""
        return self._base

    def __repr__(self) -> str:
        return f"<RotatedSecrets: {len(self._overrides)} new value(s) over {self._base!r}>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("RotatedSecrets holds secret values: it cannot be pickled or copied")


# --- the ledger record (pure) -------------------------------------------------------------------

def ledger_entry(plan: RotationPlan, *, env: str, user: str, started: str, finished: str,
                 result: str, steps: Sequence[Mapping[str, Any]],
                 old_versions: Mapping[str, int], new_versions: Mapping[str, int]) -> dict:
    """The rotation's line in /var/lib/superapp/releases.jsonl (no `images`: not a release a
    rollback can pick; each step's own release line, written by the rollout, is)."""
    return {
        "kind": "rotate", "rotation": plan.id, "env": env, "user": user, "started": started,
        "finished": finished, "result": result, "keys": plan.keys,
        "old_versions": dict(old_versions), "new_versions": dict(new_versions),
        "steps": [dict(s) for s in steps],
    }


__all__ = [
    "HmacRotation", "PathWrite", "RotatedSecrets", "RotationConflict", "RotationError",
    "RotationPlan", "Selection", "advance_hmac_data", "drop_previous_password", "ledger_entry",
    "parse_selection", "phase3_wait_seconds", "plan_lines", "plan_rotation", "rotatable_refs",
    "resumed_services",
    "services_swapped_in_phase", "services_using", "start_hmac_data", "unrelated_changes",
]
