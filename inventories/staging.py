"""The staging inventory: hosts and roles from group_data/staging.py, in rollout order."""

from ops.catalog import inventory_for

_groups = inventory_for("staging")
app = _groups["app"]
db = _groups["db"]
monitoring = _groups["monitoring"]
backup = _groups["backup"]
