"""Go back to the last release every host ran, exactly: its images by recorded digest.

    pyinfra inventories/prod.py tasks/rollback.py --dry                     # what it would do
    pyinfra -y inventories/prod.py tasks/rollback.py                        # do it
    pyinfra -y inventories/prod.py tasks/rollback.py --data release=<id>    # a named release
    ... --data secrets=as-recorded [--data force=true]   # the target's secret versions

The target comes from every host's ledger merged (ops/rollout/history.py; what it picks from
each state of the fleet: ops/runbooks/rollback.md). No migration runs; secrets stay at their
current versions unless asked. The swap is the deploy's own: host by host, health-gated, zero
downtime, recorded in the ledger with `rolled_back_to`.
"""

from ops.rollout.rollback import pick_previous_release
from ops.rollout.stages import (
    check_invariants,
    plan_changes,
    read_secrets,
    resolve_images,
    roll_out,
)

run = check_invariants(kind="rollback")
pick_previous_release(run)
resolve_images(run)  # only images the target release recorded no digest for
read_secrets(run)
plan_changes(run)
roll_out(run)
