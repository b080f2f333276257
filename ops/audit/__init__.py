"""The static production audit (`make prod-audit`) and the deploy's preflight gate.

Public API::

    report = run_audit("prod")   # the preflight: rendered config + cheap repo checks (~0.2 s)
    report = run_audit("prod", secret_scan=True, apps=Path("../superapp"))  # what the CLI runs
    report.findings   # every Finding (rule, severity, where, message, fix, key, waived_by...)
    report.blocking   # non-waived high findings: the deploy refuses on any
    report.format_table(); report.to_json(); report.timings

Scopes (each timed in `report.timings`):
- `load`/`render`/`rendered`: load + validate catalog and group_data (a ConfigError becomes
  `config.invalid` findings naming file and key), render every host with placeholder secrets
  exactly as `make render` does, and check the rendered text (ops/audit/rendered.py);
- `repo`: `.env` files git would commit, literal secrets in group_data/ and inventories/;
- `secrets-tree`, `secrets-history` (only with `secret_scan=True`: seconds, not for the
  preflight): detect-secrets over the tree and every blob of `git log --all`, vs the baseline;
- `apps` (with `apps=PATH`): the Super-App monorepo rules (ops/audit/apps.py); with
  `secret_scan=True` also `apps-secrets-tree`, `apps-secrets-history`: detect-secrets over the
  monorepo's tracked files and its whole git history. Without `apps`, `report.apps` is
  "skipped" and the table and JSON say so; a path that is not a directory raises ConfigError.

Local relaxations: for an environment whose group_data lists `relaxations` (only `local` may),
a HIGH finding that a relaxation explains is downgraded to LOW and marked `relaxed_by`;
`RELAXED_RULES` says which (e.g. `standin-image` relaxes `rendered.image-pinned` for images
of the stand-in repository). Nothing else is downgraded, and prod/staging cannot relax
(the catalog loader refuses `relaxations` there).

Never prints or returns a secret value; never connects to a host or Vault.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

from ops.audit.findings import APPS_SKIPPED, AuditReport, Finding
from ops.audit.waivers import WAIVERS_FILE, apply_waivers, load_waivers
from ops.catalog import REPO_ROOT, ConfigError, Environment, load_environment

SCOPE_OF_PREFIX = {"rendered.": "rendered", "config.": "rendered", "repo.secret": "secrets",
                   "repo.private-key": "secrets", "repo.baseline": "secrets",
                   "repo.": "repo", "apps.secret-in-tree": "apps-secrets",
                   "apps.secret-in-history": "apps-secrets",
                   "apps.env-file-in-history": "apps-secrets", "apps.": "apps",
                   "deps.": "deps", "waiver.": "always",
                   # checked by the rollout's migration gate (ops/backup/freshness.py),
                   # never by the audit
                   "backup.": "migration-gate"}


def relaxed_rules(environment: Environment) -> dict[str, Callable[[Finding], bool]]:
    """relaxation name -> which findings it explains."""
    standin = environment.settings.get("standin_image") or {}
    repository = standin.get("repository") if isinstance(standin, dict) else None
    return {
        "standin-image": lambda f: (f.rule == "rendered.image-pinned" and bool(repository)
                                    and f"/{repository}:" in f.key),
        # Vault auth and transport are checked by the catalog loader; nothing rendered to relax.
        "vault-token-auth": lambda f: False,
        "vault-plain-http": lambda f: False,
        "registry-plain-http": lambda f: False,  # checked by the catalog loader
    }


def rule_scope(rule: str) -> str:
    for prefix, scope in SCOPE_OF_PREFIX.items():
        if rule.startswith(prefix):
            return scope
    return "always"


def known_rules() -> set[str]:
    from ops.audit.rendered import RULE_IDS
    return {*RULE_IDS, "config.invalid", "repo.env-file", "repo.data-secret", "repo.secret",
            "repo.private-key", "repo.secret-in-history", "repo.baseline-missing",
            "repo.baseline-unreviewed", "apps.layout", "apps.env-file",
            "apps.create-all-without-alembic", "apps.schema-unprovisioned",
            "apps.service-missing", "apps.deploy-template-hmac", "apps.secret-in-tree",
            "apps.secret-in-history", "apps.env-file-in-history", "deps.vulnerable",
            "deps.unaudited", "deps.audit-failed", "backup.freshness"}


def config_findings(error: ConfigError) -> list[Finding]:
    return [Finding("config.invalid", "high", problem.split(": ", 1)[0], problem,
                    "fix the named file and key (the catalog loader refuses it)",
                    key=problem) for problem in error.problems]


def run_audit(env_name: str, root: Path = REPO_ROOT, apps: Path | None = None,
              waivers: Path | None = None, *, secret_scan: bool = False, repo: bool = True,
              today: dt.date | None = None) -> AuditReport:
    """Audit one environment; see the module docstring for the scopes.

    `waivers` defaults to `<root>/audit-waivers.yml` (absent: no waivers). A broken waiver
    file raises ConfigError (naming file and key): the deploy must not guess.
    """
    from ops.audit import repository
    from ops.audit.rendered import audit_rendered
    from ops.render import PlaceholderSecrets, render_environment

    root = Path(root)
    if apps is not None:
        apps = Path(apps)
        if not apps.is_dir():
            why = "is not a directory" if apps.exists() else "does not exist"
            raise ConfigError([f"--apps {apps}: {why} (pass the Super-App monorepo checkout, "
                               "make prod-audit APPS=path)"])
    report = AuditReport(env=env_name,
                         apps=APPS_SKIPPED if apps is None else str(apps.resolve()))
    scopes = {"rendered", "always"}
    waiver_path = Path(waivers) if waivers else root / WAIVERS_FILE
    label = (str(waiver_path.relative_to(root)) if waiver_path.is_relative_to(root)
             else str(waiver_path))
    loaded_waivers = load_waivers(waiver_path, label, known_rules())

    def timed(name: str, fn: Callable[[], list[Finding]]) -> None:
        start = time.perf_counter()
        report.findings.extend(fn())
        report.timings[name] = time.perf_counter() - start

    environment = None
    start = time.perf_counter()
    try:
        environment = load_environment(env_name, root)
    except ConfigError as exc:
        report.findings += config_findings(exc)
    report.timings["load"] = time.perf_counter() - start
    if environment is not None:
        start = time.perf_counter()
        rendered = render_environment(environment, PlaceholderSecrets())
        report.timings["render"] = time.perf_counter() - start
        timed("rendered", lambda: audit_rendered(environment, rendered))
    if repo:
        scopes.add("repo")
        files: list[str] = []

        def repo_checks() -> list[Finding]:
            files.extend(repository.repo_files(root))
            return (repository.check_env_files(root, files)
                    + repository.check_data_secrets(root))
        timed("repo", repo_checks)
        if secret_scan:
            scopes.add("secrets")
            timed("secrets-tree", lambda: repository.check_tree_secrets(root, files))
            timed("secrets-history", lambda: repository.check_history(root))
    if apps is not None:
        from ops.audit import apps as apps_rules
        scopes.add("apps")
        timed("apps", lambda: apps_rules.audit_apps(apps, environment))
        if secret_scan:
            scopes.add("apps-secrets")
            timed("apps-secrets-tree", lambda: apps_rules.check_apps_tree_secrets(apps))
            timed("apps-secrets-history", lambda: apps_rules.check_apps_history(apps))

    if environment is not None and environment.settings.get("relaxations"):
        rules = relaxed_rules(environment)
        for i, f in enumerate(report.findings):
            for name in environment.settings["relaxations"]:
                if f.severity == "high" and rules.get(name, lambda f: False)(f):
                    report.findings[i] = f.with_(severity="low", relaxed_by=name)
                    break
    report.findings = apply_waivers(report.findings, loaded_waivers, today or dt.date.today(),
                                    lambda rule: rule_scope(rule) in scopes)
    report.sort()
    return report


__all__ = ["AuditReport", "Finding", "run_audit"]
