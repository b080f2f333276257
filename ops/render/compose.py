"""Compose projects and env files: one project per service and slot, plus edge, data and
monitoring projects.

A service project is rendered FOR a slot (`a` or `b`): project `sa-<service>-<slot>`, containers
`<service>-<slot>` and `<service>-<sidecar>-<slot>`, all on the external `superapp` network.
Traefik's file provider points at the live slot (ops/render/traefik.py), so the rollout can start
the other slot, wait for health, switch the server list atomically, drain and stop the old slot.

Singleton sidecars (payments' beat) carry the compose profile `singleton`: a plain `up -d` does
not start them, so two slots never run two beats; the rollout starts the new slot's singleton
with `--profile singleton` after the old slot stopped.

Non-secret settings go in `environment:` (auditable); secret values only in the 0600 env file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any
from urllib.parse import quote as urlquote

from ops.catalog.model import (
    DB_LOGIN_KEY,
    DB_PREVIOUS_KEY,
    REDIS_PREVIOUS_KEY,
    Environment,
    Host,
    Service,
    Sidecar,
)
from ops.dbha.commands import MEMBER_CONTAINER, ROUTER_CONTAINER
from ops.dbha.render import ROUTER_PRIMARY_PORT
from ops.render import databases, pitr, redis_acl, tls
from ops.render import logs as central_logs
from ops.render.files import (
    ALERTMANAGER_DIR,
    BLACKBOX_DIR,
    COMPOSE_DIR,
    DATA_DIR,
    ENV_DIR,
    PROMETHEUS_DIR,
    REDIS_DIR,
    TEXTFILE_DIR,
    TRAEFIK_DIR,
    RenderedFile,
    relative_to_compose,
    render_template,
)
from ops.render.secrets import SecretValues, env_file_content

SLOTS = ("a", "b")
SERVICE_UID = "10001:10001"
SINGLETON_PROFILE = "singleton"
TRAEFIK_PORTS = {"web": 80, "websecure": 443, "internal": 8081, "traefik": 8082}
# Service-to-service calls go through the host's Traefik, entrypoint `internal`, to
# `http://<service>.internal:8081` (network aliases of the Traefik container), never straight to
# a container: a slot swap then moves internal traffic exactly like public traffic.
INTERNAL_DOMAIN = "internal"  # reserved for private use (ICANN, 2024): never resolves publicly
NODE_EXPORTER_PORT = 9100
# postgres_exporter and redis_exporter on the db host (scraped by Prometheus on its address)
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
BLACKBOX_PORT = 9115
BLACKBOX_CONTAINER = "blackbox"
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
POSTGRES_PORT = 5432
REDIS_PORT = 6379

FIELD_ORDER = (
    "image", "container_name", "entrypoint", "command", "user", "profiles", "env_file",
    "environment", "ports", "volumes", "tmpfs", "read_only", "cap_drop", "cap_add",
    "security_opt", "sysctls", "pid", "healthcheck", "restart", "stop_grace_period",
    "mem_limit", "cpus", "logging", "labels", "networks",
)
BLOCK_KEYS = ("environment", "labels")


def project_name(service: Service, slot: str) -> str:
    return f"sa-{service.dns_name}-{slot}"


def compose_path(name: str) -> str:
    return f"{COMPOSE_DIR}/{name}.yml"


def env_file_path(name: str) -> str:
    return f"{ENV_DIR}/{name}.env"


def internal_host(service: Service) -> str:
    """Name of a service on the internal entrypoint: a network alias of every host's Traefik
    and the Host rule of the service's internal router (`ai_gateway` -> `ai-gateway.internal`:
    an underscore is not valid in a host name)."""
    return f"{service.dns_name}.{INTERNAL_DOMAIN}"


def internal_url(service: Service) -> str:
    """Base URL a caller on the same host uses for `service` (through Traefik, no prefix strip:
    the path the caller signs is the path the service sees)."""
    return f"http://{internal_host(service)}:{TRAEFIK_PORTS['internal']}"


def internal_url_env(service: Service) -> str:
    """`PAYMENTS_INTERNAL_URL`: the env var that tells callers `internal_url(service)`."""
    return f"{service.dns_name.upper().replace('-', '_')}_INTERNAL_URL"


def hmac_verifiers(environment: Environment) -> list[Service]:
    """Services whose catalog `hmac_role` is `verifier` (the catalog allows at most one)."""
    return [s for s in environment.services.values() if s.hmac_role == "verifier"]


def traefik_addresses(environment: Environment) -> list[str]:
    return [environment.settings["docker_network"]["traefik_address"]]


def forwarded_allow_ips(environment: Environment) -> list[str]:
    """The proxies a service trusts X-Forwarded-For from: Traefik, then the upstream load
    balancers Traefik itself trusts (`upstream_proxies`)."""
    return traefik_addresses(environment) + [
        p for p in environment.settings["upstream_proxies"]
        if p not in traefik_addresses(environment)]


def common(environment: Environment, network: dict | None = None) -> dict[str, Any]:
    """Settings every container gets: restart, bounded logs, the superapp network."""
    logs = environment.settings["container_logs"]
    name = environment.settings["docker_network"]["name"]
    return {
        "restart": "unless-stopped",
        # json-file keeps `docker logs`; `labels` copies these labels into every line, which
        # is how the log shipper knows a line's service, slot and container (ops/render/logs.py)
        "logging": {"driver": "json-file",
                    "options": {"max-size": logs["max_size"], "max-file": str(logs["max_file"]),
                                "labels": ",".join(central_logs.LOG_LABELS)}},
        "networks": {name: network},
    }


def hardened(user: str) -> dict[str, Any]:
    return {
        "user": user,
        "read_only": True,
        "tmpfs": ["/tmp"],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
    }


def literal(argv: list[str]) -> list[str]:
    """Compose interpolates `$VAR` in every value of the file with the deploying shell's
    environment; `$$` is a literal `$`, left for the container's shell (a health command's
    `$HOSTNAME` is the container's)."""
    return [a.replace("$", "$$") for a in argv]


