"""The database cluster's files on one host (group_data `db_ha`), by the host's part in it:
an etcd member, a Patroni member, a router (every app host). Pure: the environment, the host
and the secrets in, `RenderedFile`s out; the texts themselves come from ops.dbha.render.

One compose project per host, `sa-dbha`, beside the others:

- `etcd` publishes its client and peer ports on the host's address and advertises that
  address; its data in `/var/lib/superapp/etcd`;
- `patroni` publishes PostgreSQL and its REST API the same way (replication, pg_rewind and
  the routers come from other hosts' addresses, which is what pg_hba names); it runs as its
  image's postgres user, whose uid is `data_uids.patroni` (not the single PostgreSQL's: 102
  in Debian's packages as the testbed builds them, checked by tests/integration/test_db_ha.py),
  the owner of its 0600 files; its data in `/var/lib/superapp/patroni`; with `pitr` it
  archives to the environment's repository with the pgbackrest.conf the `pitr` unit renders
  on every db host (the members are the db hosts; owned by that uid then), mounted where the
  single PostgreSQL has it;
- `db-router` (HAProxy) on the superapp network, where the services reach it by that name;
  only its metrics port is published (Prometheus, from the monitoring host).

Each of etcd and Patroni gets its own copy of the host's certificate and key (each runs as its
image's own user, `data_uids.etcd` and `data_uids.patroni`: each key 0600 for its reader only).
etcd and HAProxy also run with a read-only root filesystem and no capability.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ops.catalog.model import Environment, Host
from ops.dbha import commands
from ops.dbha.render import (
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    ETCD_TLS,
    PATRONI_ETCD_TLS,
    PATRONI_PORT,
    POSTGRES_PORT,
    ROUTER_METRICS_PORT,
    Archive,
    Passwords,
    TlsFiles,
    etcd_environment,
    haproxy_cfg,
    patroni_yaml,
)
from ops.render import pitr
from ops.render.compose import common, compose_path, hardened, healthcheck, render_project
from ops.render.files import BASE, DATA_DIR, RenderedFile
from ops.render.secrets import SecretValues
from ops.secrets.tls import split_bundle

PROJECT = commands.PROJECT
DIR = f"{BASE}/dbha"
PATRONI_FILE = f"{DIR}/patroni.yml"
HAPROXY_FILE = f"{DIR}/haproxy.cfg"
TLS_DIR = f"{DIR}/tls"
ETCD_DATA = f"{DATA_DIR}/etcd"
PATRONI_DATA = f"{DATA_DIR}/patroni"
ROUTER_CONTAINER = commands.ROUTER_CONTAINER
FILES_LABEL = commands.FILES_LABEL


def parts(environment: Environment, host: Host) -> tuple[bool, bool, bool]:
    """(etcd member, Patroni member, router) for `host`; all False without `db_ha`."""
    cluster = environment.db_ha
    if cluster is None:
        return False, False, False
    def named(nodes) -> bool:
        return host.name in {n.name for n in nodes}
    return named(cluster.etcd), named(cluster.members), named(cluster.routers)


def passwords(environment: Environment, secrets: SecretValues) -> Passwords:
    refs = environment.dbha_refs()
    return Passwords(**{name: secrets.get(refs[name]) or ""
                        for name in ("superuser", "replication", "rewind", "rest_api")})


def archive(environment: Environment) -> Archive | None:
    """The environment's pgBackRest stanza when it has `pitr`: the leader archives to it."""
    if not pitr.enabled(environment):
        return None
    settings = environment.settings["pitr"]
    return Archive(stanza=settings["stanza"], timeout_seconds=settings["archive_timeout_seconds"])


def tls_files(environment: Environment, host: Host, secrets: SecretValues, part: str,
              inside: TlsFiles, owner: int) -> list[RenderedFile]:
    """The CA's certificate, the host's certificate and its key for one container (`part`),
    named as the container expects them (`inside`); the CA's key never leaves Vault."""
    refs = environment.dbha_refs()
    ca_cert = split_bundle(secrets.get(refs["ca"]) or "")[1]
    key, cert = split_bundle(secrets.get(refs[f"tls:{host.name}"]) or "")
    where = f"{TLS_DIR}/{part}"
    return [RenderedFile(f"{where}/{inside.ca.rsplit('/', 1)[1]}", ca_cert),
            RenderedFile(f"{where}/{inside.cert.rsplit('/', 1)[1]}", cert),
            RenderedFile(f"{where}/{inside.key.rsplit('/', 1)[1]}", key, mode=0o600, secret=True,
                         owner=owner)]


def mount(part: str, inside: TlsFiles) -> str:
    return f"{TLS_DIR}/{part}:{inside.ca.rsplit('/', 1)[0]}:ro"


