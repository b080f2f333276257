"""The one-off schema bootstrap (`tasks/bootstrap_schema.py --data service=<name>`).

Prod runs every service with AUTO_CREATE_SCHEMA=false, so a service without migrations would go
live on an empty database with a green /health. Its catalog entry declares
`schema_bootstrap_command` instead (the loader refuses it in prod and staging otherwise), and
this job runs that command once, in a one-off container of the service's live release with
AUTO_CREATE_SCHEMA=true, against its database. It refuses a database that has any table (the
job is for an empty one: it never touches data), holds the environment's lock like a deploy,
and is recorded in every host's ledger (`kind: schema-bootstrap`); the deploy names the
services still waiting for it (ops/schema/plan.py).
"""

from __future__ import annotations

import sys

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import python

from ops.catalog.model import Service
from ops.dbha.stage import cluster_leader
from ops.host import commands as cmd
from ops.host.remote import PyinfraRemote, Remote
from ops.render.compose import compose_path, postgres_container
from ops.rollout.ledger import append_to_ledgers, now_iso
from ops.rollout.run import DeployRefused, Run
from ops.rollout.stages import release_lock, take_lock
from ops.rollout.steps import RolloutError, must, say
from ops.schema.plan import KIND, check_service
from ops.scope import current_scope


def table_count(remote: Remote, container: str, database: str) -> int:
    out = must(remote, cmd.count_tables(container, database),
               f"counting the tables of database {database}")
    try:
        return int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RolloutError(f"{remote.name}: cannot count the tables of {database}: "
                           f"{out.strip()[-200:]}") from None


def chosen_service(run: Run) -> Service:
    try:
        return check_service(run.environment, str(host.data.get("service") or ""))
    except ValueError as e:
        raise DeployRefused(f"refusing the schema bootstrap: {e}; no host was changed") from None


@deploy("Create an empty database's schema once")
def bootstrap_schema(run: Run) -> None:
    service = current_scope().once("bootstrap-service", lambda: chosen_service(run))

    def callback(state, host) -> bool:  # noqa: ARG001 - pyinfra passes both
        return bootstrap_callback(state, run, service)

    python.call(name=f"Create the schema of {service.name} (once)", function=callback,
                _run_once=True)


def bootstrap_callback(state, run: Run, service: Service) -> bool:
    """Refuse a database with tables, run the command once, record it; False (printed) on
    failure."""
    active = {h.name: h for h in state.inventory.get_active_hosts()}
    order = run.ordered(active)
    remotes = {name: PyinfraRemote(active[name]) for name in order}
    try:
        # with db_ha, the member leading now: a replica could answer before it replayed the
        # bootstrap's tables
        db_host = cluster_leader(run.environment, remotes) or next(
            (h.name for h in run.environment.hosts if h.has_role("db")), None)
        if db_host not in remotes:
            raise RolloutError(f"the db host {db_host} is not in this run (--limit?)")
        runner = next((n for n in order if service.name in run.states[n].services), None)
        if runner is None:
            raise RolloutError(f"{service.name} runs on no host of this run: deploy it first "
                               "(it starts on its empty database), then bootstrap its schema")
        lock = take_lock(state, run)
        try:
            bootstrap(run, service, remotes, db_host, runner)
        finally:
            release_lock(lock)
    except RolloutError as e:
        print(f"\nSCHEMA BOOTSTRAP FAILED: {e}", file=sys.stderr, flush=True)
        return False
    return True


def bootstrap(run: Run, service: Service, remotes: dict[str, Remote], db_host: str,
              runner: str) -> None:
    database = service.database or ""
    db = remotes[db_host]
    container = postgres_container(run.environment)
    before = table_count(db, container, database)
    if before:
        raise RolloutError(f"{service.name}: database {database} on {db_host} already has "
                           f"{before} table(s): the bootstrap runs only on an empty database; "
                           "nothing was changed")
    record = run.states[runner].services[service.name]
    say(runner, f"{service.name}: creating the schema of {database} once with "
                f"{record.get('image')} (AUTO_CREATE_SCHEMA=true)")
    argv = run.environment.schema_bootstrap_command(service) or []
    out = must(remotes[runner], cmd.compose_run(compose_path(service.name), service.name, argv,
                                                env={"AUTO_CREATE_SCHEMA": "true"}),
               f"schema bootstrap of {service.name}", timeout=900)
    for line in out.strip().splitlines()[-10:]:
        say(runner, f"  bootstrap: {line}")
    after = table_count(db, container, database)
    if not after:
        raise RolloutError(f"{service.name}: the bootstrap command ran but {database} still "
                           "has no table")
    failed = append_to_ledgers(list(remotes.values()), {
        "kind": KIND, "id": run.release.id, "env": run.environment.name,
        "service": service.name, "database": database, "image": record.get("image"),
        "digest": record.get("digest") or "", "host": runner, "tables": after,
        "user": run.release.user, "started": run.release.started, "finished": now_iso(),
        "result": "success"})
    if failed:
        raise RolloutError("the schema was created but could not be recorded: "
                           + "; ".join(failed))
    print(f"--> {service.name}: schema created in {database} ({after} table(s)); recorded in "
          "the ledger", flush=True)