def healthcheck(environment: Environment, test: list[str]) -> dict[str, Any]:
    hc = environment.settings["health_check"]
    return {
        "test": literal(test),
        "interval": f"{hc['interval_seconds']}s",
        "timeout": f"{hc['timeout_seconds']}s",
        "retries": hc["retries"],
        "start_period": f"{hc['start_period_seconds']}s",
    }


def service_environment(environment: Environment, service: Service) -> dict[str, str]:
    """The non-secret flags of the production invariants (docs/invariants.md), for the service
    and its sidecars."""
    s = environment.settings
    env = {
        "SERVICE_NAME": service.name,
        "APP_ENV": environment.name,
        "PORT": str(service.port),
        "ALLOWED_ORIGINS": ",".join(environment.allowed_origins(service.name)),
        "RATE_LIMIT_BACKEND": "redis",
        "REDIS_KEY_PREFIX": redis_acl.key_prefix(service.name),  # all its ACL user may touch
        "AUTO_CREATE_SCHEMA": "false",
        # Traefik, and the load balancers in front of it: Traefik keeps their X-Forwarded-For
        # and appends the balancer's address, so the service walks past both to the client
        "UVICORN_EXTRA_ARGS": "--proxy-headers --forwarded-allow-ips="
                              + ",".join(forwarded_allow_ips(environment)),
    }
    if service.hmac_role == "verifier":
        env["INTERNAL_REQUIRE_HMAC"] = "true"
    if service.hmac_role != "none":
        env["INTERNAL_HMAC_REPLAY_WINDOW"] = str(s["hmac_replay_window_seconds"])
    if service.hmac_role == "caller":
        env.update((internal_url_env(v), internal_url(v)) for v in hmac_verifiers(environment))
    if service.jwt_mode == "jwks":
        env["JWT_JWKS_URL"] = s["jwt_jwks_url"]
    for var, key in service.env_from_settings.items():
        value = s[key]
        env[var] = str(value).lower() if isinstance(value, bool) else str(value)
    if service.error_tracking == "sentry":
        env.update(sentry_environment(environment, service))
    return env


