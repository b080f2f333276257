"""Central logs: an rsyslog shipper on every host and an rsyslog store on the monitoring host.

Why this shape:
- Containers keep Docker's `json-file` driver: `docker logs` works as before, and a dead
  shipper never stops a container from starting (the `syslog` driver would). The shipper tails
  the json-file logs (imfile, inotify) with the container's `superapp.*` labels that Docker
  writes into every line (`labels` log option, see ops/render/compose.py).
- The old slot's lines are read within milliseconds of being written and then wait in the
  shipper's disk-assisted queue, so removing a slot's containers at a swap loses nothing.
- RELP (acknowledged, reconnecting) to the store; while the store is down, records queue on
  disk on each host (bounded by `logs.queue_max_disk`) and survive a shipper restart (but
  the one record being retried at that moment: rsyslog #2710).
- The store writes `<service>/<YYYY-MM-DD>.jsonl`: plain files that `make logs`, grep and
  retention by day (a cron job) all understand, with no database to run.

The backup jobs' log files (plain text, written by cron) are shipped the same way as service
`backup` and `pitr`.

Delivery is watched end to end: every host appends a heartbeat line a minute to a file the
shipper tails (service `log-heartbeat`); the monitoring host turns the newest one of each host
found in the store into `superapp_logs_heartbeat_timestamp_seconds{shipper=<host>}`, and
LogsNotShipped fires when one is older than `logs.heartbeat_max_age_seconds` or missing: a
stopped shipper, a stopped store or a cut between them, whichever it is.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ops.catalog.model import Environment, Host
from ops.render.backup import BACKUP_ROOT
from ops.render.files import BASE, DATA_DIR, TEXTFILE_DIR, RenderedFile, cron, render_template

CONF_DIR = f"{BASE}/logs"
SHIPPER_CONF = f"{CONF_DIR}/shipper.conf"
STORE_CONF = f"{CONF_DIR}/store.conf"
LOGS_DIR = f"{DATA_DIR}/logs"
SHIPPER_SPOOL = f"{LOGS_DIR}/shipper"
STORE_SPOOL = f"{LOGS_DIR}/store-spool"
STORE_DIR = f"{LOGS_DIR}/store"  # on the monitoring host: <service>/<YYYY-MM-DD>.jsonl
RETENTION_CRON = "/etc/cron.d/superapp-logs-retention"
# Docker's default data root; its json-file logs are <id>/<id>-json.log under it.
DOCKER_CONTAINERS_DIR = "/var/lib/docker/containers"
BACKUP_LOG_DIR = BACKUP_ROOT
# plain-text job logs shipped as their own "service": file name -> service
HEARTBEAT_SERVICE = "log-heartbeat"
JOB_LOGS = {"backup.log": "backup", "pitr.log": "pitr", "heartbeat.log": HEARTBEAT_SERVICE}
HEARTBEAT_LOG = f"{BACKUP_LOG_DIR}/heartbeat.log"
HEARTBEAT_SCRIPT = f"{CONF_DIR}/heartbeat.sh"
HEARTBEAT_CRON = "/etc/cron.d/superapp-logs-heartbeat"
HEARTBEAT_METRICS_SCRIPT = f"{CONF_DIR}/heartbeat_metrics.sh"
HEARTBEAT_METRICS_CRON = "/etc/cron.d/superapp-logs-heartbeat-metrics"
HEARTBEAT_MARKER = "superapp-log-heartbeat"  # "<marker> <host> <unix time>"
HEARTBEAT_MAX_LINES = 1440  # a day of lines, then the file is emptied

IN_CONTAINER_CONF = "/etc/superapp-logs"
IN_CONTAINER_SPOOL = "/var/spool/rsyslog"
IN_CONTAINER_STORE = "/var/log/superapp"
IN_CONTAINER_JOB_LOGS = "/var/log/superapp-jobs"
CONF_VOLUME = f"{CONF_DIR}:{IN_CONTAINER_CONF}:ro"
SHIPPER_CONTAINER = "log-shipper"
STORE_CONTAINER = "log-store"
MAX_MESSAGE_SIZE = "64k"
MAX_DATA_SIZE = 65536  # a RELP frame: one record (the message plus its JSON fields)
QUEUE_SIZE = 1000000  # records the disk queue holds (queue_max_disk bounds its bytes)

# Container labels Docker copies into every json-file line (the `labels` log option).
LOG_LABELS = ("superapp.service", "superapp.slot", "superapp.container")


def settings(environment: Environment) -> dict[str, Any]:
    return environment.settings["logs"]


def shipper_conf(environment: Environment, host: Host) -> str:
    s = settings(environment)
    store = environment.monitoring_host
    return render_template(
        "logs/shipper.conf.j2", host=host.name, env=environment.name, store_host=store.name,
        store_address=store.address, port=s["port"], spool=IN_CONTAINER_SPOOL,
        queue_max_disk=s["queue_max_disk"], queue_size=QUEUE_SIZE,
        max_message_size=MAX_MESSAGE_SIZE, containers_dir=DOCKER_CONTAINERS_DIR,
        job_logs={f"{IN_CONTAINER_JOB_LOGS}/{name}": service
                  for name, service in JOB_LOGS.items()})


def store_conf(environment: Environment, host: Host) -> str:
    s = settings(environment)
    return render_template(
        "logs/store.conf.j2", host=host.name, env=environment.name, port=s["port"],
        spool=IN_CONTAINER_SPOOL, store_dir=IN_CONTAINER_STORE,
        retention_days=s["retention_days"], max_message_size=MAX_MESSAGE_SIZE,
        max_data_size=MAX_DATA_SIZE)


def rsyslog_container(environment: Environment, key: str, conf_name: str, conf: str,
                      user: str, volumes: list[str], ports: list[str] | None = None
                      ) -> dict[str, Any]:
    """An rsyslog container running `conf` (`volumes` mount CONF_VOLUME): read-only root, no
    capabilities, 30 s to write its in-memory queue out on stop. rsyslog reads its config only
    at start, so the config's hash is a label: a changed one recreates the container."""
    return {
        "key": key,
        "image": environment.infra_image("rsyslog"),
        "container_name": key,
        "command": ["rsyslogd", "-n", "-f", f"{IN_CONTAINER_CONF}/{conf_name}",
                    "-i", "/tmp/rsyslogd.pid"],
        **({"ports": ports} if ports else {}),
        "volumes": volumes,
        "user": user, "read_only": True, "tmpfs": ["/tmp"], "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "stop_grace_period": "30s",
        "mem_limit": "256m",
        "cpus": 0.5,
        "labels": {"superapp.logs-conf-sha256": hashlib.sha256(conf.encode()).hexdigest()},
    }


