"""The shell commands the restore drill and the rollout send to the db host. Pure: each returns
one string quoted by `ops.host.commands.sh`, and tests assert the exact text or run it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from ops.backup.manifest import BackupError, Manifest, parse_manifest
from ops.catalog.model import Environment
from ops.host.commands import sh
from ops.render.backup import (
    BACKUP_ROOT,
    BACKUP_SCRIPT,
    CONFIG_DIR,
    IN_CONTAINER,
    LOG_FILE,
    POSTGRES_CONTAINER,
    TOOLS_SCRIPT,
)
from ops.render.files import TEXTFILE_DIR


def read_latest_manifests_command(databases: Sequence[str]) -> str:
    """For each database: `### <db> <manifest name or none>` then that manifest's content."""
    loop = (
        'for d in {dbs}; do '
        'm=$(find {root}/"$d" -maxdepth 1 -name "$d-*.manifest" -printf "%f\\n" 2>/dev/null '
        '| sort | tail -n 1); '
        'echo "### $d ${{m:-none}}"; '
        'if [ -n "$m" ]; then cat {root}/"$d"/"$m"; fi; '
        'done'
    )
    return loop.format(dbs=" ".join(shlex.quote(d) for d in databases),
                       root=shlex.quote(BACKUP_ROOT))


def parse_latest_manifests(output: str) -> dict[str, Manifest | BackupError | None]:
    """Output of `read_latest_manifests_command` -> {db: newest Manifest, its error, or None}."""
    found: dict[str, Manifest | BackupError | None] = {}
    current, name, lines = None, "", []

    def flush() -> None:
        if current is None:
            return
        try:
            found[current] = parse_manifest("\n".join(lines), name) if name != "none" else None
        except BackupError as e:  # reported on that database's row, the others still run
            found[current] = e

    for line in output.splitlines():
        if line.startswith("### "):
            flush()
            _, current, name = line.split(" ", 2)
            lines = []
        else:
            lines.append(line)
    flush()
    return found


def verify_checksum_command(manifest: Manifest) -> str:
    """sha256 of the dump against the one recorded in its manifest (non-zero on mismatch)."""
    line = f"{manifest.sha256}  {manifest.file}"
    return f"cd {shlex.quote(manifest.directory)} && printf '%s\\n' {shlex.quote(line)} " \
           f"| sha256sum --check --strict --quiet -"


def scratch_name(database: str, token: str) -> str:
    """A scratch database for the drill: `drill_<db>_<token>` (pg_tools.sh insists on drill_*)."""
    return f"drill_{database.replace('-', '_')}_{token}"


def restore_check_command(environment: Environment, manifest: Manifest, scratch: str,
                          key_dir: str | None = None) -> str:
    """Restore the dump into `scratch` in a one-off postgres container; print row counts.

    `key_dir` (encrypted backups): a host directory holding `key.pem` and `cert.pem`. Into the
    db host's PostgreSQL; with `db_ha` into a server the container starts for itself (no
    network: the db host's member may be a replica, which takes no write).
    """
    scratch_server = environment.db_ha is not None
    network = "none" if scratch_server else environment.settings["docker_network"]["name"]
    argv = ["docker", "run", "--rm", "--network", network, "--entrypoint", "/bin/bash",
            "--volume", f"{TOOLS_SCRIPT}:{IN_CONTAINER['tools']}:ro",
            "--volume", f"{CONFIG_DIR}:{IN_CONTAINER['config']}:ro",
            "--volume", f"{manifest.directory}:{IN_CONTAINER['out']}:ro"]
    if key_dir:
        argv += ["--volume", f"{key_dir}:/backup/key:ro"]
    argv += (["--env", "PG_TOOLS_SCRATCH_SERVER=1"] if scratch_server else
             ["--env", f"PGHOST={POSTGRES_CONTAINER}", "--env", "PGUSER=postgres",
              "--env", f"PGPASSFILE={IN_CONTAINER['config']}/pgpass"])
    argv += [environment.infra_image("postgres"), IN_CONTAINER["tools"], "restore-check",
             f"{IN_CONTAINER['out']}/{manifest.file}", scratch]
    if key_dir:
        argv += ["/backup/key/key.pem", "/backup/key/cert.pem"]
    return sh(*argv)


def drop_scratch_command(scratch: str) -> str:
    """Safety net after a drill: the scratch database is gone even if the container was killed
    (the single server's drill only: see ops/backup/drill.py)."""
    if not re.fullmatch(r"drill_[a-z0-9_]+", scratch):
        raise ValueError(f"not a drill scratch database: {scratch!r}")
    return sh("docker", "exec", POSTGRES_CONTAINER, "psql", "-X", "-q", "-U", "postgres",
              "-d", "postgres", "-c", f'DROP DATABASE IF EXISTS "{scratch}"')


def first_backups_command(databases: Sequence[str]) -> str:
    """Back up, once, each database that has no complete backup yet (the `backup` unit's action
    on first install, so the drill and the freshness gate have something before the first
    night). Never fails the deploy: each run's one log line is printed for the progress output.
    """
    loop = (
        'for d in {dbs}; do '
        'if ! find {root}/"$d" -maxdepth 1 -name "$d-*.manifest" 2>/dev/null | grep -q .; then '
        '{script} "$d" 2>&1 | tee -a {log}; fi; '
        'done; true'
    )
    return loop.format(dbs=" ".join(shlex.quote(d) for d in databases),
                       root=shlex.quote(BACKUP_ROOT), script=shlex.quote(BACKUP_SCRIPT),
                       log=shlex.quote(LOG_FILE))


def read_backup_metrics_command() -> str:
    """The dump metrics of every database and the WAL archive's state (superapp_pitr.prom) on
    the db host: the freshness gate's one read."""
    return (f"cat {shlex.quote(TEXTFILE_DIR)}/superapp_backup_*.prom "
            f"{shlex.quote(TEXTFILE_DIR)}/superapp_pitr.prom 2>/dev/null; true")