def sentry_environment(environment: Environment, service: Service) -> dict[str, str]:
    """What Sentry's SDK reads besides the DSN (env file): the environment, and the release as
    `<service>@<image tag>`, the code version Sentry groups errors by. Not the deploy's run id:
    that changes on every deploy and would restart every service every time."""
    tag = environment.image(service).rsplit("/", 1)[-1].rpartition(":")[2]
    return {"SENTRY_ENVIRONMENT": environment.name, "SENTRY_RELEASE": f"{service.name}@{tag}"}


def hmac_rotation_phase(record: str | None) -> int | None:
    """Phase (1, 2 or 3) of the internal HMAC rotation record in Vault; None when idle."""
    try:
        phase = json.loads(record or "null")["phase"]
    except (ValueError, TypeError, KeyError):
        return None  # no record (or a placeholder while rendering for review)
    return phase if phase in (1, 2, 3) else None


def internal_hmac_values(role: str, current: str, previous: str | None,
                         phase: int | None) -> dict[str, str]:
    """What a service holds of the shared internal HMAC secret (phases: ops/secrets/rotation.py).

    A verifier accepts the current secret and, during a rotation, the previous one. A caller
    only signs, with one secret: the current one, except in phase 1, when the verifiers are
    given the new secret (Vault's current) while callers keep signing with the old (previous).
    """
    if role == "verifier":
        return {"INTERNAL_HMAC_SECRET": current,
                **({"INTERNAL_HMAC_SECRET_PREVIOUS": previous} if previous else {})}
    return {"INTERNAL_HMAC_SECRET": previous if phase == 1 and previous else current}


def service_secret_values(environment: Environment, service: Service,
                          secrets: SecretValues) -> dict[str, str]:
    """Env-file values of a service: its secrets plus URLs that embed passwords."""
    values: dict[str, str] = {}
    hmac_refs = environment.internal_hmac_refs()
    hmac_env: dict[str, str] | None = None
    for ref in environment.secret_refs(service):
        if ref in hmac_refs.values():
            if hmac_env is None:
                hmac_env = internal_hmac_values(
                    service.hmac_role, secrets.get(hmac_refs["current"]),
                    secrets.get(hmac_refs["previous"]),
                    hmac_rotation_phase(secrets.get(hmac_refs["rotation"])))
            if ref.key in hmac_env:
                values[ref.key] = hmac_env[ref.key]
            continue
        value = secrets.get(ref)
        if value is None:
            continue
        if ref.key == "ADMIN_TOKEN":  # noqa: S105 - a key name, not a value
            # the service only ever sees the hash; the plain token goes to the callers
            values["ADMIN_TOKEN_SHA256"] = hashlib.sha256(value.encode()).hexdigest()
        elif ref.key == "DB_PASSWORD":
            # as the login role holding the current password (ops/render/databases.py)
            login = databases.database_login(environment, service, secrets).login
            values["DATABASE_URL"] = (
                f"postgresql://{login}:{urlquote(value, safe='')}@"
                f"{postgres_address(environment)}/{service.database}")
        elif ref.key == "REDIS_PASSWORD":
            # its own ACL user (ops/render/redis_acl.py); the previous password stays in Vault
            values["REDIS_URL"] = (f"redis://{service.name}:{urlquote(value, safe='')}@"
                                   f"{environment.db_host.address}:{REDIS_PORT}/0")
        elif ref.key in (REDIS_PREVIOUS_KEY, DB_PREVIOUS_KEY, DB_LOGIN_KEY):
            continue  # the servers' side of a rotation, never a service's
        else:
            values[ref.key] = value
    return values