def shipper_container(environment: Environment, host: Host) -> dict[str, Any]:
    """Runs as root without capabilities: root owns Docker's log files (0640) and their
    directories, nothing else is needed; the filesystem is read-only but the spool."""
    return rsyslog_container(
        environment, SHIPPER_CONTAINER, "shipper.conf", shipper_conf(environment, host), "0:0",
        [f"{DOCKER_CONTAINERS_DIR}:{DOCKER_CONTAINERS_DIR}:ro",
         f"{BACKUP_LOG_DIR}:{IN_CONTAINER_JOB_LOGS}:ro", CONF_VOLUME,
         f"{SHIPPER_SPOOL}:{IN_CONTAINER_SPOOL}"])


def store_container(environment: Environment, host: Host) -> dict[str, Any]:
    """Unprivileged: it owns the store and its spool (group_data `data_uids.log_store`)."""
    uid = environment.settings["data_uids"]["log_store"]
    port = settings(environment)["port"]
    return rsyslog_container(
        environment, STORE_CONTAINER, "store.conf", store_conf(environment, host),
        f"{uid}:{uid}",
        [CONF_VOLUME, f"{STORE_DIR}:{IN_CONTAINER_STORE}",
         f"{STORE_SPOOL}:{IN_CONTAINER_SPOOL}"],
        ports=[f"{host.address}:{port}:{port}"])


def render_shipper_files(environment: Environment, host: Host) -> list[RenderedFile]:
    heartbeat = render_template("logs/heartbeat.sh.j2", host=host.name, env=environment.name,
                                log=HEARTBEAT_LOG, marker=HEARTBEAT_MARKER,
                                max_lines=HEARTBEAT_MAX_LINES)
    return [RenderedFile(SHIPPER_CONF, shipper_conf(environment, host)),
            RenderedFile(HEARTBEAT_SCRIPT, heartbeat, mode=0o755),
            RenderedFile(HEARTBEAT_CRON, cron("a heartbeat line through the central logs",
                                              [f"* * * * * root {HEARTBEAT_SCRIPT}"],
                                              source="ops/render/logs.py"))]


def render_store_files(environment: Environment, host: Host) -> list[RenderedFile]:
    days = settings(environment)["retention_days"]
    # -mtime +N: last written more than N whole days ago; a day's file is written all day
    prune = (f"17 3 * * * root find {STORE_DIR} -name '*.jsonl' -type f -mtime +{days} "
             f"-delete; find {STORE_DIR} -mindepth 1 -type d -empty -delete")
    metrics = render_template("logs/heartbeat_metrics.sh.j2", host=host.name,
                              env=environment.name, textfile_dir=TEXTFILE_DIR,
                              store_dir=f"{STORE_DIR}/{HEARTBEAT_SERVICE}",
                              marker=HEARTBEAT_MARKER)
    return [RenderedFile(STORE_CONF, store_conf(environment, host)),
            RenderedFile(RETENTION_CRON, cron(f"central logs kept {days} days", [prune],
                                              source="ops/render/logs.py")),
            RenderedFile(HEARTBEAT_METRICS_SCRIPT, metrics, mode=0o755),
            RenderedFile(HEARTBEAT_METRICS_CRON, cron(
                "when each host's newest heartbeat reached the central logs (LogsNotShipped)",
                [f"* * * * * root {HEARTBEAT_METRICS_SCRIPT}"], source="ops/render/logs.py"))]


def directories() -> list[tuple[str, int, int]]:
    """(path, mode, owner) the shipper needs on every host."""
    return [(LOGS_DIR, 0o700, 0), (SHIPPER_SPOOL, 0o700, 0), (BACKUP_LOG_DIR, 0o750, 0)]


def store_directories(environment: Environment) -> list[tuple[str, int, int]]:
    uid = environment.settings["data_uids"]["log_store"]
    return [(STORE_DIR, 0o750, uid), (STORE_SPOOL, 0o700, uid)]
