"""What a dry run shows: per host, what would change and why, with unified diffs, secrets masked.

Pure: plans, rendered files, the current text of the host's non-secret files, and secret
*versions* in; report lines out. Secret-bearing files are never read from a host and never
diffed by value: their masked text comes from ops/preview/masking.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from ops.preview.masking import SecretLayout, SecretStatus, masked_text
from ops.render.files import RenderedFile
from ops.rollout.plan import HostPlan, Reason, ServiceChange, moved

CONTEXT_LINES = 2


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
    """The plan's reasons as a dry run shows them: a config or secret change spelled out."""
    out = []
    for reason in change.reasons:
        if reason == Reason.IMAGE:
            out.append(short_image(change.old_image, change.image))
        elif reason == Reason.CONFIG:
            detail = []
            if compose_diff:
                detail.append("config changed: " + ", ".join(compose_diff))
            for s in secrets_changed:
                detail.append(f"secret {s.ref.key} changed (vault {s.ref.path} "
                              f"v{s.old_version} -> v{s.new_version})")
            if env_file_differs and not secrets_changed:
                detail.append("env file changed")
            out += detail or [str(reason)]
        elif reason == Reason.DIGEST:
            out.append(moved(change))
        else:
            out.append(str(reason))
    if Reason.IMAGE in change.reasons:
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
    rollout order, once per release (as `ops.rollout.engine.roll_host` does)."""
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
    if plan.cluster_files:
        lines.append("    the database cluster's stage (before any host rolls): "
                     + ", ".join(f.path for f in plan.cluster_files))
    for image in sorted(plan.missing_images):
        lines.append(f"    pull {image}")
    if plan.slot_info_stale and plan.slot_info and not plan.services:
        lines.append(f"    write {plan.slot_info.path} (the slots and versions Prometheus "
                     "joins on: missing or out of date)")
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