def postgres_address(environment: Environment) -> str:
    """Where a service (and its migrations) reach PostgreSQL: the db host, or with `db_ha` the
    router on the service's own host, which follows the cluster's leader (no service ever
    names a member: a failover changes no env file)."""
    if environment.db_ha is not None:
        return f"{ROUTER_CONTAINER}:{ROUTER_PRIMARY_PORT}"
    return f"{environment.db_host.address}:{POSTGRES_PORT}"


def sidecar_secret_values(environment: Environment, service: Service, sidecar: Sidecar,
                          secrets: SecretValues) -> dict[str, str]:
    refs = {r.key: r for r in environment.secret_refs(service)}
    out = {}
    for var, key in sidecar.secret_env.items():
        value = secrets.get(refs[key])
        if value is not None:
            out[var] = value
    return out


def sidecar_env_name(service: Service, sidecar: Sidecar) -> str:
    return f"{service.name}-{sidecar.name}"


def service_containers(environment: Environment, service: Service, host: Host,
                       slot: str) -> list[dict[str, Any]]:
    """Container view-models of one service on one host for one slot."""
    labels = {"superapp.service": service.name, "superapp.slot": slot}
    base_env = service_environment(environment, service)
    main = {
        "key": service.name,
        "image": environment.pinned_image(service),
        "container_name": service.container_name(slot),
        "env_file": [relative_to_compose(env_file_path(service.name))],
        "environment": base_env,
        **hardened(SERVICE_UID),
        "healthcheck": healthcheck(environment, [
            "CMD", "busybox", "wget", "-q", "-O", "/dev/null",
            f"http://127.0.0.1:{service.port}{service.health_path}"]),
        "stop_grace_period": f"{service.stop_grace_seconds}s",
        "mem_limit": service.resources.memory,
        "cpus": service.resources.cpus,
        "labels": {**labels, "superapp.container": service.container_name(slot),
                   "superapp.role": "serve"},
        **common(environment),
    }
    if command := environment.command(service):
        main["command"] = literal(command)
    containers = [main]
    for sidecar in environment.sidecars_on(service, host.name):
        resources = sidecar.resources or service.resources
        if sidecar.inherit_env:
            env, env_file = dict(base_env), env_file_path(service.name)
        else:
            env = {"SERVICE_NAME": f"{service.name}-{sidecar.name}", "APP_ENV": environment.name}
            env_file = env_file_path(sidecar_env_name(service, sidecar))
        if sidecar.url_env:
            env[sidecar.url_env] = f"http://{service.container_name(slot)}:{service.port}"
        container = {
            "key": sidecar.name,
            "image": environment.pinned_image(service),
            "container_name": service.container_name(slot, sidecar.name),
            "command": literal(environment.command(service, sidecar) or []) or None,
            "env_file": [relative_to_compose(env_file)],
            "environment": env,
            **hardened(SERVICE_UID),
            # no HTTP server: the catalog's health command, or liveness via the restart policy
            "healthcheck": (healthcheck(environment, ["CMD", *check])
                            if (check := environment.health_command(service, sidecar))
                            else {"disable": True}),
            "stop_grace_period": f"{service.stop_grace_seconds}s",
            "mem_limit": resources.memory,
            "cpus": resources.cpus,
            "labels": {**labels,
                       "superapp.container": service.container_name(slot, sidecar.name),
                       "superapp.role": sidecar.name},
            **common(environment),
        }
        if sidecar.singleton:
            container["profiles"] = [SINGLETON_PROFILE]
            container["labels"]["superapp.singleton"] = "true"
        containers.append(container)
    return containers


def with_log_labels(container: dict[str, Any]) -> dict[str, Any]:
    """Infra containers are their own "service" in the central logs: `superapp.service` and
    `superapp.container` default to the container's key and name."""
    labels = {"superapp.service": container["key"],
              "superapp.container": container["container_name"],
              **container.get("labels", {})}
    return {**container, "labels": labels}


def dynamic_range(subnet: str) -> str:
    """The upper half of the network: Docker hands out addresses only there, so the fixed
    addresses in the lower half (Traefik's) can never be taken by a container started first."""
    net = ipaddress.ip_network(subnet)
    return str(list(net.subnets(prefixlen_diff=1))[-1])


