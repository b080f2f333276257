"""The read-only fleet tasks: `tasks/status.py` and `tasks/drift.py`, each a pyinfra `@deploy`.

Both only read: the host snapshot (`ops.host.state`, one command) plus, for status, the
containers' details (one command) and, on request, a service's logs. Hosts are prepared in
parallel; the last host to finish prints the whole table in rollout order and ends the run
(no operation is queued, so pyinfra has nothing to execute and asks nothing). Drift exits 1
when any row is found. Comparisons and tables are pure (`ops.fleet.drift`, `ops.fleet.status`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from ops.catalog import ConfigError, load_environment
from ops.catalog.model import Environment
from ops.console import format_table
from ops.dbha.hosts import status_lines
from ops.fleet.drift import Drift, format_drift, host_drift, moved_tags
from ops.fleet.logs import (
    FILE_MARK,
    SOURCE_RE,
    LogQueryError,
    days_between,
    format_record,
    merge,
    parse_since,
    parse_store_output,
    release_windows,
    select,
    sort_key,
    store_grep,
)
from ops.fleet.status import canary_lines, format_status, host_rows, unreachable_rows
from ops.host.commands import read_log_store
from ops.host.facts import ContainerDetails, ContainerLogs, SuperappHostState
from ops.host.remote import PyinfraRemote
from ops.host.state import HostState
from ops.images.registry import Registry, RegistryError
from ops.render import logs, render_host, service_content_hash
from ops.rollout.history import merged_releases, release_rows
from ops.rollout.ledger import last_release
from ops.rollout.plan import live_slots
from ops.schema.plan import pending_bootstrap
from ops.scope import current_scope
from ops.secrets.vault import VaultError
from ops.secrets.vault import fetch_secrets as vault_fetch

FOLLOW_INTERVAL = 2.0  # seconds between reads of the store with follow=1


class FleetError(PyinfraError):
    """One clear message (bad environment, Vault down...); exit 1."""


def _environment() -> Environment:
    name = host.data.get("env")
    try:
        return load_environment(name)
    except ConfigError as e:
        raise FleetError(str(e)) from None


def _collect(task: str, data: dict) -> dict[str, dict] | None:
    """Store this host's reads; return every host's once the last active host arrived."""
    expected = {h.name for h in ctx_state.get().inventory.get_active_hosts()}
    return current_scope().gather(task, host.name, data, expected)


def _unreachable() -> list[str]:
    return sorted(h.name for h in ctx_state.get().failed_hosts)


def _finish(code: int) -> None:
    # The run's work is done during preparation; ending here skips pyinfra's empty execute
    # phase and its confirmation prompt. SystemExit leaves the greenlet for pyinfra's main,
    # which still disconnects every host.
    raise SystemExit(code)


@deploy("Show the fleet's status")
def show_status() -> None:
    """Table of host, service, version, digest, health, since, last release; `--data
    service=<name>` narrows it, `--data logs=<service>` adds that service's last log lines."""
    environment = _environment()
    state = host.get_fact(SuperappHostState)
    details = host.get_fact(ContainerDetails)
    logs = {}
    # `--data logs=<service>`; without it, host.data.logs is group_data's central-logs
    # settings (a mapping), which asks for nothing
    wanted = host.data.get("logs")
    wanted = wanted if isinstance(wanted, str) else None
    if wanted:
        if wanted not in environment.services:
            raise FleetError(f"--data logs={wanted}: no such service in the catalog")
        service = environment.services[wanted]
        slot = (state.services.get(wanted) or {}).get("slot")
        names = tuple(sorted(n for n, d in details.items()
                             if d.labels.get("superapp.service") == wanted
                             and (slot is None or d.labels.get("superapp.slot") == slot)))
        if names and service in environment.services_on(host.name):
            logs = host.get_fact(ContainerLogs, containers=names,
                                 lines=int(host.data.get("lines", 30)))
    only = host.data.get("service")
    if only and only not in environment.services:
        raise FleetError(f"--data service={only}: no such service in the catalog")
    hosts = _collect("status", {"state": state, "details": details, "logs": logs})
    if hosts is None:
        return
    rows = []
    for h in environment.hosts:
        if h.name in hosts:
            rows += host_rows(environment, h.name, hosts[h.name]["state"],
                              hosts[h.name]["details"], only)
        elif h.name in _unreachable():
            rows += unreachable_rows(h.name)
    print(format_status(rows), flush=True)
    for line in canary_lines({h.name: hosts[h.name]["state"] for h in environment.hosts
                              if h.name in hosts}):
        print(f"--> {line}", flush=True)
    if environment.db_ha is not None:
        active = {h.name: h for h in ctx_state.get().inventory.get_active_hosts()}
        for line in status_lines(environment.db_ha, {
                m.name: PyinfraRemote(active[m.name]) for m in environment.db_ha.members
                if m.name in active}):
            print(f"--> {line}", flush=True)
    pending = pending_bootstrap(environment, [e for d in hosts.values() for e in d["state"].ledger])
    if pending:
        print(f"--> waiting for their schema bootstrap (tasks/bootstrap_schema.py --data "
              f"service=<name>): {', '.join(pending)}", flush=True)
    for h in environment.hosts:
        for container, lines in (hosts.get(h.name, {}).get("logs") or {}).items():
            print(f"\n--> {h.name} {container}: last {len(lines)} log line(s)", flush=True)
            print("\n".join(f"    {line}" for line in lines), flush=True)
    _finish(0)


