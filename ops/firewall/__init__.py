"""A host firewall per role (nftables), applied commit-confirmed.

Public API:

* `render_ruleset(environment, host, admin_sources=None) -> str` (pure; ops/firewall/ruleset)
* `openings(environment, host, admin_sources=None) -> list[Opening]` (pure; what and to whom)
* `check_ruleset(text, label)`: `nft -c -f` on the controller, raises `FirewallError`
* `apply_command(path, seconds)`, `confirm_command()`: argv builders of the commands run on
  the host (ops/firewall/commands; shell text: `ops.host.commands.sh`)
"""

from ops.firewall.commands import apply_command, confirm_command, save_command
from ops.firewall.policy import FirewallError, Opening, openings
from ops.firewall.ruleset import RULESET_PATH, TABLE, render_ruleset
from ops.firewall.validate import check_ruleset

__all__ = [
    "RULESET_PATH", "TABLE", "FirewallError", "Opening", "apply_command", "check_ruleset",
    "confirm_command", "openings", "render_ruleset", "save_command",
]
