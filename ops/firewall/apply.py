"""Apply a host's firewall during the rollout, commit-confirmed (effects: runs on the host).

The new ruleset is loaded over the rollout's own SSH connection, which the new rules cannot
cut (its packets are `established`). Whether the controller can still reach the host is
proven by a NEW connection (`Remote.run_fresh`: a fresh `ssh`, pinned host key, batch mode);
it confirms, which cancels the revert timer. When it cannot get through, the timer restores
the previous ruleset by itself after `confirm_seconds`; the rollout stops on that host, waits
for the revert and checks it over the old connection.

The ruleset is loaded from a candidate file (`CANDIDATE_PATH`); the rendered path
(/etc/superapp/firewall/ruleset.nft, what the plan compares) is written only after the
confirmation, with the unit's other records. So an interrupted or refused apply leaves the
record of the previous, confirmed ruleset, and the next run applies again.
"""

from __future__ import annotations

import time
from dataclasses import replace

from ops.firewall.commands import (
    STATE_DIR,
    apply_command,
    confirm_command,
    reverted_command,
)
from ops.host.commands import sh
from ops.host.remote import Remote
from ops.render.files import RenderedFile
from ops.rollout.steps import RolloutError, must, say, upload

CANDIDATE_PATH = f"{STATE_DIR}/candidate.nft"
CONNECT_TIMEOUT = 10  # seconds the fresh SSH connection may take to be let in


def apply_firewall(remote: Remote, ruleset: RenderedFile, confirm_seconds: int) -> None:
    """Upload `ruleset` as the candidate, load it, then confirm it from a new connection or
    let it revert."""
    upload(remote, [replace(ruleset, path=CANDIDATE_PATH, after_apply=False)])
    out = must(remote, sh(*apply_command(CANDIDATE_PATH, confirm_seconds)),
               "loading the firewall (nft -f)", timeout=60)
    say(remote.name, out.strip().splitlines()[-1] if out.strip() else "firewall loaded")
    started = time.monotonic()
    ok, out, err = remote.run_fresh(sh(*confirm_command()), timeout=CONNECT_TIMEOUT)
    if ok:
        say(remote.name, f"firewall confirmed over a new SSH connection "
                         f"({time.monotonic() - started:.1f}s)")
        return
    detail = (err or out).strip().splitlines()[-1:] or ["no answer"]
    say(remote.name, f"a new SSH connection failed ({detail[0]}): waiting for the firewall "
                     f"to revert by itself ({confirm_seconds}s)")
    time.sleep(max(0.0, confirm_seconds - (time.monotonic() - started)) + 3)
    ok, _, _ = remote.run(sh(*reverted_command(CANDIDATE_PATH)), timeout=60)
    state = ("it reverted to the previous ruleset" if ok else
             f"it did NOT report a revert: check {STATE_DIR}/revert.log on the host from "
             "its console")
    raise RolloutError(
        f"{remote.name}: the new firewall shut this controller out (a new SSH connection "
        f"failed: {detail[0]}); {state}. Check group_data admin_sources (the controller must "
        "be one of them) and re-run.")