@deploy("Compare each host with its last release")
def detect_drift() -> None:
    """One row per drift (files, cron jobs, containers, images, records); exit 1 when any."""
    environment = _environment()
    state = host.get_fact(SuperappHostState)
    hosts = _collect("drift", {"state": state})
    if hosts is None:
        return
    states: dict[str, HostState] = {name: d["state"] for name, d in hosts.items()}
    rows = drift_rows(environment, states)
    rows += [Drift(name, "host", "-", "unreachable: not compared") for name in _unreachable()]
    release = last_release([e for s in states.values() for e in s.ledger])
    if release:
        print(f"--> Drift of {environment.name} against release {release['release']} "
              f"(commit {release.get('commit')}, {release.get('finished')})", flush=True)
    print(format_drift(rows) if rows else "--> no drift: every host matches its last release",
          flush=True)
    _finish(1 if rows else 0)


@deploy("Show the release history")
def show_releases() -> None:
    """Every release of the environment, merged from all hosts' ledgers, oldest first (one
    read per host): id, when, who, commit, kind, result per host, services changed.
    `--data last=<n>` shows only the newest n."""
    environment = _environment()
    state = host.get_fact(SuperappHostState)
    hosts = _collect("releases", {"state": state})
    if hosts is None:
        return
    releases = merged_releases(e for d in hosts.values() for e in d["state"].ledger)
    last = int(host.data.get("last") or 0)
    rows = release_rows(releases[-last:] if last else releases)
    print(f"--> Releases of {environment.name}, from the ledgers of "
          f"{', '.join(environment.in_rollout_order(hosts))}"
          + (f" (unreachable, not read: {', '.join(_unreachable())})" if _unreachable() else ""),
          flush=True)
    print(format_table(("release", "finished", "by", "commit", "kind", "result", "hosts",
                        "services changed"), rows) if rows else "no release recorded yet",
          flush=True)
    _finish(0)


