"""The local inventory: hosts and roles from group_data/local.py (validated), in rollout order."""

from ops.catalog import inventory_for

_groups = inventory_for("local")
app = _groups["app"]
db = _groups["db"]
monitoring = _groups["monitoring"]
backup = _groups["backup"]
