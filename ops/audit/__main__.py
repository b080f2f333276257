"""`python -m ops.audit` - the static production audit (`make prod-audit`) and the CI scan.

    python -m ops.audit --env prod [--apps PATH] [--json] [--waivers FILE]
        rendered config of every host + repository checks + detect-secrets over the tree and
        git history (vs .secrets.baseline) [+ the monorepo rules with --apps]
    python -m ops.audit --ci [--json]
        what `make test` runs: the repository scans (tree + history vs the baseline) and
        pip-audit of requirements*.txt; no environment is rendered
    python -m ops.audit --update-baseline
        rescan the tree into .secrets.baseline (review labels kept); then review the new
        entries with `detect-secrets audit .secrets.baseline`

Exit 0: no blocking finding; 1: a non-waived high finding remains; 2: bad input (a broken
waiver file, an unknown option).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ops.audit import AuditReport, run_audit
from ops.audit import repository as repo_rules
from ops.audit.waivers import WAIVERS_FILE, apply_waivers, load_waivers
from ops.catalog import REPO_ROOT, ConfigError


def run_ci(root: Path, waivers: Path | None) -> AuditReport:
    """Repository secret scans (tree + history vs baseline) and the dependency audit.

    The tree's checks come first and take seconds; the history scan and pip-audit take
    minutes. When the tree already blocks, those are skipped (and said so): the run fails
    either way, and `make test` learns it before its long integration phase, not after.
    """
    from ops.audit import known_rules, rule_scope
    from ops.audit.deps import audit_dependencies

    path = waivers or root / WAIVERS_FILE
    loaded = load_waivers(path, WAIVERS_FILE if not waivers else str(path), known_rules())

    def waived(findings: list) -> list:
        import datetime as dt
        return apply_waivers(findings, loaded, dt.date.today(),
                             lambda rule: rule_scope(rule) in {"repo", "secrets", "deps",
                                                               "always"})

    report = AuditReport(env="ci")
    files: list[str] = []
    steps = {
        "repo": lambda: (files.extend(repo_rules.repo_files(root)) or [])
        + repo_rules.check_env_files(root, files) + repo_rules.check_data_secrets(root),
        "secrets-tree": lambda: repo_rules.check_tree_secrets(root, files),
        "secrets-history": lambda: repo_rules.check_history(root),
        "pip-audit": lambda: audit_dependencies(root),
    }
    quick = ("repo", "secrets-tree")
    for name, step in steps.items():
        if name not in quick and any(f.blocking for f in waived(list(report.findings))):
            report.skipped.append(f"{name}: the tree already has a blocking finding")
            continue
        start = time.perf_counter()
        report.findings += step()
        report.timings[name] = time.perf_counter() - start
    report.findings = waived(report.findings)
    report.sort()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.audit",
                                     description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--env", help="environment to audit (a group_data/<env>.py)")
    mode.add_argument("--ci", action="store_true", help="repository scans + pip-audit (CI)")
    mode.add_argument("--update-baseline", action="store_true",
                      help="rescan the tree into .secrets.baseline, keeping review labels")
    parser.add_argument("--apps", type=Path, help="a checkout of the Super-App monorepo")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--waivers", type=Path, help=f"waiver file (default: {WAIVERS_FILE})")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.update_baseline:
            pending = repo_rules.write_baseline(root, repo_rules.repo_files(root))
            print(f"wrote {repo_rules.BASELINE}: {pending} entr(y/ies) to review with "
                  f"`detect-secrets audit {repo_rules.BASELINE}`")
            return 0
        if args.ci:
            report = run_ci(root, args.waivers)
        else:
            report = run_audit(args.env, root, apps=args.apps, waivers=args.waivers,
                               secret_scan=True)
    except ConfigError as exc:
        print(f"audit failed: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(report.to_json())
    else:
        sys.stdout.write(report.format_table())
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items())
        print(f"timings: {timings}", file=sys.stderr)
    return 1 if report.blocking else 0


if __name__ == "__main__":
    sys.exit(main())
