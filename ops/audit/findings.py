"""The audit's result types: one `Finding` per problem, an `AuditReport` over all of them.

Pure data and formatting; nothing here reads files or runs a tool. A finding never carries a
secret value: messages name the file, key and kind of a secret, never its content.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

SEVERITIES = ("high", "medium", "low")
APPS_SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    """One problem.

    `where` is what a human opens (`file:line`, or `host service file:line key`); `key` is the
    stable identity of the finding (no line numbers) that a waiver's `match` is compared with.
    """

    rule: str
    severity: str
    where: str
    message: str
    fix: str
    key: str = ""
    waived_by: str | None = None  # "audit-waivers.yml: waivers.3 (reason)"
    relaxed_by: str | None = None  # local relaxation that downgraded it

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if not self.key:
            object.__setattr__(self, "key", f"{self.rule}:{self.where}")

    @property
    def blocking(self) -> bool:
        return self.severity == "high" and self.waived_by is None

    def with_(self, **changes: object) -> Finding:
        return replace(self, **changes)


@dataclass
class AuditReport:
    """Everything one audit run found, in a stable order, and how long each part took.

    `apps`: the Super-App monorepo checkout audited, "skipped" when none was given, None when
    the run has no monorepo part (the CI scan).
    """

    env: str
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    apps: str | None = None
    skipped: list[str] = field(default_factory=list)  # steps not run, and why (one line each)

    @property
    def apps_line(self) -> str | None:
        """What the table says about the monorepo part, or None."""
        if self.apps is None:
            return None
        if self.apps == APPS_SKIPPED:
            return ("monorepo checks skipped: pass APPS=path (make prod-audit "
                    "APPS=../super-app) or --apps PATH to audit the Super-App checkout")
        return f"monorepo checked: {self.apps}"

    @property
    def blocking(self) -> list[Finding]:
        """Non-waived high findings: the deploy refuses and the CLI exits 1 on any."""
        return [f for f in self.findings if f.blocking]

    def sort(self) -> None:
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        self.findings.sort(key=lambda f: (f.waived_by is not None, rank[f.severity], f.rule,
                                          f.where))

    def format_table(self, only_blocking: bool = False) -> str:
        """One row per finding: severity, rule, where, message and how to fix it.

        `only_blocking`: just the findings that block (what the deploy prints when it refuses);
        otherwise the last line says whether the monorepo was audited.
        """
        shown = self.blocking if only_blocking else self.findings
        tail = "" if only_blocking or self.apps_line is None else self.apps_line + "\n"
        tail += "".join(f"skipped: {line}\n" for line in self.skipped)
        if not shown:
            return f"audit {self.env}: no finding\n" + tail
        rows = []
        for f in shown:
            severity = f.severity.upper()
            if f.waived_by:
                severity += " (waived)"
            elif f.relaxed_by:
                severity += f" (relaxed: {f.relaxed_by})"
            rows.append((severity, f.rule, f.where, f"{f.message} -- fix: {f.fix}"
                         + (f" -- waived by {f.waived_by}" if f.waived_by else "")))
        widths = [max(len(title), *(len(r[i]) for r in rows))
                  for i, title in enumerate(("SEVERITY", "RULE"))]
        lines = [f"{'SEVERITY':<{widths[0]}}  {'RULE':<{widths[1]}}  WHERE / WHAT / FIX"]
        for severity, rule, where, text in rows:
            lines.append(f"{severity:<{widths[0]}}  {rule:<{widths[1]}}  {where}")
            lines.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}    {text}")
        counts = {s: sum(f.severity == s and not f.waived_by for f in self.findings)
                  for s in SEVERITIES}
        waived = sum(bool(f.waived_by) for f in self.findings)
        lines.append(f"audit {self.env}: {counts['high']} high, {counts['medium']} medium, "
                     f"{counts['low']} low, {waived} waived; "
                     f"{len(self.blocking)} blocking")
        return "\n".join(lines) + "\n" + tail

    def to_json(self) -> str:
        return json.dumps({
            "env": self.env,
            "apps": self.apps,
            "blocking": len(self.blocking),
            "skipped": self.skipped,
            "findings": [asdict(f) for f in self.findings],
            "timings_seconds": {k: round(v, 4) for k, v in self.timings.items()},
        }, indent=2) + "\n"
