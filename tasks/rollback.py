"""Go back to the previous successful release, exactly: its images and its secret versions.

    pyinfra -y inventories/prod.py tasks/rollback.py                       # the one before now
    pyinfra -y inventories/prod.py tasks/rollback.py --data release=<id>   # a named release

The release comes from the ledger on the hosts (/var/lib/superapp/releases.jsonl). The swap is
the deploy's own: host by host, health-gated, zero downtime, recorded in the ledger.
"""

from ops.rollout.stages import (
    check_invariants,
    pick_previous_release,
    plan_changes,
    read_secrets,
    roll_out,
)

run = check_invariants(kind="rollback")
pick_previous_release(run)
read_secrets(run)
plan_changes(run)
roll_out(run)