def render_project(environment: Environment, host: Host, project: str, title: str,
                   containers: list[dict[str, Any]], owns_network: bool = False,
                   config_hash: str = "") -> str:
    net = environment.settings["docker_network"]
    return render_template(
        "compose/project.yml.j2",
        title=title, host=host.name, env=environment.name, project=project,
        containers=[with_log_labels(c) for c in containers], config_hash=config_hash,
        network={"name": net["name"], "subnet": net["subnet"], "owner": owns_network,
                 "ip_range": dynamic_range(net["subnet"])},
        field_order=FIELD_ORDER, block_keys=BLOCK_KEYS,
    )


def service_env_files(environment: Environment, service: Service, host: Host,
                      secrets: SecretValues) -> list[RenderedFile]:
    files = [RenderedFile(
        env_file_path(service.name),
        env_file_content(f"{service.name} ({environment.name})",
                         service_secret_values(environment, service, secrets)),
        mode=0o600, secret=True)]
    for sidecar in environment.sidecars_on(service, host.name):
        if not sidecar.inherit_env:
            name = sidecar_env_name(service, sidecar)
            files.append(RenderedFile(
                env_file_path(name),
                env_file_content(f"{name} ({environment.name})",
                                 sidecar_secret_values(environment, service, sidecar, secrets)),
                mode=0o600, secret=True))
    return files


def service_content_hash(environment: Environment, service: Service, host: Host,
                         secrets: SecretValues) -> str:
    """`sha256:<hex>` of everything that defines a service on a host, whatever the slot.

    The plan (ops/rollout/plan.py) compares it with the `hash` of the service's record on the
    host to decide whether the service changed (image, flags, secrets, sidecars...). The
    `superapp-config-hash` comment of the compose file shows the same value to a person reading
    the file on the host; nothing parses that comment.
    """
    canonical = {
        "containers": service_containers(environment, service, host, "{slot}"),
        "env_files": {f.path: f.content for f in service_env_files(environment, service, host,
                                                                     secrets)},
    }
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def render_service(environment: Environment, service: Service, host: Host, slot: str,
                   secrets: SecretValues) -> list[RenderedFile]:
    """The service's compose file (for `slot`) and its env file(s)."""
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
    compose = render_project(
        environment, host, project_name(service, slot),
        f"{service.name}: the service and its sidecars, slot {slot}",
        service_containers(environment, service, host, slot),
        config_hash=service_content_hash(environment, service, host, secrets))
    return [RenderedFile(compose_path(service.name), compose),
            *service_env_files(environment, service, host, secrets)]


def node_exporter(environment: Environment, host: Host) -> dict[str, Any]:
    return {
        "key": "node-exporter",
        "image": environment.infra_image("node_exporter"),
        "container_name": "node-exporter",
        "command": ["--path.procfs=/host/proc", "--path.sysfs=/host/sys",
                    f"--collector.textfile.directory={TEXTFILE_DIR}",
                    f"--web.listen-address=:{NODE_EXPORTER_PORT}"],
        "ports": [f"{host.address}:{NODE_EXPORTER_PORT}:{NODE_EXPORTER_PORT}"],
        "volumes": ["/proc:/host/proc:ro", "/sys:/host/sys:ro",
                    f"{TEXTFILE_DIR}:{TEXTFILE_DIR}:ro"],
        **hardened("65534:65534"),
        "mem_limit": "64m",
        "cpus": 0.2,
        **common(environment),
    }


