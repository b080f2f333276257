"""Prepare the environment's Vault: policies, AppRoles, and every missing secret of the schema.

    VAULT_TOKEN=<operator token> pyinfra -y inventories/<env>.py tasks/bootstrap_vault.py
    pyinfra inventories/<env>.py tasks/bootstrap_vault.py --dry    # says what it would create

Controller only: no host is touched. While pyinfra prepares, Vault is only read and the plan is
printed (so `--dry`, and the confirmation prompt without `-y`, show it); the writes happen in one
`python.call` that runs once (`_run_once`), which `--dry` never executes. Prints names, never
values. The logic lives in ops/secrets/bootstrap.py (`python -m ops.secrets.bootstrap <env>`).
"""

from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from ops.catalog import ConfigError, load_environment
from ops.rollout.run import env_name
from ops.scope import current_scope
from ops.secrets.bootstrap import bootstrap
from ops.secrets.vault import VaultError


def plan(env: str) -> None:
    """Print what the bootstrap would create (Vault is only read)."""
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
# pyinfra executes this file once per host while preparing: the plan is printed once per run.
current_scope().once(("bootstrap-plan", ENV), lambda: plan(ENV))
python.call(name=f"Bootstrap Vault for {ENV}: policies, AppRoles, missing secrets",
            function=apply, env=ENV, _run_once=True)
