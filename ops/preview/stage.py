"""The dry run (`pyinfra inventories/<env>.py deploy.py --dry [--diff]`): what would change.

Called by `ops.rollout.stages.plan_changes` for each host in dry/diff mode. Per host it reads
the current text of the non-secret files that would change (ONE extra command, `FileContents`);
secret files are never read. Once every host is planned, the last one prints the whole report
in rollout order (hosts are prepared in parallel), built by `ops.preview.report` and
`ops.preview.masking` (pure).

Reads only: nothing here writes to a host. Vault is read a second time only when a secret
path moved since the last release, to tell which keys changed (values compared in memory,
never printed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyinfra import config, host
from pyinfra.context import ctx_state

from ops.catalog.model import Environment
from ops.host.facts import FileContents
from ops.host.state import HostState
from ops.preview.masking import (
    MarkerSecrets,
    secret_layout,
    secret_statuses,
    value_changed,
)
from ops.preview.report import (
    FileDiff,
    HostPreview,
    compose_differences,
    format_host,
    format_summary,
    plain_file_diff,
    plan_migrations,
    secret_file_diff,
    service_reasons,
)
from ops.render import render_host
from ops.render.files import RenderedFile
from ops.render.secrets import SecretValues
from ops.rollout.ledger import last_release
from ops.rollout.plan import HostPlan, file_changed, live_slots
from ops.scope import current_scope
from ops.secrets.vault import VaultError, VaultSettings, open_session, read_refs

if TYPE_CHECKING:
    from ops.rollout.run import Run

MARKER_B = "zzvaultmarkerb"


def dry_run_mode() -> tuple[bool, bool]:
    """(dry, diff). pyinfra 3.10 keeps `--dry` only as a local of its CLI (`pyinfra_cli/cli.py`
    `_main`: no state or config attribute), so argv is where it can be read; `--diff` sets
    `config.DIFF`."""
    dry = "--dry" in sys.argv[1:]
    return dry, bool(getattr(config, "DIFF", False))


@dataclass
class _Planned:
    plan: HostPlan
    state: HostState
    contents: dict[str, str | None]
    live_render: dict[str, RenderedFile]


def files_to_write(plan: HostPlan, state: HostState) -> list[RenderedFile]:
    """Every file the rollout would create or change on the host (identical ones excluded)."""
    files = [*plan.infra_files, *plan.cluster_files]
    for c in plan.services:
        files += c.files
        files.append(c.route)
    seen, out = set(), []
    for f in files:
        if f.path not in seen and file_changed(f, state):
            seen.add(f.path)
            out.append(f)
    return sorted(out, key=lambda f: f.path)


def preview_host(run: Run, plan: HostPlan, diff: bool) -> None:
    """Read this host's current non-secret files; print the whole report after the last host."""
    environment: Environment = run.environment
    state = run.states[plan.host]
    writes = files_to_write(plan, state)
    paths = tuple(f.path for f in writes if not f.secret and f.path in state.files)
    secret_paths = tuple(f.path for f in writes if f.secret)
    contents = host.get_fact(FileContents, paths=paths, secret_paths=secret_paths) \
        if paths else {}
    live = live_slots(environment, plan.host, state)
    live_render = {f.path: f for f in render_host(environment, plan.host, run.secrets, live)}
    expected = {h.name for h in ctx_state.get().inventory.get_active_hosts()}
    planned = current_scope().gather("preview", plan.host,
                                     _Planned(plan, state, contents, live_render), expected)
    if planned is None:
        return  # another host completes the set and prints the report
    lines = build_report(run, planned, diff)
    print("\n".join(lines), flush=True)


def read_previous(environment: Environment, old_versions: dict[str, int],
                  new_versions: dict[str, int]) -> SecretValues | None:
    """The last release's values of every path whose KV version moved (None if unreadable)."""
    moved = {p for p, v in new_versions.items() if old_versions.get(p) not in (None, v)}
    if not moved:
        return None
    refs = [r for r in environment.all_secret_refs() if r.path in moved]
    try:
        with open_session(VaultSettings.from_environment(environment)) as session:
            return read_refs(session, refs, {p: old_versions[p] for p in moved})
    except VaultError:
        return None


def build_report(run: Run, planned: dict[str, _Planned], diff: bool) -> list[str]:
    environment: Environment = run.environment
    order = run.ordered(planned)
    entries = [e for p in planned.values() for e in p.state.ledger]
    release = last_release(entries)
    old_versions = dict((release or {}).get("secret_versions") or {})
    new_versions = run.secrets.versions()
    previous = read_previous(environment, old_versions, new_versions)
    statuses = secret_statuses(environment.all_secret_refs(), old_versions, new_versions,
                               lambda ref: value_changed(previous, run.secrets, ref))
    migrated = {(name, rec.get("image")) for p in planned.values()
                for name, rec in p.state.services.items()}
    migrations = plan_migrations([planned[h].plan for h in order], migrated)
    commands = {s.name: " ".join(environment.migrate_command(s) or [])
                for s in environment.services.values()}

    previews = []
    for name in order:
        p = planned[name]
        previews.append(preview_of(environment, run.secrets, p, statuses, release, diff,
                                   migrations.get(name, {})))
    lines = [f"--> Dry run of {environment.name}: nothing below is changed. Rollout order: "
             + " -> ".join(order)]
    if release:
        lines.append(f"    compared with release {release['release']} of {release.get('finished')}"
                     f" (commit {release.get('commit')}, by {release.get('user')})")
    for i, preview in enumerate(previews, 1):
        lines += format_host(preview, i, len(order), commands)
    lines += format_summary(environment.name, previews, len(order))
    return lines


def preview_of(environment: Environment, secrets: SecretValues, p: _Planned,
               statuses: dict, release: dict | None, diff: bool,
               migrations: dict[str, str]) -> HostPreview:
    plan, state = p.plan, p.state
    writes = files_to_write(plan, state)
    layouts = {}
    if any(f.secret for f in writes):
        a, b = MarkerSecrets(secrets), MarkerSecrets(secrets, MARKER_B)
        render_a = {f.path: f for f in render_host(environment, plan.host, a, plan.slots)}
        render_b = {f.path: f for f in render_host(environment, plan.host, b, plan.slots)}
        for f in writes:
            if f.secret:
                layouts[f.path] = secret_layout(render_a[f.path].content,
                                                render_b[f.path].content, a, b)
    preview = HostPreview(plan, migrations=migrations,
                          changed_files=[(f.path, f.path not in state.files, f.secret)
                                         for f in writes])
    for c in plan.services:
        compose = next((f for f in c.files if f.path.endswith(".yml")), None)
        on_host = p.contents.get(compose.path) if compose else None
        live = p.live_render.get(compose.path) if compose else None
        compose_diff = (compose_differences(on_host, live.content)
                        if on_host is not None and live is not None else None)
        service = environment.services[c.service]
        changed = [statuses[str(r)] for r in environment.secret_refs(service)
                   if str(r) in statuses and statuses[str(r)].is_changed]
        env_differs = any(f.secret and f in writes for f in c.files)
        preview.reasons[c.service] = service_reasons(c, compose_diff, changed, env_differs)
    if diff:
        diffs: list[FileDiff] = []
        for f in writes:
            on_host = f.path in state.files
            if f.secret:
                diffs.append(secret_file_diff(f.path, plan.host, on_host, layouts[f.path],
                                              statuses, (release or {}).get("release")))
            else:
                diffs.append(plain_file_diff(f, plan.host, on_host, p.contents.get(f.path)))
        preview.diffs = diffs
    return preview
