"""Host-by-host rollout: executes the plans made by `ops.plan`, one host at a time.

pyinfra runs an operation on every host at once; a rollout must do the opposite (one host, in a
fixed order, stop at the first failure, touch nothing after it). So the whole rollout is one
callback run once on the controller, driving each host's SSH connection in turn through the
`Remote` protocol below. Commands come from `ops.commands` (pure builders); no secret value is
ever part of a command: secret files are uploaded over SFTP into 0700 directories.

Per host: lock -> directories -> pull every image (nothing restarted yet) -> in-place infra
files -> migrations (once per release) -> for changed services: start the new slot beside the
old one, wait healthy, switch Traefik's server list atomically, wait until Traefik routes to
it, stop the old slot (which drains) -> record. If a new slot never becomes healthy, the new
slots of that host are removed, traffic never moved, and the rollout stops there.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import secrets as pysecrets
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import gevent

from ops import commands as cmd
from ops.backup import (
    all_databases,
    backup_freshness_problems,
    first_backups_command,
    load_freshness_waivers,
    read_backup_metrics_command,
)
from ops.catalog import REPO_ROOT
from ops.catalog.model import Environment
from ops.hoststate import LEDGER_PATH, LOCK_PATH, SERVICE_STATE_DIR
from ops.plan import HostPlan, ServiceChange
from ops.render.compose import SINGLETON_PROFILE
from ops.render.files import RenderedFile

TRAEFIK_CONTAINER = "traefik"
TRAEFIK_METRICS_URL = "http://127.0.0.1:8082/metrics"


class RolloutError(Exception):
    """A failure that stops the rollout; the message names host, service and why."""


class Interrupted(BaseException):  # noqa: N818 - not an error: the operator pressed Ctrl-C
    """Ctrl-C during the rollout: undo the host in progress, release the lock, stop."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT into `Interrupted` inside the rollout's greenlet.

    pyinfra's own handler exits 0 at once; a rollout interrupted mid-swap must instead put the
    host back, release the lock and exit non-zero.
    """
    me = gevent.getcurrent()

    def handler(signum, frame) -> None:  # noqa: ARG001
        gevent.kill(me, Interrupted)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Remote(Protocol):
    name: str

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]: ...

    def put(self, content: bytes, path: str) -> bool: ...


class PyinfraRemote:
    """A `Remote` over a pyinfra host's (already open) SSH connection."""

    def __init__(self, host) -> None:
        self.host = host
        self.name = host.name

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        kwargs = {"_timeout": timeout} if timeout else {}
        try:
            ok, out = self.host.run_shell_command(command, **kwargs)
        except Exception as e:  # noqa: BLE001 - a lost connection surfaces in many types
            return False, "", f"connection to {self.name} failed: {type(e).__name__}: {e}"
        return ok, out.stdout, out.stderr

    def put(self, content: bytes, path: str) -> bool:
        return self.host.put_file(io.BytesIO(content), path)


def say(host: str, message: str) -> None:
    print(f"    [{host}] {message}", flush=True)


@dataclass
class HostResult:
    host: str
    changed: list[str] = field(default_factory=list)
    result: str = "unchanged"
    seconds: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # service -> image it runs after


@dataclass
class Release:
    """What goes into the ledger: who, when, what (never a secret value)."""

    env: str
    commit: str
    user: str = field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}")
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                    + "-" + pysecrets.token_hex(3))
    secret_versions: dict[str, int] = field(default_factory=dict)
    kind: str = "deploy"  # deploy | rollback | rotate
    rolled_back_to: str | None = None


# ---------------------------------------------------------------------------------------------
# steps on one host
# ---------------------------------------------------------------------------------------------

def must(remote: Remote, command: str, what: str, timeout: int | None = None) -> str:
    if not command:
        return ""
    ok, out, err = remote.run(command, timeout=timeout)
    if not ok:
        detail = "\n".join(x for x in (out.strip(), err.strip()) if x)
        raise RolloutError(f"{remote.name}: {what} failed:\n{detail}")
    return out


