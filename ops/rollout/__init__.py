"""The rollout: from a plan to hosts running it, one host at a time.

- `plan`: desired (rendered) vs actual (the host snapshot), per host. Pure.
- `stages`: the `@deploy` stages `deploy.py` and `tasks/rollback.py` put in order.
- `rollback`: the rollback's own stage: pick the release to restore, say what changes.
- `run`: the run context those stages share (environment, release, states, secrets, plans).
- `engine`: the host-by-host loop: pull, in-place config, migrations, swap, record.
- `swap`: one host's slot swap (new slot up, healthy, route switched, old slot stopped).
- `lock`: the environment's deploy lock.
- `ledger`: the release record written to every host of a run (fsynced, checked).
- `history`: the releases merged from all ledgers, and the one a rollback restores. Pure.
- `steps`: the checked-command and upload helpers every step uses.
"""
