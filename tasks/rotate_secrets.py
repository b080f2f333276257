"""Rotate secrets: new KV v2 versions in Vault, rolled out host by host to the services using them.

    pyinfra -y inventories/prod.py tasks/rotate_secrets.py --data rotate=food/JWT_SECRET
    pyinfra -y inventories/prod.py tasks/rotate_secrets.py --data rotate=jwt,admin-tokens
    pyinfra -y inventories/prod.py tasks/rotate_secrets.py --data rotate=internal-hmac
    pyinfra -y inventories/prod.py tasks/rotate_secrets.py --data rotate=all
    pyinfra inventories/prod.py tasks/rotate_secrets.py --data rotate=all --dry  # writes nothing

Vault credentials: the `superapp-<env>-rotate` AppRole (it may write the rotated paths only).
The new values are made while pyinfra prepares and written (check-and-set) when it executes,
before any host changes; only the services whose env files change are swapped, with the
deploy's health gates; the ledger records who, when, which keys, old and new versions and the
result. `internal-hmac` goes in three phases and a re-run resumes an interrupted one. Details:
ops/secrets/rotation.py.
"""

from ops.rollout.stages import check_invariants, plan_changes, read_secrets, resolve_images
from ops.secrets.rotation_stages import prepare_rotation, report_rotation, roll_out_rotation

# 1. Catalog and group_data valid, invariants hold, every host reachable and read.
run = check_invariants(kind="rotate")

# 2. Image tags -> registry digests, as a deploy does (a rotation swaps nothing else: a moved
#    tag is refused as an unrelated change).
resolve_images(run)

# 3. Every secret from Vault, once.
read_secrets(run)

# 4. Which keys, their new values (in memory only), or the internal HMAC phase to resume.
rotation = prepare_rotation(run)

# 5. Per host: render with the new values, compare, validate; say what the rotation swaps.
plan_changes(run)
report_rotation(run, rotation)

# 6. Execution only: write the new versions (CAS), then host by host; next HMAC phases.
roll_out_rotation(run, rotation)
