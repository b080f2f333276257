"""Restore drill: prove that the newest backup of every database restores, on the db host.

    pyinfra -y inventories/<env>.py tasks/restore_drill.py
    pyinfra -y inventories/<env>.py tasks/restore_drill.py --data databases=payments,taxi
    # encrypted backups (backups.encrypt_to_public_key): the key stays on the controller and
    # is uploaded into a 0700 directory under /run only for the drill
    pyinfra -y inventories/prod.py tasks/restore_drill.py \
        --data backup_key=/secure/backup-key.pem --data backup_cert=/secure/backup-cert.pem

Per database: newest manifest -> sha256 of the dump -> pg_restore into a scratch database
`drill_<db>_<random>` -> row counts equal those recorded at dump time -> scratch dropped. Prints
one row per database; any failure (missing, corrupt, unrestorable, rows differ) makes the run
exit non-zero with the reason on that database's row. The logic lives in ops/backup/; the
runbook it proves is ops/runbooks/restore.md.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from ops.backup.drill import run_drill
from ops.backup.manifest import BackupError
from ops.catalog import ConfigError, load_environment
from ops.host.remote import PyinfraRemote
from ops.rollout.run import env_name


def key_pair() -> tuple[bytes, bytes] | None:
    key, cert = host.data.get("backup_key"), host.data.get("backup_cert")
    if not key and not cert:
        return None
    if not (key and cert):
        raise PyinfraError("pass both --data backup_key=<file> and --data backup_cert=<file>")
    try:
        return Path(key).read_bytes(), Path(cert).read_bytes()
    except OSError as e:
        raise PyinfraError(f"cannot read the backup key pair: {e}") from None


def drill(state, host, env: str, databases: list[str] | None,  # noqa: ARG001 - pyinfra's args
          keys: tuple[bytes, bytes] | None) -> bool:
    environment = load_environment(env)
    print(f"--> restore drill on {host.name} ({env})", flush=True)
    try:
        report = run_drill(PyinfraRemote(host), environment, databases, keys)
    except BackupError as e:
        print(f"\nRESTORE DRILL FAILED: {e}", flush=True)
        return False
    print("\n" + report.table(), flush=True)
    if report.failed:
        names = ", ".join(r.database for r in report.failed)
        print(f"\nRESTORE DRILL FAILED for {len(report.failed)} database(s): {names}", flush=True)
        return False
    print(f"\nrestore drill ok: {len(report.rows)} database(s)", flush=True)
    return True


ENV = env_name()
try:
    ENVIRONMENT = load_environment(ENV)
except ConfigError as exc:
    raise PyinfraError(str(exc)) from None
if host.name == ENVIRONMENT.db_host.name:
    wanted = host.data.get("databases")
    python.call(name=f"Restore drill: newest backup of each database on {host.name}",
                function=drill, env=ENV,
                databases=[d for d in str(wanted).split(",") if d] if wanted else None,
                keys=key_pair())
