"""Prepare the environment's Vault: policies, AppRoles, and every missing secret of the schema.

    VAULT_TOKEN=<operator token> pyinfra -y inventories/<env>.py tasks/bootstrap_vault.py
    pyinfra inventories/<env>.py tasks/bootstrap_vault.py --dry    # says what it would create

Controller only: no host is touched. While pyinfra prepares, Vault is only read and the plan is
printed (so `--dry`, and the confirmation prompt without `-y`, show it); the writes happen in one
`python.call` that runs once (`_run_once`), which `--dry` never executes. Prints names, never
values. The logic lives in ops/vault_bootstrap.py (`python -m ops.vault_bootstrap <env>`).
"""

from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from ops import vault_bootstrap
from ops.catalog import ConfigError, load_environment
from ops.stages import env_name
from ops.vault import VaultError
from ops.vault_bootstrap import bootstrap

# pyinfra executes this file once per host while preparing; the set lives in an imported
# module (this file's globals are fresh each time), so the plan is printed once.
_planned = vault_bootstrap.PLANNED


def plan(env: str) -> None:
    if env in _planned:
        return
    _planned.add(env)
    try:
        report = bootstrap(load_environment(env), dry=True)
    except (ConfigError, VaultError) as exc:
        raise PyinfraError(str(exc)) from None
    for line in report.lines():
        print(f"--> {line}", flush=True)


def apply(env: str) -> None:
    try:
        report = bootstrap(load_environment(env), echo=lambda line: print(line, flush=True))
    except (ConfigError, VaultError) as exc:
        raise PyinfraError(str(exc)) from None
    if report.problems:
        raise PyinfraError(f"Vault bootstrap {env}: {len(report.problems)} problem(s), see above")


ENV = env_name()
plan(ENV)
python.call(name=f"Bootstrap Vault for {ENV}: policies, AppRoles, missing secrets",
            function=apply, env=ENV, _run_once=True)
