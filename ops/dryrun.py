"""What a dry run shows: per host, what would change and why, with unified diffs, secrets masked.

Pure: plans, rendered files, the current text of the host's non-secret files, and secret
*versions* in; report lines out. Secret-bearing files are never read from a host and never
diffed by value: both sides are rebuilt from the file's structure, rendered with markers in
place of values (`MarkerSecrets`), each marker then replaced by where the value comes from and
whether it changed, e.g. `JWT_SECRET=<vault superapp/staging/payments v3 -> v4: changed>`.

Must never print, return or keep a secret value: real values enter this module only through
`is None` and `==` checks (`MarkerSecrets.get`, `value_changed`).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from ops.catalog.model import SecretRef
from ops.plan import HostPlan, ServiceChange
from ops.render.files import RenderedFile
from ops.render.secrets import SecretValues

CONTEXT_LINES = 2
# Letters and digits only: survives YAML/JSON quoting, URL-encoding and env-file quoting as is.
MARKER_PREFIXES = ("zzvaultmarkera", "zzvaultmarkerb")
MARKER = re.compile(r"zzvaultmarker[ab]\d{4}z|[0-9a-f]{64}")
SLOT_REF = "\x00{}\x00"
SLOT = re.compile(r"\x00(\d+)\x00")
DERIVED = "\x01"


# ---------------------------------------------------------------------------------------------
# where secrets sit in a rendered file
# ---------------------------------------------------------------------------------------------

class MarkerSecrets:
    """A `SecretValues` that hands out one marker per secret instead of its value.

    Absent optional secrets stay absent (the file keeps the real structure). Each marker's
    sha256 is known too, so a value the renderer hashes (`ADMIN_TOKEN_SHA256`) is found.
    """

    def __init__(self, source: SecretValues, prefix: str = MARKER_PREFIXES[0]):
        self._source = source
        self._prefix = prefix
        self._tokens: dict[str, str] = {}
        self.refs: dict[str, SecretRef] = {}  # marker (or its sha256) -> ref
        self.hashed: set[str] = set()  # markers that are sha256 forms

    def get(self, ref: SecretRef) -> str | None:
        if self._source.get(ref) is None:  # the value itself is never kept
            return None
        key = str(ref)
        if key not in self._tokens:
            token = f"{self._prefix}{len(self._tokens):04d}z"
            self._tokens[key] = token
            self.refs[token] = ref
            digest = hashlib.sha256(token.encode()).hexdigest()
            self.refs[digest] = ref
            self.hashed.add(digest)
        return self._tokens[key]


HASHED = 10000  # slot offset marking "the sha256 of this secret"


def _templated(line: str, markers: MarkerSecrets, index: dict[str, int]) -> str:
    def swap(m: re.Match) -> str:
        ref = markers.refs.get(m.group(0))
        if ref is None:
            return m.group(0)
        slot = index.setdefault(str(ref), len(index))
        return SLOT_REF.format(slot + (HASHED if m.group(0) in markers.hashed else 0))
    return MARKER.sub(swap, line)


@dataclass
class SecretLayout:
    """A secret file's lines with each secret replaced by a slot naming its `SecretRef`."""

    lines: list[str]
    refs: dict[int, SecretRef]


def secret_layout(content_a: str, content_b: str, markers_a: MarkerSecrets,
                  markers_b: MarkerSecrets) -> SecretLayout:
    """Lay out a secret file from two renders with different markers.

    A line that still differs between the two renders once markers are swapped for slots holds
    something derived from a secret that was not recognised: its differing middle is masked
    whole (never shown), so an unknown transformation can hide a value but never leak one.
    """
    index: dict[str, int] = {}
    lines_a, lines_b = content_a.splitlines(), content_b.splitlines()
    if len(lines_a) != len(lines_b):  # a value changed the line structure: mask everything
        return SecretLayout([DERIVED] * max(len(lines_a), 1), {})
    out = []
    for a, b in zip(lines_a, lines_b, strict=True):
        ta, tb = _templated(a, markers_a, index), _templated(b, markers_b, index)
        if ta != tb:
            start = 0
            while start < min(len(ta), len(tb)) and ta[start] == tb[start]:
                start += 1
            end = 0
            while end < min(len(ta), len(tb)) - start and ta[-1 - end] == tb[-1 - end]:
                end += 1
            prefix = ta[:start]
            if prefix.count("\x00") % 2:  # never cut a slot in half
                prefix = prefix[:prefix.rfind("\x00")]
            suffix = ta[len(ta) - end:] if end else ""
            if suffix.count("\x00") % 2:
                suffix = suffix[suffix.find("\x00") + 1:]
            # a transformed marker's letters around the cut are not content: mask them too
            prefix = re.sub(r"[A-Za-z0-9]+$", "", prefix)
            suffix = re.sub(r"^[A-Za-z0-9]+", "", suffix)
            ta = prefix + DERIVED + suffix
        out.append(ta)
    by_slot = {}
    for key, slot in index.items():
        ref = next(r for r in markers_a.refs.values() if str(r) == key)
        by_slot[slot] = ref
    return SecretLayout(out, by_slot)


