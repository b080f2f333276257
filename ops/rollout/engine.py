"""Host-by-host rollout: executes the plans made by `ops.rollout.plan`, one host at a time.

pyinfra runs an operation on every host at once; a rollout must do the opposite (one host, in a
fixed order, stop at the first failure, touch nothing after it). So the whole rollout is one
callback run once on the controller, driving each host's SSH connection in turn through the
`Remote` protocol (ops/host/remote.py). Commands come from `ops.host.commands` (pure builders);
no secret value is ever part of a command: secret files are uploaded over SFTP.

The caller holds the environment's lock (ops/rollout/lock.py). Per host: directories -> what an
interrupted run left (finish its swap, remove its leftovers) -> pull every image (nothing
restarted yet) -> in-place infra files -> the slot swap (ops/rollout/swap.py) with migrations
once per release -> record. The release goes to the ledger (ops/rollout/ledger.py) whatever
the outcome. At every step boundary `Checkpoints.reach` checks the lock is still held and, in
tests only, injects the fault `SUPERAPP_FAULT` names.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import gevent
import gevent.lock

from ops.backup.commands import first_backups_command
from ops.backup.freshness import check_backup_freshness
from ops.canary.steps import Canary, judged
from ops.catalog.model import Environment
from ops.console import format_table
from ops.firewall.apply import apply_firewall
from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.host.state import SERVICE_STATE_DIR
from ops.render import pitr, redis_acl
from ops.render.backup import databases as all_databases
from ops.render.compose import (
    BLACKBOX_CONTAINER,
    SINGLETON_PROFILE,
    compose_path,
    data_ready_checks,
)
from ops.render.databases import PROVISION_SQL
from ops.rollout.interrupt import Interrupted
from ops.rollout.ledger import Release, record_ledger
from ops.rollout.lock import EnvironmentLock
from ops.rollout.plan import HostPlan, ServiceChange
from ops.rollout.pool import run_pool
from ops.rollout.prestage import prestage
from ops.rollout.steps import RolloutError, at_once, must, say, upload
from ops.rollout.swap import (
    UNDO_SETTLE_SECONDS,
    CanaryHeld,
    intent_path,
    record_path,
    swap,
    wait_serving,
    write_slot_info,
)

FAULT_VARIABLE = "SUPERAPP_FAULT"  # tests: `after:<step>[@<host>]` stops the controller there
FAULT_SIGNAL_VARIABLE = "SUPERAPP_FAULT_SIGNAL"  # KILL (default), INT, or EXEC:
FAULT_EXEC_VARIABLE = "SUPERAPP_FAULT_EXEC"  # with EXEC, a command run there (drop SSH...)


class Checkpoints:
    """The step boundaries of a rollout: the lock is checked at each, and a test may stop the
    controller at one (`SUPERAPP_FAULT=after:switched@host2`, `SUPERAPP_FAULT_SIGNAL=INT`), or
    run a command there and go on (`SUPERAPP_FAULT_SIGNAL=EXEC`, `SUPERAPP_FAULT_EXEC=...`:
    the tests stop a host's sshd). Nothing sets these outside the tests."""

    def __init__(self, lock: EnvironmentLock | None = None,
                 environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.lock = lock
        self.fault = parse_fault(environ.get(FAULT_VARIABLE, ""))
        how = environ.get(FAULT_SIGNAL_VARIABLE, "KILL").upper()
        self.signal = signal.SIGINT if how in ("INT", "SIGINT") else signal.SIGKILL
        self.exec = shlex.split(environ.get(FAULT_EXEC_VARIABLE, "")) if how == "EXEC" else []

    def reach(self, step: str, host: str) -> None:
        if self.lock is not None:
            self.lock.check()
        if self.fault and self.fault[0] == step and self.fault[1] in (None, host):
            self.fault = None
            if self.exec:
                print(f"    [{host}] test fault after {step}: {shlex.join(self.exec)}",
                      flush=True)
                subprocess.run(self.exec, check=False, timeout=60)
                return
            print(f"    [{host}] test fault: stopping the controller after {step} "
                  f"({signal.Signals(self.signal).name})", flush=True)
            os.kill(os.getpid(), self.signal)
            gevent.sleep(1)  # SIGINT: the handler interrupts this greenlet here


def parse_fault(text: str) -> tuple[str, str | None] | None:
    """`after:<step>[@<host>]` -> (step, host or None); anything else -> None."""
    if not text.startswith("after:"):
        return None
    step, _, host = text[len("after:"):].partition("@")
    return (step, host or None) if step else None


@dataclass
class HostResult:
    host: str
    changed: list[str] = field(default_factory=list)
    result: str = "unchanged"
    seconds: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # service -> image it runs after
    image_digests: dict[str, str] = field(default_factory=dict)  # service -> its digest
    migrations: dict[str, str] = field(default_factory=dict)  # service -> head after migrating
    slots: dict[str, str] = field(default_factory=dict)  # service -> slot this run started
    # step -> seconds since the host's rollout began, when the step was reached (the timeline)
    timeline: dict[str, float] = field(default_factory=dict)
    began: float = 0.0  # seconds after the run's first host began (hosts at once overlap)


# Units of files that a container of the monitoring project reads (at start, or on SIGHUP).
MONITORED_BY_FILES = ("prometheus", "alertmanager", "blackbox")


def apply_infra(remote: Remote, environment: Environment, plan: HostPlan) -> None:
    if not plan.infra_files:
        return
    say(remote.name, f"updating {len(plan.infra_files)} config file(s): "
                     + ", ".join(plan.infra_units))
    upload(remote, [f for f in plan.infra_files if not f.after_apply])
    if "firewall" in plan.infra_units:  # first: the host's ports are closed before they open
        ruleset = next(f for f in plan.infra_files if f.unit == "firewall")
        apply_firewall(remote, ruleset, environment.settings["firewall"]["confirm_seconds"])
    actions = {
        "edge": cmd.compose_up("/opt/superapp/compose/edge.yml"),
        "data": cmd.compose_up("/opt/superapp/compose/data.yml"),
        "redis-acl": cmd.redis_acl_load("redis", redis_acl.LOAD_SCRIPT),
        "databases": cmd.run_sql_file("postgres", PROVISION_SQL),
        "monitoring": cmd.compose_up("/opt/superapp/compose/monitoring.yml"),
        # SeaweedFS reads its identities and TLS key only at start: any change recreates it
        # (pgBackRest's archive-push retries meanwhile)
        "backup-repo": cmd.compose_up(compose_path("backup"), force_recreate=True),
        "prometheus": cmd.signal_container("prometheus", "HUP"),
        "alertmanager": cmd.signal_container("alertmanager", "HUP"),
        "blackbox": cmd.signal_container(BLACKBOX_CONTAINER, "HUP"),
    }
    # backup: nothing to restart (cron reads /etc/cron.d); the first backups run at the end
    # of the host's rollout, once the databases have their schema (see roll_host).
    changed_paths = {f.path for f in plan.infra_files}
    for unit in plan.infra_units:
        command = actions.get(unit)
        if unit == "edge" and "/opt/superapp/traefik/traefik.yml" in changed_paths:
            # Traefik reads its static config only at start.
            command = cmd.compose_up("/opt/superapp/compose/edge.yml", force_recreate=True)
        if unit == "monitoring" and set(MONITORED_BY_FILES) & set(plan.infra_units):
            # compose recreates only the containers whose definition changed: the others would
            # keep their old files (a new rule file, a new scrape job), so recreate them all
            command = cmd.compose_up("/opt/superapp/compose/monitoring.yml", force_recreate=True)
        if unit in MONITORED_BY_FILES and "monitoring" in plan.infra_units:
            continue  # just recreated with the new files
        if command:
            out = must(remote, command, f"applying {unit}", timeout=300)
            if unit == "redis-acl" and out.strip():
                say(remote.name, f"  {out.strip().splitlines()[-1]}")
        if unit in ("data", "redis-acl"):
            # migrations follow: they must find the servers accepting connections (and a
            # changed admin password restarts Redis: see cmd.redis_acl_load)
            checks = data_ready_checks(environment, environment.host(remote.name))
            if checks:
                must(remote, cmd.wait_exec_ok(checks, timeout=180),
                     f"waiting for {' and '.join(sorted(checks))} to accept connections",
                     timeout=240)
        if unit == "backup-repo":
            must(remote, cmd.wait_exec_ok({pitr.S3_CONTAINER: pitr.S3_READY_CHECK}, timeout=120),
                 "waiting for the backup repository (S3) to accept connections", timeout=180)
    # pitr's record waits for `pitr.sh setup`, after every host (the repository's host may
    # come later in the rollout order): see setup_pitr
    records = [f for f in plan.infra_files if f.after_apply and f.unit != "pitr"]
    if records:
        upload(remote, records)


def run_migrations(remote: Remote, environment: Environment, change: ServiceChange) -> str:
    """Run the service's migrate command once; its last output line (the schema head it
    reports, recorded in the ledger so a rollback can say when the schema stays newer)."""
    service = environment.services[change.service]
    say(remote.name, f"{change.service}: running migrations once for {change.image}")
    command = cmd.compose_run(change.compose_file, service.name,
                              environment.migrate_command(service) or [],
                              env={"AUTO_CREATE_SCHEMA": "false"},
                              labels={"superapp.role": "migrate",
                                      "superapp.container": f"{service.name}-migrate"})
    out = must(remote, command, f"migration of {change.service}", timeout=900)
    lines = [line for line in out.strip().splitlines() if line.strip()]
    for line in lines[-10:]:  # prefixed: the migrations of several services run at once
        say(remote.name, f"  {change.service} migrate: {line}")
    return migration_head(lines)


# How a migrate command says which schema head it left: Alembic's `Running upgrade a -> b`
# (b), the stand-in's `now at version N`.
HEAD_PATTERNS = (re.compile(r"Running upgrade \S* -> ([0-9A-Za-z_]+)"),
                 re.compile(r"now at version (\S+)"))


def migration_head(lines: Sequence[str]) -> str:
    """The schema head a migrate command's output names, or "" when it names none (nothing
    applied, or a tool whose output is not recognised): the ledger then keeps the last head
    recorded, and a rollback's plan never claims a difference it cannot see."""
    for line in reversed(lines):
        for pattern in HEAD_PATTERNS:
            if m := pattern.search(line):
                return m.group(1)[:100]
    return ""


def pull(remote: Remote, plan: HostPlan) -> dict[str, str]:
    """Pull what the host lacks (before anything restarts); return every image's digest."""
    if plan.missing_images and not plan.prestaged:
        say(remote.name, f"pulling {len(plan.missing_images)} image(s)")
        must(remote, cmd.pull_images(plan.missing_images), "pulling images", timeout=1800)
    # pinned refs (`repo:tag@sha256:...`) carry their digest; only tag refs are inspected
    digests = {ref.partition("@")[0]: ref.partition("@")[2] for ref in plan.images if "@" in ref}
    out = must(remote, cmd.image_digests(i for i in plan.images if "@" not in i),
               "reading image digests")
    for line in out.splitlines():
        ref, _, digest = line.partition(" ")
        if "@" in digest:
            digests[ref] = digest.split("@", 1)[1]
    return digests


def finish_interrupted(remote: Remote, environment: Environment, plan: HostPlan) -> None:
    """What an interrupted run left on the host, made right before anything new starts:
    swaps whose traffic already moved are recorded, leftovers stop gracefully, a live slot
    missing its singleton sidecar gets it. An interrupted canary's shared routes go back to the
    live slot first, and Traefik is seen serving it, before its new slot can be removed."""
    if plan.canary_routes:
        say(remote.name, "an interrupted canary left traffic shared: "
                         + ", ".join(sorted(plan.canary_servers)) + " back to the live slot")
        upload(remote, plan.canary_routes)
        wait_serving(remote, plan.canary_servers, "waiting for Traefik to serve the live "
                     "containers only", settle=UNDO_SETTLE_SECONDS)
    if plan.promote:
        say(remote.name, "finishing what an interrupted run left: "
                         + ", ".join(sorted(plan.promote)) + " (traffic already moved)")
        wait_serving(remote, plan.promote, "waiting for Traefik to serve the live containers")
        must(remote, cmd.chain(*(cmd.sh("mv", "-f", intent_path(s), record_path(s))
                                 for s in sorted(plan.promote))), "recording the live slots")
    if plan.restore_files:  # the live slot's own files again (staged ones were never live)
        say(remote.name, "restoring the live files a swap that never switched replaced: "
                         + ", ".join(plan.restore_files))
        must(remote, cmd.chain(*(cmd.sh("mv", "-f", f"{p}.prev", p)
                                 for p in plan.restore_files)), "restoring the live files")
    if plan.leftovers:
        say(remote.name, "removing what an interrupted run left: " + ", ".join(plan.leftovers))
        if plan.leftover_projects:
            must(remote, cmd.in_parallel(*(cmd.compose_down(p) for p in plan.leftover_projects)),
                 "stopping leftover containers", timeout=600)
        must(remote, cmd.chain(
            cmd.sh("docker", "rm", "-f", *plan.leftover_containers)
            if plan.leftover_containers else "",
            cmd.remove_files([*plan.leftover_files,
                              *(intent_path(s) for s in plan.stale_intents)])),
            "removing leftovers")
    if plan.singletons:
        must(remote, cmd.chain(*(cmd.compose_up(compose_path(s), profiles=[SINGLETON_PROFILE])
                                 for s in plan.singletons)), "starting singleton sidecars",
             timeout=300)


def roll_host(remote: Remote, environment: Environment, plan: HostPlan, release: Release,
              migrated: set[tuple[str, str]], db_remote: Remote | None = None,
              checkpoints: Checkpoints | None = None,
              heads: dict[str, str] | None = None, canary: Canary | None = None,
              timeline: dict[str, float] | None = None,
              migrations: gevent.lock.Semaphore | None = None,
              leader_remote: Remote | None = None) -> HostResult:
    """`canary`: this host is the canary (ops/canary). `leader_remote`: with `db_ha`, the host
    of the member leading now, which reports the WAL archive's state. `heads` collects
    service -> schema head of every migration run here, and `timeline` when each step was
    reached, both kept by the caller even when this host fails later (the schema moved all the
    same; the timeline says where the time went)."""
    t0 = time.monotonic()
    checkpoints = checkpoints or Checkpoints(environ={})
    heads = {} if heads is None else heads
    timeline = {} if timeline is None else timeline
    result = HostResult(plan.host, images=dict(plan.images_after),
                        image_digests=dict(plan.digests_after), migrations=heads,
                        timeline=timeline)

    def checkpoint(step: str) -> None:
        timeline.setdefault(step, round(time.monotonic() - t0, 1))
        checkpoints.reach(step, plan.host)

    must(remote, cmd.make_dirs([*plan.dirs, ("/opt/superapp/compose", 0o755, 0),
                                ("/opt/superapp/traefik/dynamic", 0o755, 0),
                                (SERVICE_STATE_DIR, 0o755, 0)]), "creating directories")
    finish_interrupted(remote, environment, plan)
    result.digests = pull(remote, plan)
    checkpoint("pulled")
    apply_infra(remote, environment, plan)
    checkpoint("configured")
    changes = plan.services

    def migrate() -> None:
        # hosts rolled at once share `migrated`: one migrates, the other waits and skips
        with migrations or gevent.lock.DummySemaphore():
            pending = [c for c in changes if c.migrate and (c.service, c.bits) not in migrated]
            for c in pending:  # every gate before the first migration starts
                check_backup_freshness(db_remote or remote, environment, c, leader_remote)

            def job(group: list[ServiceChange]) -> Callable[[], None]:
                def run() -> None:
                    for c in group:
                        heads[c.service] = run_migrations(remote, environment, c)
                        migrated.add((c.service, c.bits))
                return run

            # migrations of different databases are independent: those run at once
            by_database: dict[str, list[ServiceChange]] = {}
            for c in pending:
                key = environment.services[c.service].database or c.service
                by_database.setdefault(key, []).append(c)
            at_once([(key, job(group)) for key, group in by_database.items()])

    # a held canary migrated when it started: its bits count as migrated for later hosts
    migrated.update((c.service, c.bits) for c in changes if c.held)
    if changes:  # the slot info Prometheus joins on is written once traffic moved
        swap(remote, environment, changes, result.digests, release.id, checkpoint, migrate,
             canary, plan.slot_info)
    if "backup" in plan.infra_units:
        out = must(remote, first_backups_command(all_databases(environment)), "first backups",
                   timeout=900)
        for line in out.strip().splitlines()[-3:]:
            say(remote.name, f"  backup: {line}")
    result.slots = {c.service: c.new_slot for c in changes}
    result.changed = [c.service for c in changes] + plan.infra_units + (
        ["leftovers"] if plan.leftovers or plan.promote or plan.singletons
        or plan.canary_routes or plan.restore_files else [])
    # no swap wrote it: a host deployed before the file existed, or a run died before it did
    if plan.slot_info_stale and plan.slot_info and not changes:
        write_slot_info(remote, plan.slot_info)
        result.changed.append("slot info")
    result.result = "changed" if (result.changed or plan.missing_images) else "unchanged"
    result.seconds = time.monotonic() - t0
    timeline["done"] = round(result.seconds, 1)
    return result


@dataclass
class Outcome:
    """How one host's rollout ended: its result, and why it stopped when it did not finish
    (RolloutError, Interrupted, CanaryHeld, or a bug in this tool)."""

    plan: HostPlan
    result: HostResult
    error: BaseException | None = None


@dataclass
class HostRunner:
    """Rolls one host of a run; what the hosts share (migrations done, the canary not yet
    given) lives here, and migrations run one at a time even when hosts roll at once."""

    environment: Environment
    remotes: Mapping[str, Remote]
    release: Release
    migrated: set[tuple[str, str]]
    checkpoints: Checkpoints
    canary: Canary | None
    leader: str | None = None  # with db_ha: the member leading when the rollout began
    migrations: gevent.lock.Semaphore = field(default_factory=gevent.lock.Semaphore)
    t0: float = field(default_factory=time.monotonic)

    def roll(self, plan: HostPlan) -> Outcome:
        """Never raises: the outcome says how the host ended (its swap undid itself if not)."""
        heads: dict[str, str] = {}
        timeline: dict[str, float] = {}
        resumes = any(c.held for c in plan.services)  # its canary passed in the run that held
        canary = self.canary if judged(plan.services) and not resumes else None
        if judged(plan.services) or resumes:
            self.canary = None  # one canary host: the first with a live slot to compare
        db = self.environment.db_host.name
        began = round(time.monotonic() - self.t0, 1)
        try:
            print(f"--> {plan.host}: " + (
                "nothing to change" if not plan.changed else
                f"{len(plan.services)} service(s) to swap, {len(plan.infra_files)} file(s)"),
                flush=True)
            self.checkpoints.reach("host", plan.host)
            result = roll_host(
                self.remotes[plan.host], self.environment, plan, self.release, self.migrated,
                self.remotes.get(db, self.remotes[plan.host]), self.checkpoints, heads, canary,
                timeline, self.migrations, self.remotes.get(self.leader or ""))
            result.began = began
            return Outcome(plan, result)
        except CanaryHeld as e:
            result: str = "HELD"
            error: BaseException = e
        except Interrupted as e:
            result, error = "INTERRUPTED", e
        except Exception as e:  # noqa: BLE001 - RolloutError, or a bug the caller re-raises
            result, error = "FAILED", e
        return Outcome(plan, HostResult(
            plan.host, changed=[c.service for c in plan.services] if result == "HELD" else [],
            result=result, migrations=heads, timeline=timeline, began=began), error)


def rollout(environment: Environment, plans: Sequence[HostPlan], remotes: Sequence[Remote],
            release: Release, migrated: set[tuple[str, str]] | None = None,
            on_host_done: Callable[[HostResult], None] | None = None,
            checkpoints: Checkpoints | None = None,
            canary: Canary | None = None, parallel_hosts: int | None = None,
            leader: str | None = None) -> list[HostResult]:
    """Roll `plans` (already in rollout order); raise at the first failure.

    One host at a time until the first changed host (the canary host when the run has a
    canary) is done, then up to `parallel_hosts` at once (default: group_data's
    `rollout.parallel_hosts`), never two of one placement group (ops/rollout/pool.py).

    `canary`: the first host swapping a service that has a live slot to compare with is
    judged with it (ops/canary) before any later host changes.

    The caller holds the environment's lock (and passes it in `checkpoints`). `leader`: with
    `db_ha`, the member leading now (the cluster stage ran before: ops/dbha/stage.py), where
    the WAL archive is reported and pgBackRest is set up.
    `migrated`: (service, image by digest) pairs whose migrations already ran in this
    environment (some host already runs those bits), so a release migrates once, not once per
    host or per run. Every host of the run gets the release in its ledger; a ledger that
    cannot be written fails the rollout after it ran (a rollback depends on it), naming the
    host.
    """
    by_name = {r.name: r for r in remotes}
    runner = HostRunner(environment, by_name, release, set(migrated or ()),
                        checkpoints or Checkpoints(), canary, leader)
    width = parallel_hosts or environment.settings["rollout"]["parallel_hosts"]
    prestage(plans, by_name, environment.settings["rollout"]["min_free_disk_mb"])
    first = next((i for i, p in enumerate(plans)
                  if (judged(p.services) if canary else p.changed)), len(plans))
    results: list[HostResult] = []

    def go_on(outcome: Outcome) -> bool:
        results.append(outcome.result)
        if outcome.error is None and on_host_done:
            on_host_done(outcome.result)
        return outcome.error is None

    groups = {h.name: h.placement_group or h.name for h in environment.hosts}
    order = [p.host for p in plans]
    serial, after = list(plans[:first + 1]), list(plans[first + 1:])
    for part, n_at_once, later in ((serial, 1, after), (after, width, [])):
        run = run_pool(part, n_at_once, lambda p: groups.get(p.host, p.host), runner.roll, go_on)
        results.sort(key=lambda r: order.index(r.host))  # rollout order, not finishing order
        stopped = sorted((o for o in run.outcomes if o.error is not None),
                         key=lambda o: order.index(o.plan.host))
        if stopped or run.interrupted:
            untouched = [p.host for p in (*run.not_started, *later)]
            return stop_rollout(remotes, results, release, stopped, untouched)
    if any(r.result == "changed" for r in results):
        unrecorded = record_ledger(remotes, results, release, "success")
        if unrecorded:
            kept = [r.name for r in remotes if not any(
                u.startswith(f"{r.name}: ") for u in unrecorded)]
            raise RolloutError("the rollout finished, but the release could not be recorded: "
                               + "; ".join(unrecorded) + ". A rollback reads every host's "
                               "ledger: " + (f"{', '.join(kept)} hold(s) it; " if kept else
                                             "no host holds it; ")
                               + "fix the ledger on the named host(s) before the next rollback")
    setup_pitr(environment, plans, by_name, leader)
    return results


def stop_rollout(remotes: Sequence[Remote], results: list[HostResult], release: Release,
                 stopped: Sequence[Outcome], untouched: Sequence[str]) -> list[HostResult]:
    """A rollout that did not finish: the ledger says how, and the error says where.
    A held canary returns (the operator asked for it); anything else raises RolloutError."""
    bugs = [o.error for o in stopped if not isinstance(
        o.error, RolloutError | Interrupted | CanaryHeld)]
    if bugs:
        raise bugs[0]
    done = [r.host for r in results if r.result == "changed"]
    rest = f"Not touched: {', '.join(untouched)}." if untouched else ""
    held = [o for o in stopped if isinstance(o.error, CanaryHeld)]
    if held:
        unrecorded = record_ledger(remotes, results, release, "held")
        print(f"\n--> {held[0].error}." + (f" Not touched yet: {', '.join(untouched)}."
                                            if untouched else "")
              + ledger_warning(unrecorded), flush=True)
        if unrecorded:
            raise RolloutError(ledger_warning(unrecorded).strip())
        return results
    interrupted = [o.plan.host for o in stopped if isinstance(o.error, Interrupted)]
    if interrupted or not stopped:  # Ctrl-C, with hosts in progress or between hosts
        unrecorded = record_ledger(remotes, results, release, "interrupted")
        where = (f"while rolling {', '.join(interrupted)}: "
                 + ("its changes were undone; " if len(interrupted) == 1 else
                    "their changes were undone; ")) if interrupted else "between hosts: "
        raise RolloutError(
            f"interrupted (Ctrl-C) {where}"
            + (f"already on the new release: {', '.join(done)}" if done else "no host changed")
            + (f". {rest}" if rest else "") + ledger_warning(unrecorded))
    unrecorded = record_ledger(remotes, results, release, "failed")
    failed = [o.plan.host for o in stopped]
    raise RolloutError(
        "\n".join(str(o.error) for o in stopped)
        + f"\nRollout stopped at {', '.join(failed)}. "
        + (f"Already on the new release: {', '.join(done)}. " if done else "")
        + rest + ledger_warning(unrecorded))


def setup_pitr(environment: Environment, plans: Sequence[HostPlan],
               by_name: Mapping[str, Remote], leader: str | None = None) -> None:
    """After every host (the repository's host may come after the db host): stanza, `check`
    (a WAL segment really reaches the repository), a first full backup when there is none,
    then the `pitr-ready` record. Until it is written, every run tries again; a failure stops
    the run after the release is recorded, naming the step. With `db_ha` on the `leader`, and
    the record on every member (each runs pitr.sh; the one leading acts)."""
    if not pitr.enabled(environment):
        return
    db = leader if environment.db_ha is not None and leader else environment.db_host.name
    db_plan = next((p for p in plans if p.host == db), None)
    if db_plan is None or db not in by_name \
            or not {"pitr", "backup-repo"} & {u for p in plans for u in p.infra_units}:
        return
    remote = by_name[db]
    say(db, "point-in-time recovery: stanza, archive check, first full backup if none")
    try:
        out = must(remote, cmd.sh(pitr.PITR_SCRIPT, "setup"),
                   f"WAL archiving to {environment.backup_host.name} (pitr.sh setup)",
                   timeout=3600)
    except RolloutError as e:
        raise RolloutError(f"the release is rolled out and recorded, but {e}; PostgreSQL keeps "
                           "its WAL until archiving works: fix the repository and run the "
                           "deploy again (it retries this step)") from None
    for line in out.strip().splitlines()[-5:]:
        say(db, f"  pitr: {line}")
    for plan in plans:
        records = [f for f in plan.infra_files if f.after_apply and f.unit == "pitr"]
        if records and plan.host in by_name and environment.host(plan.host).has_role("db"):
            upload(by_name[plan.host], records)


def ledger_warning(unrecorded: list[str]) -> str:
    return ("\nThe release could not be recorded: " + "; ".join(unrecorded)) if unrecorded \
        else ""


def summary_table(results: Sequence[HostResult]) -> str:
    return format_table(("host", "services changed", "result", "time", "began"),
                        [(r.host, ", ".join(r.changed) or "-", r.result, f"{r.seconds:.1f}s",
                          f"+{r.began:.1f}s") for r in results])


def timeline_table(results: Sequence[HostResult]) -> str:
    """When each host reached each step, in seconds since its rollout began (where the time
    went: a long `started` is pulls and container starts, `healthy` the health checks...)."""
    steps: list[str] = []
    for r in results:
        steps += [s for s in r.timeline if s not in steps]
    if not steps:
        return ""
    return format_table(("host", *steps), [
        (r.host, *(f"{r.timeline[s]:.1f}" if s in r.timeline else "-" for s in steps))
        for r in results if r.timeline])