def upload(remote: Remote, files: Sequence[RenderedFile]) -> None:
    """SFTP each file to a temp name beside its target, then chmod/chown/mv in one command."""
    parents = sorted({f.path.rsplit("/", 1)[0] for f in files})
    must(remote, cmd.sh("mkdir", "-p", *parents), "creating directories")
    moves = []
    for f in files:
        tmp = f"{f.path}.tmp-{pysecrets.token_hex(4)}"
        try:
            ok = remote.put(f.content.encode(), tmp)
        except OSError as e:  # SFTP errors carry paths only, never the content
            raise RolloutError(f"{remote.name}: upload of {f.path} failed: {e}") from None
        if not ok:
            raise RolloutError(f"{remote.name}: upload of {f.path} failed")
        moves.append(cmd.install_uploaded(tmp, f.path, f.mode, f.owner))
    must(remote, cmd.chain(*moves), f"installing {len(files)} file(s)")


def apply_infra(remote: Remote, plan: HostPlan, environment: Environment) -> None:
    if not plan.infra_files:
        return
    say(remote.name, f"updating {len(plan.infra_files)} config file(s): "
                     + ", ".join(plan.infra_units))
    upload(remote, plan.infra_files)
    actions = {
        "edge": cmd.compose_up("/opt/superapp/compose/edge.yml"),
        "data": cmd.compose_up("/opt/superapp/compose/data.yml"),
        "monitoring": cmd.compose_up("/opt/superapp/compose/monitoring.yml"),
        "prometheus": cmd.signal_container("prometheus", "HUP"),
        "alertmanager": cmd.signal_container("alertmanager", "HUP"),
    }
    # backup: nothing to restart (cron reads /etc/cron.d); the first backups run at the end
    # of the host's rollout, once the databases have their schema (see roll_host).
    changed_paths = {f.path for f in plan.infra_files}
    for unit in plan.infra_units:
        command = actions.get(unit)
        if unit == "edge" and "/opt/superapp/traefik/traefik.yml" in changed_paths:
            # Traefik reads its static config only at start.
            command = cmd.compose_up("/opt/superapp/compose/edge.yml", force_recreate=True)
        if unit in ("prometheus", "alertmanager") and "monitoring" in plan.infra_units:
            continue  # just (re)created with the new files
        if command:
            must(remote, command, f"applying {unit}", timeout=300)