@deploy("Read the central logs")
def show_logs() -> None:
    """A service's lines from the central log store (monitoring host), every host merged in
    time order (the last host to be read does the reading): `--data service=<name>`
    (required), `since=15m` (default 1h), `grep=<text>`, `release=<id>` (the containers that
    release started), `follow=1` (keep printing)."""
    environment = _environment()
    store = environment.monitoring_host
    query = log_query(environment)
    # a --limit run records its release in the ledgers of its hosts only: merge them all
    ledger = host.get_fact(SuperappHostState).ledger if query["release"] else []
    hosts = _collect("logs", {"ledger": ledger})
    if hosts is None:
        return
    if store.name not in hosts:
        raise FleetError(f"{store.name} holds the log store and is unreachable")
    windows = None
    if query["release"]:
        try:
            windows = release_windows(
                merged_releases(e for d in hosts.values() for e in d["ledger"]),
                query["release"])
        except LogQueryError as e:
            raise FleetError(str(e)) from None
    remote = PyinfraRemote(ctx_state.get().inventory.get_host(store.name))
    now = datetime.now(UTC)
    since = now - query["since"]
    offsets = {f"{day}.jsonl": 0 for day in days_between(since, now)}
    service_dir = f"{logs.STORE_DIR}/{query['service']}"
    seen: set = set()
    print(f"--> {query['service']} on {environment.name} since {since:%Y-%m-%dT%H:%M:%SZ}"
          + (f", release {query['release']}" if query["release"] else "")
          + (f", lines containing {query['grep']!r}" if query["grep"] else "")
          + f" (store on {store.name})", flush=True)
    while True:
        ok, out, err = remote.run(read_log_store(service_dir, offsets,
                                                 store_grep(query["grep"]), FILE_MARK),
                                  timeout=120)
        if not ok:
            raise FleetError(f"{store.name}: reading {service_dir} failed: "
                             f"{(err or out).strip()[-200:]}")
        try:
            records, sizes = parse_store_output(out.splitlines())
        except LogQueryError as e:
            raise FleetError(f"--data service={query['service']}: {e}") from None
        offsets.update(sizes)
        for r in merge(select(records, sort_key(since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
                              windows, query["grep"]), seen):
            print(format_record(r), flush=True)
        if not query["follow"]:
            _finish(0)
        time.sleep(FOLLOW_INTERVAL)
        today = f"{datetime.now(UTC):%Y-%m-%d}.jsonl"
        offsets.setdefault(today, 0)


def log_query(environment: Environment) -> dict:
    service = str(host.data.get("service") or "")
    if not SOURCE_RE.fullmatch(service):
        raise FleetError(f"--data service={service or '<missing>'}: name a catalog service or "
                         f"another source of the store (traefik, postgres, backup...)")
    try:
        since = parse_since(str(host.data.get("since") or "1h"))
    except LogQueryError as e:
        raise FleetError(str(e)) from None
    return {"service": service, "since": since, "grep": str(host.data.get("grep") or ""),
            "release": str(host.data.get("release") or ""),
            "follow": str(host.data.get("follow") or "") in ("1", "true", "yes")}


def drift_rows(environment: Environment, states: dict[str, HostState]) -> list[Drift]:
    release = last_release([e for s in states.values() for e in s.ledger])
    order = environment.in_rollout_order(states)
    if release is None:
        return [Drift(name, "release", "-", "no successful release in the ledger")
                for name in order]
    target = environment.with_images(release.get("images") or {},
                                     release.get("image_digests") or {})
    try:
        secrets = vault_fetch(target, versions=release.get("secret_versions") or {})
    except VaultError as e:
        raise FleetError(f"cannot render release {release['release']} to compare: {e}") \
            from None
    rows = []
    for name in order:
        state = states[name]
        files = render_host(target, name, secrets, live_slots(target, name, state))
        hashes = {s.name: service_content_hash(target, s.name, name, secrets)
                  for s in target.services_on(name)}
        rows += host_drift(target, name, state, files, release, hashes)
    return rows + tag_rows(environment, release)


def tag_rows(environment: Environment, release: dict) -> list[Drift]:
    """Tags of the release that the registry now resolves to other digests."""
    refs = set((release.get("images") or {}).values())
    if not refs or not release.get("image_digests"):
        return []
    try:
        now = Registry.from_settings(environment.settings).digests(refs)
    except RegistryError as e:
        return [Drift("registry", "tag", "-", f"not compared: {e}")]
    return moved_tags(release, now)
