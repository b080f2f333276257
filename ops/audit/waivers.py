"""Waivers: the only way to accept a finding. File: `audit-waivers.yml` at the repository root.

Format (documented example; every key is required, an unknown key is an error)::

    waivers:
      - rule: rendered.backup-coverage          # a rule id the audit knows
        match: "rendered.backup-coverage:prod"  # fnmatch pattern on the finding's `key`
        reason: "backups land with issue 9; manual pg_dump nightly until then"
        expires: 2026-12-31                     # YYYY-MM-DD; valid through that day

A finding's `key` is printed by `--json` (stable: no line numbers). One entry per finding: a
waiver must match exactly one finding of its rule. Outcomes:
- matches one finding, not expired: the finding is waived (kept in the report, not blocking);
- expired (today > expires): `waiver.expired` (high), and the finding stays blocking;
- matches nothing: `waiver.unmatched` (low) - delete it;
- matches several findings: `waiver.too-broad` (medium), waives none of them.
A waiver whose rule belongs to a scan that did not run (e.g. the secret scans in the preflight)
is left alone. Errors in the file raise ConfigError naming the file and the key path.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import yaml

from ops.audit.findings import Finding
from ops.catalog.errors import ConfigError
from ops.catalog.schema import Field, ListOf, Record, Str

WAIVERS_FILE = "audit-waivers.yml"
WAIVER = Record({
    "rule": Field(Str(pattern=r"[a-z]+\.[a-z0-9.-]+", hint="a rule id like rendered.non-root")),
    "match": Field(Str(pattern=r"\S.*", hint="an fnmatch pattern on the finding key")),
    "reason": Field(Str(pattern=r"\s*\S.{9,}", hint="a reason of at least 10 characters")),
    "expires": Field(Str(pattern=r"\d{4}-\d{2}-\d{2}", hint="a date YYYY-MM-DD")),
})
FILE = Record({"waivers": Field(ListOf(WAIVER), required=False, default=[])})


@dataclass(frozen=True)
class Waiver:
    index: int
    rule: str
    match: str
    reason: str
    expires: dt.date
    file: str

    @property
    def label(self) -> str:
        return f"{self.file}: waivers.{self.index}"


def load_waivers(path: Path, label: str, known_rules: set[str]) -> list[Waiver]:
    """Parse and validate the waiver file; a missing file means no waivers."""
    if not path.is_file():
        return []
    try:
        # BaseLoader: every scalar stays a string, so a bad date is our error, not YAML's
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}  # noqa: S506
    except yaml.YAMLError as exc:
        raise ConfigError([f"{label}: not valid YAML: {exc}"]) from None
    if isinstance(raw, dict) and raw.get("waivers") == "":
        raw["waivers"] = []
    errors: list[tuple[str, str]] = []
    data = FILE.check(raw, "", errors)
    waivers = []
    for i, item in enumerate(data.get("waivers") or [] if isinstance(data, dict) else []):
        if not isinstance(item, dict) or any(p.startswith(f"waivers.{i}") for p, _ in errors):
            continue
        if item["rule"] not in known_rules:
            errors.append((f"waivers.{i}.rule", f"unknown rule {item['rule']!r}"))
            continue
        try:
            expires = dt.date.fromisoformat(item["expires"])
        except ValueError:
            errors.append((f"waivers.{i}.expires", f"{item['expires']!r} is not a real date"))
            continue
        waivers.append(Waiver(i, item["rule"], item["match"], item["reason"].strip(), expires,
                              label))
    if errors:
        raise ConfigError([f"{label}: {p}: {m}" if p else f"{label}: {m}" for p, m in errors])
    return waivers


def apply_waivers(findings: list[Finding], waivers: list[Waiver], today: dt.date,
                  rule_ran: callable) -> list[Finding]:
    """Findings with waivers applied, plus the waivers' own findings."""
    out = list(findings)
    extra = []
    for waiver in waivers:
        if not rule_ran(waiver.rule):
            continue
        where = f"{waiver.label} ({waiver.rule} {waiver.match})"
        hits = [i for i, f in enumerate(out)
                if f.rule == waiver.rule and fnmatch.fnmatchcase(f.key, waiver.match)]
        if not hits:
            extra.append(Finding("waiver.unmatched", "low", where,
                                 "waiver matches no finding", "delete the waiver",
                                 key=f"waivers.{waiver.index}"))
        elif today > waiver.expires:
            extra.append(Finding("waiver.expired", "high", where,
                                 f"waiver expired on {waiver.expires.isoformat()}",
                                 "fix the finding, or renew the waiver with a new reason and "
                                 "date after review", key=f"waivers.{waiver.index}"))
        elif len(hits) > 1:
            extra.append(Finding("waiver.too-broad", "medium", where,
                                 f"waiver matches {len(hits)} findings (one entry per finding)",
                                 "narrow `match` to one finding key (see --json)",
                                 key=f"waivers.{waiver.index}"))
        else:
            out[hits[0]] = out[hits[0]].with_(waived_by=f"{waiver.label} "
                                                        f"(until {waiver.expires}: "
                                                        f"{waiver.reason})")
    return out + extra
