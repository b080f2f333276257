"""Secret-bearing files in a dry run, masked: where each secret sits in a rendered file, where
it comes from (Vault path and KV versions) and whether it changed, never what it is.

Pure. Both sides of a secret file are rebuilt from the file's structure, rendered with markers
in place of values (`MarkerSecrets`), each marker then replaced by where the value comes from
and whether it changed, e.g. `JWT_SECRET=<vault superapp/staging/payments v3 -> v4: changed>`.

Must never print, return or keep a secret value: real values enter this module only through
`is None` and `==` checks (`MarkerSecrets.get`, `value_changed`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ops.catalog.model import SecretRef
from ops.render.secrets import SecretValues

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
