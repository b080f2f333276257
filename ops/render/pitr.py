"""Continuous archiving and point-in-time recovery: pgBackRest on the db host, its repository
an S3 bucket (SeaweedFS over HTTPS) on the `backup` host. Pure: environment and secrets in,
files out.

Why S3 on a host of our own: in a region where cloud object storage is slow or unreachable for
hours, the repository must be on hardware we run, yet speak a protocol every tool and every
later provider understands; moving it to a managed bucket is a config change, not a redesign.
pgBackRest talks to it directly (no SSH keys, no second pgBackRest server), TLS with the
endpoint's certificate pinned, and encrypts every file before it leaves the db host.

db host (unit `pitr`): `/etc/superapp/pgbackrest/pgbackrest.conf` (0600, postgres; repository
keys and cipher passphrase), `repo-ca.crt` (the pinned certificate), `pitr.sh` and
`pitr_metrics.py` (ops/render/pitr's jobs), the cron file, and the `pitr-ready` marker, uploaded
by the rollout only after `pitr.sh setup` succeeded (ops/rollout/engine.py).
backup host (unit `backup-repo`): the `sa-backup` compose project (container `s3`), its identity
file and TLS key (0600, the S3 server's uid), the same pgbackrest.conf (for the restore drill,
which restores there, off the db host), and the repository volume's metrics job.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ops.catalog.model import Environment, Host
from ops.render.files import (
    BASE,
    DATA_DIR,
    TEMPLATES_DIR,
    TEXTFILE_DIR,
    RenderedFile,
    cron,
    render_template,
)
from ops.render.secrets import SecretValues
from ops.secrets.tls import split_bundle

PGBR_DIR = "/etc/superapp/pgbackrest"
PGBR_CONF = f"{PGBR_DIR}/pgbackrest.conf"
REPO_CA = f"{PGBR_DIR}/repo-ca.crt"
READY_MARKER = f"{PGBR_DIR}/pitr-ready"
IN_CONTAINER_DIR = "/etc/pgbackrest"  # where PGBR_DIR is mounted (pgBackRest's default)
PITR_SCRIPT = f"{BASE}/backup/pitr.sh"
METRICS_SCRIPT = f"{BASE}/backup/pitr_metrics.py"
VOLUME_SCRIPT = f"{BASE}/backup/volume_metrics.sh"
PITR_LOG = "/var/backups/superapp/pitr.log"
CRON_FILE = "/etc/cron.d/superapp-pitr"
VOLUME_CRON_FILE = "/etc/cron.d/superapp-repo-volume"  # not superapp-backup-*: the dump jobs
S3_DIR = "/etc/superapp/s3"
S3_DATA = f"{DATA_DIR}/s3"
S3_CONTAINER = "s3"


def enabled(environment: Environment) -> bool:
    return bool(environment.settings.get("pitr")) and environment.backup_host is not None


def archive_args(environment: Environment) -> list[str]:
    """postgres `-c` flags that archive every WAL segment through pgBackRest ([] without pitr).

    archive_timeout bounds the RPO of a quiet cluster; the heartbeat row written every minute
    (pitr_metrics.py) gives it something to ship.
    """
    if not enabled(environment):
        return []
    pitr = environment.settings["pitr"]
    flags = {"wal_level": "replica", "archive_mode": "on",
             "archive_command": f"pgbackrest --stanza={pitr['stanza']} archive-push %p",
             "archive_timeout": str(pitr["archive_timeout_seconds"])}
    return [arg for key, value in flags.items() for arg in ("-c", f"{key}={value}")]


def postgres_uid(environment: Environment) -> int:
    """The uid the db hosts' PostgreSQL runs as, which reads pgbackrest.conf there: Patroni's
    image's postgres with `db_ha` (ops/render/dbha.py), the single PostgreSQL's otherwise."""
    return environment.settings["data_uids"]["patroni" if environment.db_ha else "postgres"]


def config(environment: Environment, secrets: SecretValues, uid: int) -> str:
    refs = environment.pitr_refs()
    return render_template(
        "pitr/pgbackrest.conf.j2", env=environment.name, pitr=environment.settings["pitr"],
        backup=environment.backup_host, uid=uid,
        access_key=secrets.get(refs["access_key"]) or "",
        secret_key=secrets.get(refs["secret_key"]) or "",
        cipher=secrets.get(refs["cipher"]) or "")


def certificate(environment: Environment, secrets: SecretValues) -> str:
    return split_bundle(secrets.get(environment.pitr_refs()["tls"]) or "")[1]


def pgbackrest_files(environment: Environment, secrets: SecretValues,
                     uid: int) -> list[RenderedFile]:
    """The config and pinned certificate, alike on the db host and the backup host; `uid`:
    the PostgreSQL that reads it there (the config is 0600)."""
    conf = config(environment, secrets, uid)
    return [RenderedFile(PGBR_CONF, conf, mode=0o600, secret=True, owner=uid),
            RenderedFile(REPO_CA, certificate(environment, secrets))]


def render_db_files(environment: Environment, secrets: SecretValues) -> list[RenderedFile]:
    from ops.render.compose import postgres_container

    pitr = environment.settings["pitr"]
    backup = environment.backup_host
    assert backup is not None  # enabled()
    script = render_template("pitr/pitr.sh.j2", stanza=pitr["stanza"], backup_host=backup.name,
                             textfile_dir=TEXTFILE_DIR, metrics_script=METRICS_SCRIPT,
                             container=postgres_container(environment),
                             cluster=environment.db_ha is not None)
    metrics = (TEMPLATES_DIR / "pitr" / "pitr_metrics.py").read_text()  # as is: not Jinja
    files = pgbackrest_files(environment, secrets, postgres_uid(environment))
    digest = hashlib.sha256("\0".join(f.content for f in files).encode()).hexdigest()
    return [*files,
            RenderedFile(PITR_SCRIPT, script, mode=0o755),
            RenderedFile(METRICS_SCRIPT, metrics),
            RenderedFile(CRON_FILE, cron("pgBackRest: full weekly, differential daily, metrics "
                                         "every minute", [
                f"{pitr['full_schedule']} root {PITR_SCRIPT} backup full >>{PITR_LOG} 2>&1",
                f"{pitr['diff_schedule']} root {PITR_SCRIPT} backup diff >>{PITR_LOG} 2>&1",
                f"* * * * * root {PITR_SCRIPT} metrics >/dev/null 2>>{PITR_LOG}"])),
            RenderedFile(READY_MARKER, digest + "\n", after_apply=True)]


def s3_identities(environment: Environment, secrets: SecretValues) -> str:
    """SeaweedFS's S3 identity file: one identity, allowed on the repository's bucket only."""
    refs, bucket = environment.pitr_refs(), environment.settings["pitr"]["bucket"]
    return json.dumps({"identities": [{
        "name": "pgbackrest",
        "credentials": [{"accessKey": secrets.get(refs["access_key"]) or "",
                         "secretKey": secrets.get(refs["secret_key"]) or ""}],
        "actions": [f"{a}:{bucket}" for a in ("Read", "Write", "List", "Tagging")],
    }]}, indent=2) + "\n"


def s3_container(environment: Environment, host: Host) -> dict[str, Any]:
    from ops.render.compose import common, hardened, healthcheck

    pitr, uid = environment.settings["pitr"], environment.settings["data_uids"]["seaweedfs"]
    return {
        "key": S3_CONTAINER,
        "image": environment.infra_image("seaweedfs"),
        "container_name": S3_CONTAINER,
        # master, volume, filer and S3 in one process; the bucket is created at start
        "command": ["mini", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=0.0.0.0",
                    "-admin.ui=false", f"-bucket={pitr['bucket']}", f"-s3.port={S3_PORT}",
                    "-s3.config=/etc/seaweedfs/s3.json", "-s3.cert.file=/etc/seaweedfs/tls.crt",
                    "-s3.key.file=/etc/seaweedfs/tls.key"],
        "ports": [f"{host.address}:{pitr['port']}:{S3_PORT}"],
        "volumes": [f"{S3_DIR}:/etc/seaweedfs:ro", f"{S3_DATA}:/data"],
        **hardened(f"{uid}:{uid}"),
        "healthcheck": healthcheck(environment, ["CMD", *S3_READY_CHECK]),
        "stop_grace_period": "30s",
        "mem_limit": "512m",
        **common(environment),
    }


S3_PORT = 8333  # inside the container; published on `pitr.port` of the host's address
# Inside the container: the S3 port accepts connections (bash's /dev/tcp: no nc -z in Debian's
# busybox, and an unsigned HTTP request only gets 403).
S3_READY_CHECK = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{S3_PORT}"]


def render_backup_host_files(environment: Environment, host: Host,
                             secrets: SecretValues) -> list[RenderedFile]:
    from ops.render.compose import compose_path, render_project

    uid = environment.settings["data_uids"]["seaweedfs"]
    key, cert = split_bundle(secrets.get(environment.pitr_refs()["tls"]) or "")
    volume = render_template("pitr/volume_metrics.sh.j2", textfile_dir=TEXTFILE_DIR,
                             data_dir=S3_DATA)
    # the restore drill's copy of the config (a db host that is also the backup host, which
    # only `local` allows, has it already)
    # the restore drill runs the single PostgreSQL's image, db_ha or not
    drill = [] if host.has_role("db") else pgbackrest_files(
        environment, secrets, environment.settings["data_uids"]["postgres"])
    return [*drill,
        RenderedFile(compose_path("backup"), render_project(
            environment, host, "sa-backup", "backup: the pgBackRest repository (S3, SeaweedFS)",
            [s3_container(environment, host)])),
        RenderedFile(f"{S3_DIR}/s3.json", s3_identities(environment, secrets), mode=0o600,
                     secret=True, owner=uid),
        RenderedFile(f"{S3_DIR}/tls.key", key, mode=0o600, secret=True, owner=uid),
        RenderedFile(f"{S3_DIR}/tls.crt", cert),
        RenderedFile(VOLUME_SCRIPT, volume, mode=0o755),
        RenderedFile(VOLUME_CRON_FILE, cron("the repository volume's size and free space",
                                            [f"* * * * * root {VOLUME_SCRIPT}"])),
    ]
