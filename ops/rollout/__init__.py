"""The rollout: from a plan to hosts running it, one host at a time.

- `plan`: desired (rendered) vs actual (the host snapshot), per host. Pure.
- `stages`: the `@deploy` stages `deploy.py` and `tasks/rollback.py` put in order.
- `run`: the run context those stages share (environment, release, states, secrets, plans).
- `engine`: the host-by-host loop: pull, in-place config, migrations, swap, record.
- `swap`: one host's slot swap (new slot up, healthy, route switched, old slot stopped).
- `lock`: the environment's deploy lock.
- `ledger`: the release record on the hosts, and picking a release from it.
- `steps`: the checked-command and upload helpers every step uses.
"""