def etcd_container(environment: Environment, host: Host) -> dict[str, Any]:
    uid = environment.settings["data_uids"]["etcd"]
    cluster = environment.db_ha
    assert cluster is not None
    node = next(n for n in cluster.etcd if n.name == host.name)
    return {
        "key": "etcd",
        "image": environment.infra_image("etcd"),
        "container_name": "etcd",
        "environment": etcd_environment(cluster, node),
        "ports": [f"{host.address}:{ETCD_CLIENT_PORT}:{ETCD_CLIENT_PORT}",
                  f"{host.address}:{ETCD_PEER_PORT}:{ETCD_PEER_PORT}"],
        "volumes": [f"{ETCD_DATA}:/var/lib/etcd", mount("etcd", ETCD_TLS)],
        **hardened(f"{uid}:{uid}"),
        "stop_grace_period": "30s",
        **common(environment),
    }


def patroni_container(environment: Environment, host: Host) -> dict[str, Any]:
    uid = environment.settings["data_uids"]["patroni"]
    volumes = [f"{PATRONI_DATA}:/var/lib/postgresql/data",
               f"{PATRONI_FILE}:{commands.PATRONI_CONFIG}:ro", mount("patroni", PATRONI_ETCD_TLS)]
    if pitr.enabled(environment):
        volumes.append(f"{pitr.PGBR_DIR}:{pitr.IN_CONTAINER_DIR}:ro")
    return {
        "key": "patroni",
        "image": environment.infra_image("patroni"),
        "container_name": commands.MEMBER_CONTAINER,
        "ports": [f"{host.address}:{POSTGRES_PORT}:{POSTGRES_PORT}",
                  f"{host.address}:{PATRONI_PORT}:{PATRONI_PORT}"],
        "volumes": volumes,
        "user": str(uid),  # the image's postgres (its own group)
        "security_opt": ["no-new-privileges:true"],
        # 200 from Patroni's REST API while its PostgreSQL runs, in any role
        "healthcheck": healthcheck(environment, ["CMD", *commands.rest_get("127.0.0.1",
                                                                           "/health")]),
        # Patroni stops PostgreSQL cleanly (a leader hands over first when it can)
        "stop_grace_period": "60s",
        **common(environment),
    }


def router_container(environment: Environment, host: Host) -> dict[str, Any]:
    uid = environment.settings["data_uids"]["haproxy"]
    return {
        "key": "db-router",
        "image": environment.infra_image("haproxy"),
        "container_name": ROUTER_CONTAINER,
        "ports": [f"{host.address}:{ROUTER_METRICS_PORT}:{ROUTER_METRICS_PORT}"],
        "volumes": [f"{HAPROXY_FILE}:/etc/haproxy/haproxy.cfg:ro"],
        # its ports are above 1024 and it writes nothing: no root, no capability
        **hardened(f"{uid}:{uid}"),
        "stop_grace_period": "10s",
        **common(environment),
    }


def with_files(container: dict[str, Any], files: list[RenderedFile]) -> dict[str, Any]:
    """`container` labelled with the digest of the files it reads at start: a changed file
    changes its definition, so `docker compose up` recreates exactly the containers whose
    files changed, and the cluster stage (ops.dbha.plan) sees which those are."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.mode:o}\0{f.owner}\0".encode())
        digest.update(hashlib.sha256(f.content.encode()).digest())
    return {**container, "labels": {FILES_LABEL: digest.hexdigest()}}


def render_files(environment: Environment, host: Host,
                 secrets: SecretValues) -> list[RenderedFile]:
    """Every file of the cluster on `host` ([] when it has no part in it)."""
    etcd, member, router = parts(environment, host)
    if not (etcd or member or router):
        return []
    cluster = environment.db_ha
    assert cluster is not None
    uid = environment.settings["data_uids"]["patroni"]
    containers, files = [], []
    if etcd:
        own = tls_files(environment, host, secrets, "etcd", ETCD_TLS,
                        owner=environment.settings["data_uids"]["etcd"])
        containers.append(with_files(etcd_container(environment, host), own))
        files += own
    if member:
        node = cluster.member(host.name)
        own = [RenderedFile(PATRONI_FILE, patroni_yaml(cluster, node,
                                                       passwords(environment, secrets),
                                                       archive(environment)),
                            mode=0o600, secret=True, owner=uid),
               *tls_files(environment, host, secrets, "patroni", PATRONI_ETCD_TLS, owner=uid)]
        containers.append(with_files(patroni_container(environment, host), own))
        files += own
    if router:
        own = [RenderedFile(HAPROXY_FILE, haproxy_cfg(cluster))]
        containers.append(with_files(router_container(environment, host), own))
        files += own
    title = "the database cluster: " + ", ".join(
        part for part, on in (("etcd", etcd), ("Patroni", member), ("router", router)) if on)
    files.append(RenderedFile(compose_path("dbha"),
                              render_project(environment, host, PROJECT, title, containers)))
    return sorted(files, key=lambda f: f.path)


def directories(environment: Environment, host: Host) -> list[tuple[str, int, int]]:
    """(path, mode, owner uid) to create before the project starts."""
    etcd, member, _ = parts(environment, host)
    uids = environment.settings["data_uids"]
    dirs = []
    if etcd:
        dirs.append((ETCD_DATA, 0o700, uids["etcd"]))
    if member:
        dirs.append((PATRONI_DATA, 0o700, uids["patroni"]))
    return dirs
