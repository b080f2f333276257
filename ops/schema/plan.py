"""Which service the schema bootstrap may run for, and which services still wait for it.

Pure: the environment and ledger lines in, a service, names or a ValueError out.
"""

from __future__ import annotations

from ops.catalog.model import Environment, Service
from ops.catalog.rules import unknown_service

KIND = "schema-bootstrap"  # its ledger lines


def check_service(environment: Environment, name: str) -> Service:
    """The service `--data service=` names, if the job may run for it (ValueError: why not)."""
    if not name:
        raise ValueError("name the service: --data service=<name>")
    if name not in environment.services:
        raise ValueError(f"--data service={name}: {unknown_service(name, environment.services)}")
    service = environment.services[name]
    if not service.database:
        raise ValueError(f"{name} has no database (ops/catalog/services.yml services.{name})")
    if service.migrate_command:
        raise ValueError(f"{name} has migrations (migrate_command): they create its schema; "
                         "the bootstrap job is for services without")
    if not environment.schema_bootstrap_command(service):
        raise ValueError(f"{name} declares no schema_bootstrap_command "
                         f"(ops/catalog/services.yml services.{name})")
    return service


def pending_bootstrap(environment: Environment, ledger: list[dict]) -> list[str]:
    """Services whose schema comes from the bootstrap job and whose job no ledger records
    (none on the testbed, where the stand-in's migrations create every schema)."""
    done = {e.get("service") for e in ledger if e.get("kind") == KIND
            and e.get("result") == "success"}
    return sorted(name for name, s in environment.services.items()
                  if s.database and not environment.migrate_command(s)
                  and environment.schema_bootstrap_command(s) and name not in done)