def stage_service_files(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Upload the new compose/env files, keeping the live ones as `.prev` until the swap ends.

    The running containers do not read these files again; the copies let a failed swap put
    the host back exactly as it was.
    """
    paths = [f.path for c in changes for f in (*c.files, c.route)]
    must(remote, cmd.backup_files(paths), "keeping the current service files")
    for c in changes:
        upload(remote, c.files)


def start_new_slots(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    ups = [cmd.compose_up(compose_file(c)) for c in changes]
    must(remote, cmd.chain(*ups), "starting new containers", timeout=600)


def compose_file(c: ServiceChange) -> str:
    return next(f.path for f in c.files if f.path.endswith(".yml"))


def has_singleton(c: ServiceChange) -> bool:
    return any(f'profiles: ["{SINGLETON_PROFILE}"]' in f.content
               for f in c.files if f.path.endswith(".yml"))


def undo_new_slots(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Remove the new containers and put the previous files back: the host is as it was."""
    downs = [cmd.compose_down(c.new_project, timeout=10) for c in changes]
    remote.run(" ; ".join(downs), timeout=300)
    remote.run(cmd.restore_files([f.path for c in changes for f in (*c.files, c.route)]))


def wait_healthy(remote: Remote, environment: Environment,
                 changes: Sequence[ServiceChange]) -> None:
    targets = {}
    for c in changes:
        service = environment.services[c.service]
        targets[service.container_name(c.new_slot)] = (
            f"http://127.0.0.1:{service.port}{service.health_path}")
    timeout = max(environment.services[c.service].health_timeout_seconds for c in changes)
    ok, out, err = remote.run(cmd.wait_healthy(targets, timeout), timeout=timeout + 60)
    if ok:
        return
    failed = [line.split()[1] for line in out.splitlines() if line.startswith("fail ")]
    names = failed or list(targets)
    logs = []
    for name in names[:3]:
        _, tail, _ = remote.run(cmd.container_logs_tail(name, 20))
        logs.append(f"--- last log lines of {name} ---\n{tail.strip()}")
    services = ", ".join(c.service for c in changes
                         if environment.services[c.service].container_name(c.new_slot) in names)
    raise RolloutError(
        f"{remote.name}: {services or 'a service'} did not become healthy within {timeout}s; "
        "traffic stays on the running version and the new containers were removed.\n"
        + "\n".join(logs))


def switch_traffic(remote: Remote, changes: Sequence[ServiceChange]) -> None:
    """Point each service's Traefik file at its new slot; return once Traefik has reloaded."""
    count = must(remote, cmd.traefik_reloads(TRAEFIK_CONTAINER, TRAEFIK_METRICS_URL),
                 "reading Traefik's reload count").strip()
    before = int(count or 0)
    upload(remote, [c.route for c in changes])
    if not any(c.route_changed for c in changes):
        return  # Traefik already routes there (a rerun after an interrupted swap)
    must(remote, cmd.wait_traefik_reload(TRAEFIK_CONTAINER, TRAEFIK_METRICS_URL, before),
         "waiting for Traefik to route to the new containers", timeout=120)


def stop_old_slots(remote: Remote, environment: Environment,
                   changes: Sequence[ServiceChange]) -> None:
    downs = [cmd.compose_down(c.old_project) for c in changes if c.old_project]
    if downs:
        # In parallel: each container gets SIGTERM and its stop_grace_period to drain.
        must(remote, " & ".join(downs) + " ; wait", "stopping the previous containers",
             timeout=600)
    singles = [cmd.compose_up(compose_file(c), profiles=[SINGLETON_PROFILE])
               for c in changes if has_singleton(c)]
    if singles:
        must(remote, cmd.chain(*singles), "starting singleton sidecars", timeout=300)
    must(remote, cmd.remove_files(f"{f.path}.prev" for c in changes for f in (*c.files, c.route)),
         "removing the previous files")


def record_services(remote: Remote, changes: Sequence[ServiceChange],
                    digests: dict[str, str], release: Release) -> None:
    writes = []
    for c in changes:
        writes.append(cmd.write_json_file(f"{SERVICE_STATE_DIR}/{c.service}.json", {
            "service": c.service, "slot": c.new_slot, "image": c.image,
            "digest": digests.get(c.image, ""), "hash": c.config_hash, "release": release.id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }))
    must(remote, cmd.chain(cmd.sh("mkdir", "-p", SERVICE_STATE_DIR), *writes),
         "recording the services' state")


def run_migrations(remote: Remote, environment: Environment, change: ServiceChange) -> None:
    service = environment.services[change.service]
    say(remote.name, f"{change.service}: running migrations once for {change.image}")
    command = cmd.compose_run(compose_file(change), service.name,
                              environment.migrate_command(service) or [],
                              env={"AUTO_CREATE_SCHEMA": "false"})
    out = must(remote, command, f"migration of {change.service}", timeout=900)
    for line in out.strip().splitlines()[-10:]:
        say(remote.name, f"  migrate: {line}")


def pull(remote: Remote, plan: HostPlan) -> dict[str, str]:
    """Pull what the host lacks (before anything restarts); return every image's digest."""
    if plan.missing_images:
        say(remote.name, f"pulling {len(plan.missing_images)} image(s)")
        must(remote, cmd.pull_images(plan.missing_images), "pulling images", timeout=1800)
    out = must(remote, cmd.image_digests(plan.images), "reading image digests")
    digests = {}
    for line in out.splitlines():
        ref, _, digest = line.partition(" ")
        if "@" in digest:
            digests[ref] = digest.split("@", 1)[1]
    return digests


def check_backup_freshness(db_remote: Remote, environment: Environment,
                           change: ServiceChange) -> None:
    """In prod, refuse to migrate a database whose last good backup is too old (issue 7)."""
    database = environment.services[change.service].database
    if environment.name != "prod" or not database:
        return
    metrics = must(db_remote, read_backup_metrics_command(), "reading backup metrics")
    problems = backup_freshness_problems(
        environment, [database], metrics, datetime.now(UTC),
        load_freshness_waivers(REPO_ROOT / "audit-waivers.yml"))
    if problems:
        raise RolloutError(f"{db_remote.name}: refusing to migrate {change.service}: "
                           + "; ".join(problems))


def roll_host(remote: Remote, environment: Environment, plan: HostPlan, release: Release,
              migrated: set[tuple[str, str]], db_remote: Remote | None = None) -> HostResult:
    t0 = time.monotonic()
    result = HostResult(plan.host, images=dict(plan.images_after))
    must(remote, cmd.make_dirs([*plan.dirs, ("/opt/superapp/compose", 0o755, 0),
                                ("/opt/superapp/traefik/dynamic", 0o755, 0),
                                (SERVICE_STATE_DIR, 0o755, 0)]), "creating directories")
    if plan.leftover_containers or plan.leftover_files:
        say(remote.name, "removing what an interrupted run left: "
                         + ", ".join(plan.leftover_containers + plan.leftover_files))
        must(remote, cmd.chain(
            cmd.sh("docker", "rm", "-f", *plan.leftover_containers)
            if plan.leftover_containers else "",
            cmd.remove_files(plan.leftover_files)), "removing leftovers")
    result.digests = pull(remote, plan)
    apply_infra(remote, plan, environment)
    changes = plan.services
    if changes:
        say(remote.name, "swapping " + ", ".join(
            f"{c.service} ({'; '.join(c.reasons)})" for c in changes))
        stage_service_files(remote, changes)
        try:
            for c in changes:
                if c.migrate and (c.service, c.image) not in migrated:
                    check_backup_freshness(db_remote or remote, environment, c)
                    run_migrations(remote, environment, c)
                    migrated.add((c.service, c.image))
            start_new_slots(remote, changes)
            wait_healthy(remote, environment, changes)
            switch_traffic(remote, changes)
        except (RolloutError, Interrupted):
            undo_new_slots(remote, changes)
            raise
        stop_old_slots(remote, environment, changes)
        record_services(remote, changes, result.digests, release)
    if "backup" in plan.infra_units:
        out = must(remote, first_backups_command(all_databases(environment)), "first backups",
                   timeout=900)
        for line in out.strip().splitlines()[-3:]:
            say(remote.name, f"  backup: {line}")
    result.changed = [c.service for c in changes] + plan.infra_units + (
        ["leftovers"] if plan.leftover_containers or plan.leftover_files else [])
    result.result = "changed" if (result.changed or plan.missing_images) else "unchanged"
    result.seconds = time.monotonic() - t0
    return result


# ---------------------------------------------------------------------------------------------
# the whole rollout
# ---------------------------------------------------------------------------------------------

@dataclass
class Lock:
    owner: str
    token: str
    expires: str


def acquire_locks(remotes: Sequence[Remote], env: str, ttl_minutes: int,
                  break_lock: bool) -> Lock:
    now = datetime.now(UTC)
    lock = Lock(owner=f"{getpass.getuser()}@{socket.gethostname()}",
                token=pysecrets.token_hex(8),
                expires=(now + timedelta(minutes=ttl_minutes)).isoformat(timespec="seconds"))
    record = {"env": env, "owner": lock.owner, "token": lock.token,
              "started": now.isoformat(timespec="seconds"), "expires": lock.expires}
    taken: list[Remote] = []
    for remote in remotes:
        out = must(remote, cmd.acquire_lock(LOCK_PATH, record), "taking the deploy lock")
        if out.startswith("acquired"):
            taken.append(remote)
            continue
        holder = _json_or_empty(out.partition("\n")[2])
        expired = holder.get("expires", "") < now.isoformat(timespec="seconds")
        if break_lock and expired:
            say(remote.name, f"breaking expired lock of {holder.get('owner')} "
                             f"(expired {holder.get('expires')})")
            must(remote, cmd.write_json_file(LEDGER_PATH, {
                "kind": "lock-broken", "by": lock.owner, "holder": holder.get("owner"),
                "at": now.isoformat(timespec="seconds")}, append=True), "recording the break")
            must(remote, cmd.chain(cmd.sh("rm", "-f", LOCK_PATH),
                                   cmd.acquire_lock(LOCK_PATH, record)), "taking the lock")
            taken.append(remote)
            continue
        release_locks(taken, lock)
        hint = (" It has expired: pass --data break_lock=true to break it." if expired
                else f" It expires at {holder.get('expires')}.")
        raise RolloutError(
            f"{remote.name}: another deploy holds the {env} lock: {holder.get('owner', '?')} "
            f"since {holder.get('started', '?')}.{hint}")
    return lock


def release_locks(remotes: Sequence[Remote], lock: Lock) -> None:
    for remote in remotes:
        remote.run(cmd.release_lock(LOCK_PATH, lock.token))


def _json_or_empty(text: str) -> dict:
    try:
        value = json.loads(text.strip().splitlines()[0])
    except (ValueError, IndexError):
        return {}
    return value if isinstance(value, dict) else {}


def rollout(environment: Environment, plans: Sequence[HostPlan], remotes: Sequence[Remote],
            release: Release, break_lock: bool = False,
            migrated: set[tuple[str, str]] | None = None,
            on_host_done: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Roll `plans` (already in rollout order) host by host; raise at the first failure.

    `migrated`: (service, image) pairs whose migrations already ran in this environment (some
    host already runs that image), so a release migrates once, not once per host or per run.
    """
    results: list[HostResult] = []
    by_name = {r.name: r for r in remotes}
    # The environment's lock lives on its first host in rollout order (the primary, as Kamal
    # does): every deploy connects to it first, and an unreachable later host cannot strand it.
    primary = [remotes[0]]
    lock = acquire_locks(primary, environment.name,
                         environment.settings["deploy_lock_ttl_minutes"], break_lock)
    migrated = set(migrated or ())
    try:
        for plan in plans:
            remote = by_name[plan.host]
            print(f"--> {plan.host}: " + (
                "nothing to change" if not plan.changed else
                f"{len(plan.services)} service(s) to swap, {len(plan.infra_files)} file(s)"),
                flush=True)
            try:
                with interruptible():
                    result = roll_host(remote, environment, plan, release, migrated,
                                       by_name.get(environment.db_host.name, remote))
            except Interrupted:
                results.append(HostResult(plan.host, result="INTERRUPTED"))
                record_ledger(remotes, results, release, "interrupted")
                raise RolloutError(
                    f"interrupted (Ctrl-C) while rolling {plan.host}: its changes were undone; "
                    + (f"already on the new release: {', '.join(r.host for r in results[:-1])}"
                       if len(results) > 1 else "no host changed")) from None
            except RolloutError as e:
                done = [r.host for r in results if r.result == "changed"]
                failed = HostResult(plan.host, result="FAILED")
                results.append(failed)
                record_ledger(remotes, results, release, "failed")
                rest = [p.host for p in plans[len(results):]]
                raise RolloutError(
                    f"{e}\nRollout stopped at {plan.host}. "
                    + (f"Already on the new release: {', '.join(done)}. " if done else "")
                    + (f"Not touched: {', '.join(rest)}." if rest else "")) from None
            results.append(result)
            if on_host_done:
                on_host_done(result)
        if any(r.result == "changed" for r in results):
            record_ledger(remotes, results, release, "success")
    finally:
        release_locks(primary, lock)
    return results


def record_ledger(remotes: Sequence[Remote], results: Sequence[HostResult], release: Release,
                  outcome: str) -> None:
    """Append the release to the ledger of every host it touched (append-only JSON lines).

    Holds what a rollback needs to be exact: each service's image (and its registry digest)
    and the KV version of every secret path read; never a secret value.
    """
    touched = {r.host for r in results}
    images: dict[str, str] = {}
    for r in results:
        if r.result != "FAILED":
            images.update(r.images)
    entry = {
        "kind": release.kind, "release": release.id, "env": release.env,
        "commit": release.commit, "user": release.user, "started": release.started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"), "result": outcome,
        "images": images, "secret_versions": release.secret_versions,
        "hosts": {r.host: {"result": r.result, "changed": r.changed, "digests": r.digests,
                           "seconds": round(r.seconds, 1)} for r in results},
    }
    if release.rolled_back_to:
        entry["rolled_back_to"] = release.rolled_back_to
    for remote in remotes:
        if remote.name in touched:
            remote.run(cmd.write_json_file(LEDGER_PATH, entry, append=True))


def previous_release(entries: Sequence[dict], wanted: str | None = None) -> dict:
    """The successful release before the current one (the newest successful release).

    Entries come from every host's ledger (the same release appears on several hosts).
    Rollbacks count as releases too, so two rollbacks in a row go back two releases only if
    the operator asks twice: the "current" release is the newest success of any kind.
    """
    releases: dict[str, dict] = {}
    for e in entries:
        if e.get("release") and e.get("result") == "success" and e.get("images"):
            releases.setdefault(e["release"], e)
    ordered = sorted(releases.values(), key=lambda e: (e.get("finished", ""), e["release"]))
    if wanted:
        if wanted not in releases:
            raise LookupError(f"no successful release {wanted!r} in the ledger")
        return releases[wanted]
    if len(ordered) < 2:
        raise LookupError("the ledger holds no successful release before the current one")
    current = ordered[-1]
    for e in reversed(ordered[:-1]):
        if e["images"] != current["images"] or e.get("secret_versions") != current.get(
                "secret_versions"):
            return e
    raise LookupError("every earlier successful release is identical to the current one")


def summary_table(results: Sequence[HostResult]) -> str:
    rows = [("host", "services changed", "result", "time")]
    for r in results:
        rows.append((r.host, ", ".join(r.changed) or "-", r.result, f"{r.seconds:.1f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     for row in rows)
