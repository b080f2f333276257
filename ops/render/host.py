"""Assemble every file of one host, and of a whole environment.

Pure: data in, `RenderedFile`s out. No host, no Vault, no subprocess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ops.catalog.model import Environment
from ops.firewall import ruleset as firewall_ruleset
from ops.render import (
    alertmanager,
    backup,
    compose,
    databases,
    dbha,
    grafana,
    logs,
    pitr,
    probes,
    prometheus,
    redis_acl,
    sidecar_metrics,
    tls,
    traefik,
)
from ops.render.files import DATA_DIR, ENV_DIR, TEXTFILE_DIR, RenderedFile
from ops.render.secrets import SecretValues

DEFAULT_SLOT = "a"


def render_host(environment: Environment, host_name: str, secrets: SecretValues,
                slots: Mapping[str, str] | None = None) -> list[RenderedFile]:
    """Every file for `host_name`, sorted by path.

    `slots` maps service -> live slot (`a`/`b`, default `a`): the compose file is rendered for
    that slot and the Traefik dynamic file points at it.
    """
    host = environment.host(host_name)
    slots = slots or {}
    # (the module, not its names: ops.firewall imports the renderers' ports, a cycle when it is
    # imported first; its functions are looked up here, at call time)
    files = in_unit("firewall", [RenderedFile(
        firewall_ruleset.RULESET_PATH, firewall_ruleset.render_ruleset(environment, host),
        mode=0o600, after_apply=True)])  # the record of a CONFIRMED ruleset: ops/firewall/apply
    files += in_unit("edge", [compose.render_edge(environment, host),
                              *logs.render_shipper_files(environment, host)])
    if host.has_role("app"):
        files += in_unit("edge", [traefik.render_static(environment, host),
                                  *tls.render_files(environment, host, secrets)])
        for service in environment.services_on(host.name):
            slot = slots.get(service.name, DEFAULT_SLOT)
            files += in_unit(f"service:{service.name}",
                             compose.render_service(environment, service, host, slot, secrets))
            files += in_unit(f"route:{service.name}",
                             [traefik.render_dynamic(environment, service, host, slot)])
        files += in_unit("sidecar-metrics", sidecar_metrics.render_files(environment, host.name))
    # with db_ha: the cluster's parts on this host (etcd, Patroni, the router); [] on a host
    # with no part in it, or without db_ha. Applied across hosts by the cluster's own stage,
    # never by one host's rollout (ops/rollout/plan.py CLUSTER_UNIT)
    files += in_unit("dbha", dbha.render_files(environment, host, secrets))
    if host.has_role("db"):
        files += in_unit("data", compose.render_data(environment, host, secrets))
        if host.name == environment.db_host.name:  # Redis: the first db host only
            files += in_unit("redis-acl", redis_acl.render_files(environment, secrets))
        files += in_unit("databases",
                         databases.render_provisioning(environment, host, secrets))
        if environment.db_ha is None or host.name == environment.db_host.name:
            # with db_ha, the first db host dumps from its own member (ops/render/backup.py)
            files += in_unit("backup", backup.render_files(environment, host, secrets))
        if pitr.enabled(environment):
            files += in_unit("pitr", pitr.render_db_files(environment, secrets))
    if host.has_role("backup") and pitr.enabled(environment):
        files += in_unit("backup-repo", pitr.render_backup_host_files(environment, host, secrets))
    if host.has_role("monitoring"):
        files += in_unit("monitoring", [compose.render_monitoring(environment, host),
                                        *logs.render_store_files(environment, host)])
        files += in_unit("prometheus", [prometheus.render_config(environment, host.name),
                                        *prometheus.render_rules(environment)])
        files += in_unit("alertmanager", [alertmanager.render_config(environment, secrets)])
        files += in_unit("blackbox", [probes.render_config(environment)])
        files += in_unit("grafana", grafana.render_files(environment))
    paths = [f.path for f in files]
    if len(paths) != len(set(paths)):
        raise AssertionError(f"two artifacts render the same path on {host_name}")
    return sorted(files, key=lambda f: f.path)


def in_unit(unit: str, files: list[RenderedFile]) -> list[RenderedFile]:
    """Tag files with the deploy unit they belong to (see RenderedFile.unit)."""
    return [replace(f, unit=unit) for f in files]


def render_environment(environment: Environment, secrets: SecretValues,
                       slots: Mapping[str, Mapping[str, str]] | None = None,
                       ) -> dict[str, list[RenderedFile]]:
    """host name -> its files, hosts in rollout order. `slots`: host -> service -> slot."""
    slots = slots or {}
    return {h.name: render_host(environment, h.name, secrets, slots.get(h.name))
            for h in environment.hosts}


def host_directories(environment: Environment, host_name: str) -> list[tuple[str, int, int]]:
    """Directories the deploy must create before starting containers: (path, mode, owner uid).

    Data directories are owned by the process that writes them.
    """
    host = environment.host(host_name)
    uids = environment.settings["data_uids"]
    dirs = [(ENV_DIR, 0o700, 0), (TEXTFILE_DIR, 0o755, 0), *logs.directories()]
    if host.has_role("app") and tls.uses_acme(environment):
        dirs += [(tls.ACME_DIR, 0o700, tls.TRAEFIK_UID)]  # Traefik's ACME account and certs
    dirs += dbha.directories(environment, host)
    if host.has_role("db"):
        dirs += [*([(f"{DATA_DIR}/postgres", 0o700, 0)]  # the entrypoint chowns it
                   if environment.db_ha is None else []),
                 (databases.PROVISION_DIR, 0o700, 0),
                 (pitr.PGBR_DIR, 0o755, 0)]
        if host.name == environment.db_host.name:
            dirs += [(redis_acl.LOAD_DIR, 0o700, 0),
                     (f"{DATA_DIR}/redis", 0o700, uids["redis"])]
    if host.has_role("backup") and pitr.enabled(environment):
        dirs += [(pitr.S3_DATA, 0o700, uids["seaweedfs"])]
    if host.has_role("monitoring"):
        dirs += [(f"{DATA_DIR}/prometheus", 0o700, uids["prometheus"]),
                 (f"{DATA_DIR}/alertmanager", 0o700, uids["alertmanager"]),
                 *logs.store_directories(environment)]
    return dirs
