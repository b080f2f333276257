"""The `backup` unit of the db host: nightly pg_dump of every database, by cron.

Pure: the environment (and the postgres password, for the 0600 pgpass file) in, files out.

Files (all on the db host; the deploy uploads them, cron picks the cron files up by itself):

* `/opt/superapp/backup/pg_backup.sh` (0755): what cron runs, `pg_backup.sh <database>`. Runs
  `pg_tools.sh dump` in a one-off container of the postgres image (so pg_dump always matches the
  server and the host needs only docker, coreutils and flock), then on the host: checksum,
  manifest, atomic renames, retention, metrics for node-exporter, one log line.
* `/opt/superapp/backup/pg_tools.sh` (0755): runs INSIDE the postgres image; `dump` (pg_dump -Fc,
  row counts read from the same stream, optional encryption) and `restore-check` (restore into
  a scratch database, print row counts, drop it) for the drill (ops/backup/drill.py) and the
  runbook.
* `/etc/superapp/backup/pgpass` (0600, secret): the postgres superuser's password, mounted into
  that container read-only (PGPASSFILE): never on a command line, in the environment or a log.
* `/etc/superapp/backup/recipient.pem` (0644), only with `backups.encrypt_to_public_key`: the
  certificate dumps are encrypted to; the private key never reaches the host.
* `/etc/cron.d/superapp-backup-<database>` (0644), one per database, staggered by
  `STAGGER_MINUTES` from `backups.schedule`.
* `/opt/superapp/backup/offsite.py` (0644), with `pitr`: after each dump, pg_backup.sh runs it
  in a one-off postgres container to copy every complete backup, encrypted with the
  repository's passphrase, into the pgBackRest bucket on the backup host (and to apply the same
  retention rule there, over the copies and the backups here together: a host rebuilt empty
  keeps the older copies), so the dumps survive the db host too.
"""

from __future__ import annotations

from ops.catalog.model import Environment, Host
from ops.render import pitr
from ops.render.files import BASE, TEMPLATES_DIR, TEXTFILE_DIR, RenderedFile, render_template
from ops.render.secrets import SecretValues

BACKUP_BIN_DIR = f"{BASE}/backup"
BACKUP_SCRIPT = f"{BACKUP_BIN_DIR}/pg_backup.sh"
TOOLS_SCRIPT = f"{BACKUP_BIN_DIR}/pg_tools.sh"
OFFSITE_SCRIPT = f"{BACKUP_BIN_DIR}/offsite.py"
CONFIG_DIR = "/etc/superapp/backup"
PGPASS_FILE = f"{CONFIG_DIR}/pgpass"
RECIPIENT_FILE = f"{CONFIG_DIR}/recipient.pem"
BACKUP_ROOT = "/var/backups/superapp"
LOG_FILE = f"{BACKUP_ROOT}/backup.log"
CRON_PREFIX = "/etc/cron.d/superapp-backup-"
POSTGRES_CONTAINER = "postgres"  # its name on the docker network (ops/render/compose.py)
STAGGER_MINUTES = 3
# Where the directories above appear inside the one-off postgres container.
IN_CONTAINER = {"tools": "/backup/pg_tools.sh", "config": "/backup/config", "out": "/backup/out"}


def databases(environment: Environment) -> list[str]:
    """Every database of the catalog, in catalog order (the stagger order)."""
    return [s.database for s in environment.services.values() if s.database]


def staggered_schedule(schedule: str, index: int) -> str:
    """`schedule` moved `index * STAGGER_MINUTES` minutes later (minute and hour fields).

    The catalog rules require a plain minute and an hour that is a number or `*`.
    """
    minute, hour, *rest = schedule.split()
    total = int(minute) + index * STAGGER_MINUTES
    if hour == "*":
        return " ".join([str(total % 60), hour, *rest])
    if total >= 60 and rest[:3] != ["*", "*", "*"]:
        raise ValueError(f"backups.schedule {schedule!r}: staggering {index + 1} databases "
                         "crosses the hour; restricted day fields would shift")
    return " ".join([str(total % 60), str((int(hour) + total // 60) % 24), *rest])


def cron_command(database: str) -> str:
    """The command of the cron line (the integration test runs exactly this over SSH)."""
    return f"{BACKUP_SCRIPT} {database} >>{LOG_FILE} 2>&1"


def pgpass_line(user: str, password: str) -> str:
    r"""A ~/.pgpass line for any host, port and database (`:` and `\` escaped as libpq wants)."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    if "\n" in password:
        raise ValueError(f"the password of {user} contains a newline; pgpass cannot hold it")
    return f"*:*:*:{user}:{escaped}"


def render_files(environment: Environment, host: Host, secrets: SecretValues) -> list[RenderedFile]:
    """With `db_ha` on the first db host only: pg_dump reads its own member, leader or
    replica (a consistent snapshot either way; Patroni's `hot_standby_feedback` keeps the
    leader's vacuum from cancelling a long dump on a replica), so one set of dumps and of
    offsite copies exists, as with one server. The WAL archive and pgBackRest's backups
    follow the leader (ops/render/pitr.py)."""
    from ops.render.compose import postgres_container

    settings = environment.settings["backups"]
    names = databases(environment)
    certificate = settings["encrypt_to_public_key"]
    context = {
        "env": environment.name, "image": environment.infra_image("postgres"),
        "network": environment.settings["docker_network"]["name"],
        "pghost": postgres_container(environment), "backup_root": BACKUP_ROOT,
        "config_dir": CONFIG_DIR,
        "tools": TOOLS_SCRIPT, "textfile_dir": TEXTFILE_DIR, "inside": IN_CONTAINER,
        "keep_daily": settings["keep_daily"], "keep_weekly": settings["keep_weekly"],
        "encrypt": bool(certificate), "recipient": RECIPIENT_FILE.rsplit("/", 1)[1],
        "databases": names, "offsite": pitr.enabled(environment), "offsite_script": OFFSITE_SCRIPT,
        "pgbr_dir": pitr.PGBR_DIR,
    }
    password = secrets.get(environment.superuser_password_ref()) or ""
    files = [
        RenderedFile(BACKUP_SCRIPT, render_template("backup/pg_backup.sh.j2", **context),
                     mode=0o755),
        RenderedFile(TOOLS_SCRIPT, render_template("backup/pg_tools.sh.j2", **context),
                     mode=0o755),
        RenderedFile(PGPASS_FILE, pgpass_line("postgres", password) + "\n", mode=0o600,
                     secret=True),
    ]
    if certificate:
        files.append(RenderedFile(RECIPIENT_FILE, certificate.strip() + "\n"))
    if context["offsite"]:
        files.append(RenderedFile(OFFSITE_SCRIPT, (TEMPLATES_DIR / "backup" / "offsite.py")
                                  .read_text()))  # as is: Python, not Jinja
    for index, name in enumerate(names):
        files.append(RenderedFile(f"{CRON_PREFIX}{name}", render_template(
            "backup/cron.j2", env=environment.name, database=name,
            schedule=staggered_schedule(settings["schedule"], index),
            command=cron_command(name))))
    return files