# ---------------------------------------------------------------------------------------------
# where each secret comes from and whether it changed
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretStatus:
    """A secret's Vault path and KV versions (last release vs now), and whether it changed."""

    ref: SecretRef
    old_version: int | None
    new_version: int | None
    changed: bool | None  # None: not known (the previous version could not be read)

    @property
    def is_changed(self) -> bool:
        if self.old_version is None:
            return False
        return self.changed is True or (self.changed is None
                                        and self.old_version != self.new_version)

    def label(self, side: str, with_key: bool = False, hashed: bool = False) -> str:
        where = f"vault {self.ref.path}" + (f"#{self.ref.key}" if with_key else "")
        if self.old_version is None:
            text = f"{where} v{self.new_version}"
        elif side == "old" and self.is_changed:
            text = f"{where} v{self.old_version}"
        elif self.old_version == self.new_version:
            text = f"{where} v{self.new_version}: unchanged"
        else:
            verdict = {True: "changed", False: "unchanged", None: "path changed"}[self.changed]
            text = f"{where} v{self.old_version} -> v{self.new_version}: {verdict}"
        return f"<sha256 of {text}>" if hashed else f"<{text}>"


def value_changed(previous: SecretValues | None, current: SecretValues,
                  ref: SecretRef) -> bool | None:
    """Whether a secret's value differs from the last release's; None when unknown."""
    if previous is None:
        return None
    try:
        return previous.get(ref) != current.get(ref)
    except KeyError:
        return True


def secret_statuses(refs: Sequence[SecretRef], old_versions: Mapping[str, int],
                    new_versions: Mapping[str, int],
                    changed: Callable[[SecretRef], bool | None]) -> dict[str, SecretStatus]:
    """`str(ref)` -> status. `changed` is asked only where the path's version moved."""
    out = {}
    for ref in refs:
        old, new = old_versions.get(ref.path), new_versions.get(ref.path)
        verdict = False if old == new else (changed(ref) if old is not None else None)
        out[str(ref)] = SecretStatus(ref, old, new, verdict)
    return out


def masked_text(layout: SecretLayout, statuses: Mapping[str, SecretStatus], side: str) -> str:
    """One side of a secret file with every secret replaced by its label (never a value)."""
    lines = []
    for line in layout.lines:
        def label(m: re.Match, line: str = line) -> str:
            slot = int(m.group(1))
            hashed = slot >= HASHED
            ref = layout.refs[slot % HASHED]
            status = statuses.get(str(ref)) or SecretStatus(ref, None, None, None)
            with_key = not line.startswith((f"{ref.key}=", f"{ref.key}_SHA256="))
            return status.label(side, with_key=with_key, hashed=hashed)
        text = SLOT.sub(label, line)
        # KEY='<...>' reads KEY=<...>
        text = re.sub(r"'(<(?:sha256 of )?vault [^'\n]*>)'", r"\1", text)
        lines.append(text.replace(DERIVED, "<derived from a secret: masked>"))
    return "\n".join(lines) + "\n"


def layout_refs(layout: SecretLayout) -> list[SecretRef]:
    return list(layout.refs.values())


# ---------------------------------------------------------------------------------------------
# why a service would be swapped
# ---------------------------------------------------------------------------------------------

def short_image(old: str | None, new: str) -> str:
    """`image registry/repo v1 -> v2` when only the tag moves, else both references."""
    repo, _, tag = new.rpartition(":")
    if old and old.rpartition(":")[0] == repo:
        return f"image {repo} {old.rpartition(':')[2]} -> {tag}"
    return f"image {old or '-'} -> {new}"