def traefik(environment: Environment, host: Host) -> dict[str, Any]:
    """The edge proxy. Besides its fixed address it answers, on the superapp network, to
    `<service>.internal` for every service placed on the host (internal calls, port 8081)."""
    ports = TRAEFIK_PORTS
    network = {"ipv4_address": traefik_addresses(environment)[0],
               "aliases": [internal_host(s) for s in environment.services_on(host.name)]}
    return {
        "key": "traefik",
        "image": environment.infra_image("traefik"),
        "container_name": "traefik",
        "command": ["--configfile=/etc/traefik/traefik.yml"],
        "ports": [f"{host.public_address}:{ports['web']}:{ports['web']}",
                  *([f"{host.public_address}:{ports['websecure']}:{ports['websecure']}"]
                    if tls.enabled(environment) else []),
                  f"{host.address}:{ports['internal']}:{ports['internal']}",
                  f"{host.address}:{ports['traefik']}:{ports['traefik']}"],
        # a directory: atomic renames are seen
        "volumes": [f"{TRAEFIK_DIR}:/etc/traefik:ro", *tls.container_volumes(environment)],
        **hardened("65534:65534"),
        "sysctls": {"net.ipv4.ip_unprivileged_port_start": "0"},
        "healthcheck": healthcheck(environment, [
            "CMD", "traefik", "healthcheck", "--configfile=/etc/traefik/traefik.yml"]),
        "stop_grace_period": "30s",
        "mem_limit": "256m",
        "cpus": 1.0,
        **common(environment, network),
    }


def render_edge(environment: Environment, host: Host) -> RenderedFile:
    """Traefik (app hosts), node-exporter and the log shipper (every host); owns the superapp
    network."""
    containers = [node_exporter(environment, host),
                  {**central_logs.shipper_container(environment, host), **common(environment)}]
    if host.has_role("app"):
        containers.insert(0, traefik(environment, host))
    return RenderedFile(compose_path("edge"), render_project(
        environment, host, "sa-edge",
        "edge: Traefik, node-exporter and the log shipper; creates the network",
        containers, owns_network=True))


# Readiness of the data servers, run inside their containers. PostgreSQL is asked over TCP:
# during first start the image's init runs a temporary server on the Unix socket only, and a
# socket probe would call it ready just before it stops for the real start.
DATA_READY_CHECKS: dict[str, list[str]] = {
    "postgres": ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"],
    # an unauthenticated PING answers NOAUTH: proof enough that the server is up
    "redis": ["sh", "-c", "redis-cli -h 127.0.0.1 ping 2>&1 | grep -q -e PONG -e NOAUTH"],
}


def data_ready_checks(environment: Environment, host: Host) -> dict[str, list[str]]:
    """What the data project runs on `host` that must accept connections before migrations:
    the single PostgreSQL (none with `db_ha`: Patroni's members are the cluster stage's, ready
    before any host rolls), Redis on the first db host only."""
    return {name: check for name, check in DATA_READY_CHECKS.items()
            if (name == "postgres" and environment.db_ha is None)
            or (name == "redis" and host.name == environment.db_host.name)}


