"""Deploy or upgrade the Super-App fleet.

    pyinfra -y inventories/prod.py deploy.py            # the real thing
    pyinfra inventories/staging.py deploy.py --dry      # what would change, nothing changes
    pyinfra -y inventories/local.py deploy.py           # the local testbed (make demo)

The runbook, in order. Nothing touches a host before the last stage, and the last stage stops
at the first host that fails.
"""

from ops.rollout.stages import (
    check_invariants,
    plan_changes,
    read_secrets,
    resolve_images,
    roll_out,
)

# 1. Catalog and group_data valid, production invariants hold, every host reachable and read.
run = check_invariants()

# 2. Every image tag -> its registry digest (a missing tag refuses here); hosts run by digest.
resolve_images(run)

# 3. Every secret the release needs, from Vault (one error listing everything missing).
read_secrets(run)

# 4. Per host: render, compare with what runs, validate what changes with the real tools.
plan_changes(run)

# 5. Host by host in inventory order: pull, migrate once, swap changed services, record.
roll_out(run)