def compose_differences(old_text: str, new_text: str) -> list[str]:
    """Names of what differs between two compose files of one service (same slot): env
    variables by name (`env ALLOWED_ORIGINS`), other settings by container and key."""
    try:
        old = (yaml.safe_load(old_text) or {}).get("services") or {}
        new = (yaml.safe_load(new_text) or {}).get("services") or {}
    except yaml.YAMLError:
        return ["compose file (the host's copy is not valid YAML)"]
    found: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            found.append(f"container {name} {'added' if a is None else 'removed'}")
            continue
        for key in sorted(set(a) | set(b)):
            if key == "image" or a.get(key) == b.get(key):
                continue
            ea, eb = a.get(key), b.get(key)
            if key == "environment" and isinstance(ea, dict) and isinstance(eb, dict):
                for var in sorted(set(ea) | set(eb)):
                    if ea.get(var) != eb.get(var):
                        what = ("added" if var not in ea else "removed" if var not in eb
                                else "changed")
                        found.append(f"env {var} {what}" + (f" ({name})" if len(new) > 1 else ""))
            else:
                found.append(f"{key} ({name})" if len(new) > 1 else key)
    return list(dict.fromkeys(found))


def service_reasons(change: ServiceChange, compose_diff: Sequence[str] | None,
                    secrets_changed: Sequence[SecretStatus], env_file_differs: bool) -> list[str]:
    """The plan's reasons, with "configuration or secrets changed" spelled out."""
    out = []
    for reason in change.reasons:
        if reason.startswith("image "):
            out.append(short_image(change.old_image, change.image))
        elif reason == "configuration or secrets changed":
            detail = []
            if compose_diff:
                detail.append("config changed: " + ", ".join(compose_diff))
            for s in secrets_changed:
                detail.append(f"secret {s.ref.key} changed (vault {s.ref.path} "
                              f"v{s.old_version} -> v{s.new_version})")
            if env_file_differs and not secrets_changed:
                detail.append("env file changed")
            out += detail or [reason]
        else:
            out.append(reason)
    if any(r.startswith("image ") for r in change.reasons):
        out += [f"secret {s.ref.key} changed (vault {s.ref.path} v{s.old_version} -> "
                f"v{s.new_version})" for s in secrets_changed]
        if compose_diff:
            out.append("config changed: " + ", ".join(compose_diff))
    return out


# ---------------------------------------------------------------------------------------------
# diffs
# ---------------------------------------------------------------------------------------------

@dataclass
class FileDiff:
    path: str
    created: bool
    secret: bool
    lines: list[str]


def unified(path: str, old: str | None, new: str, host: str, note: str = "") -> list[str]:
    old_lines = (old or "").splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    head = [f"--- {'/dev/null' if old is None else f'{host}:{path}'}"
            + (f" {note}" if note else ""), f"+++ {path} (after the deploy)"]
    body = list(difflib.unified_diff(old_lines, new_lines, n=CONTEXT_LINES))[2:]
    return head + [line.rstrip("\n") for line in body]


def plain_file_diff(f: RenderedFile, host: str, on_host: bool, current: str | None) -> FileDiff:
    if f.secret:
        raise ValueError(f"{f.path} holds secrets: use secret_file_diff")
    if on_host and current is None:
        return FileDiff(f.path, False, False, [f"--- {host}:{f.path}", f"+++ {f.path}",
                                               "(could not read the host's copy)"])
    return FileDiff(f.path, not on_host, False, unified(f.path, current if on_host else None,
                                                        f.content, host))


def secret_file_diff(path: str, host: str, on_host: bool, layout: SecretLayout,
                     statuses: Mapping[str, SecretStatus], release: str | None) -> FileDiff:
    new = masked_text(layout, statuses, "new")
    if not on_host:
        return FileDiff(path, True, True, unified(path, None, new, host, "(secret: masked)"))
    old = masked_text(layout, statuses, "old")
    note = ("(secret: not read from the host; rebuilt from release "
            f"{release or '?'}'s secret versions, values masked)")
    lines = unified(path, old, new, host, note)
    if old == new:
        lines.append("  (no secret version changed: the host's copy differs from the "
                     "rendered one, e.g. edited on the host; its content is not read)")
    return FileDiff(path, False, True, lines)


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

