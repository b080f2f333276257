"""Create the schema of a service without migrations, once, on its empty database.

    pyinfra -y inventories/prod.py tasks/bootstrap_schema.py --data service=<name>

Runs the service's `schema_bootstrap_command` (ops/catalog/services.yml) in a one-off container
of its live release with AUTO_CREATE_SCHEMA=true; refuses a database that has any table, holds
the deploy lock, records `kind: schema-bootstrap` in every host's ledger. Why and how:
ops/schema/bootstrap.py.
"""

from ops.rollout.stages import check_invariants
from ops.schema.bootstrap import bootstrap_schema

run = check_invariants(kind="schema-bootstrap")
bootstrap_schema(run)