def render_data(environment: Environment, host: Host, secrets: SecretValues) -> list[RenderedFile]:
    """PostgreSQL and Redis on the db host and their secret env/config files.

    The container's env holds only the superuser's password (used by its first start):
    services' roles and databases are provisioned by the deploy (ops/render/databases.py), so a
    changed service password never recreates the database server.

    With `db_ha`, Patroni runs PostgreSQL on every db host (ops/render/dbha.py): this project
    keeps Redis, on the first db host only (no Sentinel: docs/multi-region.md), and each
    member's postgres_exporter, which watches its own member (`patroni` on the network).
    """
    uids = environment.settings["data_uids"]
    postgres = {
        "key": "postgres",
        "image": environment.infra_image("postgres"),
        "container_name": "postgres",
        "env_file": [relative_to_compose(env_file_path("postgres"))],
        "environment": {"POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
                        "PGDATA": "/var/lib/postgresql/data/pgdata"},
        # WAL archived by pgBackRest (ops/render/pitr.py); its config mounted read-only
        **({"command": ["postgres", *pitr.archive_args(environment)]}
           if pitr.enabled(environment) else {}),
        "ports": [f"{host.address}:{POSTGRES_PORT}:{POSTGRES_PORT}"],
        "volumes": [f"{DATA_DIR}/postgres:/var/lib/postgresql/data",
                    *([f"{pitr.PGBR_DIR}:{pitr.IN_CONTAINER_DIR}:ro"]
                      if pitr.enabled(environment) else [])],
        "security_opt": ["no-new-privileges:true"],
        "healthcheck": healthcheck(environment, ["CMD", *DATA_READY_CHECKS["postgres"]]),
        "stop_grace_period": "60s",
        **common(environment),
    }
    redis_conf = render_template("redis/redis.conf.j2", port=REDIS_PORT,
                                 acl_file=redis_acl.ACL_FILE_NAME)
    redis = {
        "key": "redis",
        "image": environment.infra_image("redis"),
        "container_name": "redis",
        "command": ["redis-server", "/etc/redis/redis.conf"],
        "ports": [f"{host.address}:{REDIS_PORT}:{REDIS_PORT}"],
        "volumes": [f"{REDIS_DIR}:/etc/redis:ro", f"{DATA_DIR}/redis:/data"],
        **hardened(f"{uids['redis']}:{uids['redis']}"),
        "healthcheck": healthcheck(environment, ["CMD", *DATA_READY_CHECKS["redis"]]),
        "stop_grace_period": "30s",
        **common(environment),
        # redis.conf is read only at start: a changed one recreates the container
        "labels": {"superapp.redis-conf-sha256": hashlib.sha256(redis_conf.encode()).hexdigest()},
    }
    postgres_env = {"POSTGRES_PASSWORD": secrets.get(environment.postgres_password_ref()) or ""}
    single = environment.db_ha is None
    with_redis = host.name == environment.db_host.name
    exporters = [c for c in data_exporters(environment, host)
                 if with_redis or c["key"] != "redis-exporter"]
    kept = {c["key"] for c in exporters}
    return [
        RenderedFile(compose_path("data"), render_project(
            environment, host, "sa-data",
            "data: PostgreSQL, Redis and their exporters" if single else
            "data: Redis and the exporters" if with_redis else "data: the member's exporter",
            [*([postgres] if single else []), *([redis] if with_redis else []), *exporters])),
        *([RenderedFile(env_file_path("postgres"), env_file_content("postgres", postgres_env),
                        mode=0o600, secret=True)] if single else []),
        *[f for f in exporter_env_files(environment, secrets)
          if any(f.path == env_file_path(key) for key in kept)],
        *([RenderedFile(f"{REDIS_DIR}/redis.conf", redis_conf, mode=0o600, owner=uids["redis"])]
          if with_redis else []),
    ]


def data_exporters(environment: Environment, host: Host) -> list[dict[str, Any]]:
    """postgres_exporter and redis_exporter beside the servers they watch, on the superapp
    network, each logged in with its own least-privilege login (databases.MONITOR_ROLE:
    pg_monitor only; redis_acl.MONITOR_USER: INFO and the like, no key), its password in a
    0600 env file. Prometheus scrapes them on the host's address (TargetDown when one dies)."""

    def exporter(key: str, port: int, command: list[str], env: dict[str, str]) -> dict[str, Any]:
        return {
            "key": key,
            "image": environment.infra_image(key.replace("-", "_")),
            "container_name": key,
            "command": command,
            "environment": env,
            "env_file": [relative_to_compose(env_file_path(key))],
            "ports": [f"{host.address}:{port}:{port}"],
            **hardened("65534:65534"),
            "stop_grace_period": "10s",
            "mem_limit": "64m",
            "cpus": 0.2,
            **common(environment),
        }

    return [
        # one connection, to the maintenance database: pg_stat_database covers them all
        exporter("postgres-exporter", POSTGRES_EXPORTER_PORT,
                 [f"--web.listen-address=:{POSTGRES_EXPORTER_PORT}"],
                 {"DATA_SOURCE_URI": f"{postgres_container(environment)}:{POSTGRES_PORT}"
                                     "/postgres?sslmode=disable",
                  "DATA_SOURCE_USER": databases.MONITOR_ROLE}),
        # system metrics: the host memory RedisMemoryHigh compares with without maxmemory
        exporter("redis-exporter", REDIS_EXPORTER_PORT,
                 [f"-web.listen-address=:{REDIS_EXPORTER_PORT}", "-include-system-metrics"],
                 {"REDIS_ADDR": f"redis://redis:{REDIS_PORT}",
                  "REDIS_USER": redis_acl.MONITOR_USER}),
    ]