@dataclass
class HostPreview:
    plan: HostPlan
    reasons: dict[str, list[str]] = field(default_factory=dict)  # service -> reasons
    migrations: dict[str, str] = field(default_factory=dict)  # service -> "here" | host
    diffs: list[FileDiff] | None = None  # None: --diff not asked
    changed_files: list[tuple[str, bool, bool]] = field(default_factory=list)  # path, new, secret


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plan_migrations(plans: Sequence[HostPlan],
                    migrated: set[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """host -> service -> where its migrations run ("here" or the host that runs them), in
    rollout order, once per release (as `ops.rollout.roll_host` does)."""
    done = dict.fromkeys(migrated, "an earlier release")
    out: dict[str, dict[str, str]] = {}
    for plan in plans:
        for c in plan.services:
            if not c.migrate:
                continue
            key = (c.service, c.image)
            out.setdefault(plan.host, {})[c.service] = done.get(key, "here")
            done.setdefault(key, plan.host)
    return out


def format_host(preview: HostPreview, position: int, total: int,
                migrate_commands: Mapping[str, str]) -> list[str]:
    plan = preview.plan
    where = f"{plan.host} ({plan.address}), {ordinal(position)} of {total} in rollout order"
    if not plan.changed:
        return [f"--> {where}: nothing to change"]
    created = sum(1 for _, new, _ in preview.changed_files if new)
    lines = [f"--> {where}: {len(plan.services)} service(s) to swap, "
             f"{len(preview.changed_files) - created} file(s) to change, {created} to create, "
             f"{len(plan.missing_images)} image(s) to pull"]
    for c in plan.services:
        lines.append(f"    swap {c.service} (slot {c.old_slot or '-'} -> {c.new_slot}): "
                     + "; ".join(preview.reasons.get(c.service, c.reasons)))
        runs = preview.migrations.get(c.service)
        if runs == "here":
            lines.append(f"        migrations: `{migrate_commands.get(c.service, '?')}` run here, "
                         "once for this release, before the new version takes traffic")
        elif runs:
            lines.append(f"        migrations: already run ({runs})")
    for unit in plan.infra_units:
        paths = [f.path for f in plan.infra_files if f.unit == unit]
        lines.append(f"    apply {unit}: {', '.join(paths)}")
    for image in sorted(plan.missing_images):
        lines.append(f"    pull {image}")
    for path, new, secret in preview.changed_files:
        lines.append(f"    {'create' if new else 'change'} {path}"
                     + (" (holds secrets: masked)" if secret else ""))
    for d in preview.diffs or ():
        lines += ["    " + line for line in d.lines]
    return lines


def format_summary(env: str, previews: Sequence[HostPreview], total_hosts: int) -> list[str]:
    touched = [p.plan.host for p in previews if p.plan.changed]
    swaps: dict[str, list[str]] = {}
    for p in previews:
        for c in p.plan.services:
            swaps.setdefault(c.service, []).append(p.plan.host)
    migrations = [f"{svc} on {host}" for p in previews for svc, where in p.migrations.items()
                  for host in [p.plan.host] if where == "here"]
    files = [f for p in previews for f in p.changed_files]
    created = sum(1 for _, new, _ in files if new)
    secret = sum(1 for _, _, s in files if s)
    pulls = sum(len(p.plan.missing_images) for p in previews)
    lines = [f"--> Dry-run summary ({env}): "
             + (f"{len(touched)} of {total_hosts} host(s) would change, in this order: "
                + " -> ".join(touched) if touched else "nothing would change on any host")]
    if touched:
        lines.append("    swaps: " + ("; ".join(f"{s} on {', '.join(h)}" for s, h in swaps.items())
                                      or "none"))
        lines.append("    migrations: " + (", ".join(migrations) or "none"))
        lines.append(f"    files: {len(files) - created} changed, {created} created "
                     f"({secret} holding secrets, masked); images to pull: {pulls}")
    lines.append("    nothing was changed: no host written, no lock taken, no ledger entry")
    return lines


def last_release(entries: Sequence[dict]) -> dict | None:
    """The newest successful release recorded in (any host's) ledger, or None."""
    done = [e for e in entries if e.get("release") and e.get("result") == "success"]
    if not done:
        return None
    return max(done, key=lambda e: (e.get("finished", ""), e["release"]))
