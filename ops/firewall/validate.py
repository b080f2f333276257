"""Check a rendered ruleset with the real tool (`nft -c -f`) before it goes anywhere.

Runs a subprocess on the controller (needs nftables and CAP_NET_ADMIN: `nft -c` asks the
kernel); never loads anything.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ops.firewall.commands import check_command
from ops.firewall.policy import FirewallError


def check_ruleset(text: str, label: str = "ruleset.nft") -> None:
    """Raise FirewallError naming `label` and nft's message when `text` does not load."""
    with tempfile.TemporaryDirectory(prefix="safw-check-") as tmp:
        path = Path(tmp) / "ruleset.nft"
        path.write_text(text)
        result = subprocess.run(check_command(str(path)), capture_output=True, text=True,
                                timeout=60, check=False)
    if result.returncode != 0:
        raise FirewallError(f"{label}: nft -c failed: {result.stderr.strip()}")