def postgres_container(environment: Environment) -> str:
    """The container running PostgreSQL on a db host: the single one, or the member's."""
    return "postgres" if environment.db_ha is None else MEMBER_CONTAINER


def exporter_env_files(environment: Environment, secrets: SecretValues) -> list[RenderedFile]:
    refs = environment.monitor_password_refs()
    values = {"postgres-exporter": {"DATA_SOURCE_PASS": secrets.get(refs["postgres"]) or ""},
              "redis-exporter": {"REDIS_PASSWORD": secrets.get(refs["redis"]) or ""}}
    return [RenderedFile(env_file_path(name), env_file_content(name, env), mode=0o600,
                         secret=True) for name, env in values.items()]


def render_monitoring(environment: Environment, host: Host) -> RenderedFile:
    uids = environment.settings["data_uids"]
    prom = environment.settings["prometheus"]
    containers = [
        {
            "key": "prometheus",
            "image": environment.infra_image("prometheus"),
            "container_name": "prometheus",
            "command": ["--config.file=/etc/prometheus/prometheus.yml",
                        "--storage.tsdb.path=/prometheus",
                        f"--storage.tsdb.retention.time={prom['retention']}",
                        f"--web.listen-address=:{PROMETHEUS_PORT}"],
            "ports": [f"{host.address}:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"],
            "volumes": [f"{PROMETHEUS_DIR}:/etc/prometheus:ro",
                        f"{DATA_DIR}/prometheus:/prometheus"],
            **hardened(f"{uids['prometheus']}:{uids['prometheus']}"),
            "stop_grace_period": "60s",
            "mem_limit": "2g",
            "cpus": 1.0,
            **common(environment),
        },
        {
            "key": "alertmanager",
            "image": environment.infra_image("alertmanager"),
            "container_name": "alertmanager",
            "command": ["--config.file=/etc/alertmanager/alertmanager.yml",
                        "--storage.path=/alertmanager",
                        "--cluster.listen-address=",  # one instance: no gossip port
                        f"--web.listen-address=:{ALERTMANAGER_PORT}"],
            "ports": [f"{host.address}:{ALERTMANAGER_PORT}:{ALERTMANAGER_PORT}"],
            "volumes": [f"{ALERTMANAGER_DIR}:/etc/alertmanager:ro",
                        f"{DATA_DIR}/alertmanager:/alertmanager"],
            **hardened(f"{uids['alertmanager']}:{uids['alertmanager']}"),
            "stop_grace_period": "30s",
            "mem_limit": "256m",
            "cpus": 0.5,
            **common(environment),
        },
        {
            # probes the public routes (ops/render/probes.py); reached by Prometheus only, on
            # the superapp network: no published port
            "key": "blackbox",
            "image": environment.infra_image("blackbox_exporter"),
            "container_name": BLACKBOX_CONTAINER,
            "command": ["--config.file=/etc/blackbox/blackbox.yml",
                        f"--web.listen-address=:{BLACKBOX_PORT}"],
            "volumes": [f"{BLACKBOX_DIR}:/etc/blackbox:ro"],
            **hardened("65534:65534"),
            "stop_grace_period": "10s",
            "mem_limit": "128m",
            "cpus": 0.25,
            **common(environment),
        },
        {**central_logs.store_container(environment, host), **common(environment)},
    ]
    return RenderedFile(compose_path("monitoring"), render_project(
        environment, host, "sa-monitoring",
        "monitoring: Prometheus, Alertmanager, the blackbox prober and the log store",
        containers))
