"""Typed, validated view of the catalog and one environment's group_data.

Objects here are built only by `ops.catalog.loader` after validation, so code that receives an
`Environment` may trust every invariant the loader checks (each service on at least one app
host, exactly one host for each singleton sidecar, pinned images...). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.dbha.model import Cluster

ROLES = ("app", "db", "monitoring", "backup")
SECRET_KINDS = (
    "jwt", "admin-token", "hmac", "api-key", "password", "url", "email", "hostport", "string",
    "tls-bundle", "tls-certificate", "redis-password", "db-password",
)
# Vault key, beside the internal HMAC secret, of the record of a rotation in progress.
HMAC_ROTATION_KEY = "INTERNAL_HMAC_ROTATION"
# Vault keys, beside a service's REDIS_PASSWORD and DB_PASSWORD, of the one each replaces
# during a rotation; and of the PostgreSQL login role that holds the current DB_PASSWORD.
REDIS_PREVIOUS_KEY = "REDIS_PASSWORD_PREVIOUS"
DB_PREVIOUS_KEY = "DB_PASSWORD_PREVIOUS"
DB_LOGIN_KEY = "DB_LOGIN"
# Vault key, beside each server's own password (shared/postgres, shared/redis), of its
# exporter's login password.
MONITOR_PASSWORD_KEY = "MONITOR_PASSWORD"  # noqa: S105  # pragma: allowlist secret


SENTRY_DSN_KEY = "SENTRY_DSN"
# Vault key, beside the database cluster's certificates (one per host), of the CA that signs
# them (`Environment.dbha_refs`).
DBHA_CA_KEY = "ETCD_CA"


@dataclass(frozen=True)
class SecretRef:
    """Where one secret value lives in Vault (KV v2) and what kind of value it is.

    `path` is relative to the KV mount (`superapp/prod/payments`); `optional` secrets may be
    absent (the previous HMAC secret exists only during a rotation).
    """

    path: str
    key: str
    kind: str
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.path}#{self.key}"


@dataclass(frozen=True)
class Resources:
    memory: str
    cpus: float


@dataclass(frozen=True)
class Sidecar:
    name: str
    command: tuple[str, ...]
    singleton: bool
    inherit_env: bool
    url_env: str | None
    secret_env: Mapping[str, str]
    resources: Resources | None
    health_command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    port: int
    health_path: str
    database: str | None
    has_alembic: bool
    migrate_command: tuple[str, ...] | None
    schema_bootstrap_command: tuple[str, ...] | None
    hmac_role: str
    jwt_mode: str
    admin_token: str
    routes: tuple[str, ...]
    secrets: Mapping[str, str]
    env_from_settings: Mapping[str, str]
    sidecars: Mapping[str, Sidecar]
    dashboard: str
    extra_dashboards: tuple[str, ...]
    resources: Resources
    error_tracking: str
    health_timeout_seconds: int
    stop_grace_seconds: int
    edge: Mapping[str, int] = field(default_factory=dict)  # overrides of group_data `edge`

    @property
    def dns_name(self) -> str:
        """Name usable in container, project and DNS names (`ai_gateway` -> `ai-gateway`)."""
        return self.name.replace("_", "-")

    def container_name(self, slot: str, sidecar: str | None = None) -> str:
        return "-".join(filter(None, (self.dns_name, sidecar, slot)))


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    roles: tuple[str, ...]
    public_address: str
    placement_group: str = ""  # "" : its own group (see rollout.parallel_hosts)

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Catalog:
    services: Mapping[str, Service]
    path: str = "ops/catalog/services.yml"


@dataclass(frozen=True)
class Environment:
    """The validated catalog plus one environment's group_data (`settings`) and hosts."""

    name: str
    catalog: Catalog
    settings: Mapping[str, Any]
    hosts: tuple[Host, ...]  # rollout order
    placement: Mapping[str, tuple[str, ...]]  # service -> host names, rollout order
    singleton_hosts: Mapping[str, str]  # "service.sidecar" -> host name
    setting_files: Mapping[str, str] = field(default_factory=dict)  # key -> file that set it
    # service -> full image reference, set only by a rollback to an earlier release
    image_overrides: Mapping[str, str] = field(default_factory=dict)
    # service -> "sha256:..." its image tag pointed to when this run resolved it (or when the
    # recorded release did): rendered as `image:tag@digest`, so every host runs the same bits
    digests: Mapping[str, str] = field(default_factory=dict)
    # False for a rollback: the newer release already migrated the schema, and an older
    # image cannot run the newer migrations (ops/runbooks/rollback.md: expand/contract)
    migrations: bool = True
    # the Patroni cluster of group_data `db_ha` (ops/dbha), None: one PostgreSQL on the db host
    db_ha: Cluster | None = None

    def with_images(self, images: Mapping[str, str],
                    digests: Mapping[str, str] | None = None) -> Environment:
        """The same environment with some services pinned to given images, and digests when
        known (drift's and a rollback's view of a recorded release)."""
        return replace(self, image_overrides={**self.image_overrides, **images},
                       digests={**{k: v for k, v in self.digests.items() if k not in images},
                                **(digests or {})})

    def with_digests(self, digests: Mapping[str, str]) -> Environment:
        return replace(self, digests={**self.digests, **digests})

    def rolled_back_to(self, images: Mapping[str, str],
                       digests: Mapping[str, str] | None = None) -> Environment:
        """The environment a rollback deploys: a recorded release's images, no migrations."""
        return replace(self.with_images(images, digests), migrations=False)

    @property
    def services(self) -> Mapping[str, Service]:
        return self.catalog.services

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def in_rollout_order(self, names: Iterable[str]) -> list[str]:
        """The named hosts in rollout order; names this environment does not have are left out.

        The db host comes first, then the others in group_data's order: servers before their
        clients, so a new database, role or Redis user, and a Redis user's new password
        (accepted with the old one during a rotation), exist before any service using them
        is swapped on another host."""
        wanted = set(names)
        hosts = sorted(self.hosts, key=lambda h: not h.has_role("db"))
        return [h.name for h in hosts if h.name in wanted]

    def edge_limits(self, service: Service) -> dict[str, int]:
        """The limits Traefik applies to the service's public routes: group_data `edge`,
        overridden by the catalog entry's `edge`."""
        return {**self.settings["edge"], **service.edge}

    def hosts_with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts if h.has_role(role)]

    @property
    def db_host(self) -> Host:
        return self.hosts_with_role("db")[0]

    @property
    def backup_host(self) -> Host | None:
        """The pgBackRest repository's host (role `backup`), never the db host in prod/staging."""
        hosts = self.hosts_with_role("backup")
        return hosts[0] if hosts else None

    @property
    def monitoring_host(self) -> Host:
        return self.hosts_with_role("monitoring")[0]

    def services_on(self, host_name: str) -> list[Service]:
        """Services placed on a host, in catalog order."""
        return [s for s in self.services.values() if host_name in self.placement[s.name]]

    def hosts_running(self, service: str) -> list[Host]:
        return [self.host(n) for n in self.placement[service]]

    def sidecars_on(self, service: Service, host_name: str) -> list[Sidecar]:
        """Sidecars of a service that run on this host (a singleton only on its one host)."""
        return [
            sc for sc in service.sidecars.values()
            if not sc.singleton or self.singleton_hosts[f"{service.name}.{sc.name}"] == host_name
        ]

    def image(self, service: Service) -> str:
        """Pinned image reference of a service in this environment."""
        if service.name in self.image_overrides:
            return self.image_overrides[service.name]
        standin = self.settings["standin_image"]
        repository = standin["repository"] if standin else service.image
        tag = self.settings["image_tags"].get(service.name, self.settings["default_image_tag"])
        return f"{self.settings['registry']}/{repository}:{tag}"

    def pinned_image(self, service: Service) -> str:
        """What compose files run: `image(service)@sha256:...` once the digest is known."""
        image = self.image(service)
        digest = self.digests.get(service.name)
        return f"{image}@{digest}" if digest else image

    def infra_image(self, name: str) -> str:
        return f"{self.settings['registry']}/{self.settings['infra_images'][name]}"

    def command(self, service: Service, sidecar: Sidecar | None = None) -> list[str] | None:
        """argv for the main container (None: the image's default) or a sidecar."""
        standin = self.settings["standin_image"]
        if standin:
            return [*standin["command"], sidecar.name if sidecar else "serve"]
        return list(sidecar.command) if sidecar else None

    def health_command(self, service: Service, sidecar: Sidecar) -> list[str] | None:
        """argv that tells whether a sidecar is healthy (None: no check, running is healthy);
        the stand-in checks the heartbeat its sidecar modes write."""
        if not sidecar.health_command:
            return None
        standin = self.settings["standin_image"]
        if standin:
            return [*standin["command"], "health", sidecar.name]
        return list(sidecar.health_command)

    def migrate_command(self, service: Service) -> list[str] | None:
        """argv that applies the schema (run once per release), or None if out-of-band."""
        standin = self.settings["standin_image"]
        if standin:
            return [*standin["command"], "migrate"]
        return list(service.migrate_command) if service.migrate_command else None

    def schema_bootstrap_command(self, service: Service) -> list[str] | None:
        """argv that creates an empty database's schema once (tasks/bootstrap_schema.py), or
        None when the catalog declares none (the stand-in's `create-schema` stands in)."""
        if not service.schema_bootstrap_command:
            return None
        standin = self.settings["standin_image"]
        if standin:
            return [*standin["command"], "create-schema"]
        return list(service.schema_bootstrap_command)

    def allowed_origins(self, service: str) -> list[str]:
        origins = self.settings["allowed_origins"]
        return list(origins.get(service, self.settings["default_allowed_origins"]))

    def vault_path(self, *parts: str) -> str:
        return "/".join((self.settings["vault"]["path_prefix"], *parts))

    def secret_refs(self, service: Service) -> list[SecretRef]:
        """Every secret a service's env file needs, with its Vault location and kind."""
        own = self.vault_path(service.name)
        refs = []
        if service.jwt_mode == "secret":
            refs.append(SecretRef(own, "JWT_SECRET", "jwt"))
        if service.admin_token == "sha256":  # noqa: S105 - a mode, not a value
            refs.append(SecretRef(own, "ADMIN_TOKEN", "admin-token"))
        if service.database:
            refs += self.db_refs(service).values()
        refs += [SecretRef(own, key, kind) for key, kind in service.secrets.items()]
        if service.hmac_role != "none":
            refs += self.internal_hmac_refs().values()
        refs += self.service_redis_refs(service).values()
        if service.error_tracking == "sentry":
            refs.append(self.sentry_dsn_ref(service))
        return refs

    def sentry_dsn_ref(self, service: Service) -> SecretRef:
        """The service's Sentry DSN: optional, so a service without one still deploys (its
        errors reach no tracker; the deploy says so in prod)."""
        return SecretRef(self.vault_path(service.name), SENTRY_DSN_KEY, "url", optional=True)

    def db_password_ref(self, service: Service) -> SecretRef:
        """The password of the service's own database login (for services with a database)."""
        return SecretRef(self.vault_path(service.name), "DB_PASSWORD", "db-password")

    def db_refs(self, service: Service) -> dict[str, SecretRef]:
        """The service's database login: its password (`current`); during a rotation the one
        it replaces (`previous`), still accepted by the other login role; and which of the
        database's two login roles holds the current password (`login`, absent: the owner
        role itself). Written by ops/secrets/rotation.py; see ops/render/databases.py."""
        own = self.vault_path(service.name)
        return {"current": self.db_password_ref(service),
                "previous": SecretRef(own, DB_PREVIOUS_KEY, "db-password", optional=True),
                "login": SecretRef(own, DB_LOGIN_KEY, "string", optional=True)}

    def internal_hmac_refs(self) -> dict[str, SecretRef]:
        """The shared internal HMAC secret: `current`, `previous` (only during a rotation) and
        `rotation`, the record of a rotation in progress (JSON written by
        ops/secrets/rotation.py, not a secret; it tells the renderer which secret callers sign
        with)."""
        shared = self.vault_path("shared", "internal-hmac")
        return {
            "current": SecretRef(shared, "INTERNAL_HMAC_SECRET", "hmac"),
            "previous": SecretRef(shared, "INTERNAL_HMAC_SECRET_PREVIOUS", "hmac", optional=True),
            "rotation": SecretRef(shared, HMAC_ROTATION_KEY, "string", optional=True),
        }

    def service_redis_refs(self, service: Service) -> dict[str, SecretRef]:
        """The password of the service's own Redis ACL user (`current`) and, only while a
        rotation is rolling it out, the one it replaces (`previous`): Redis accepts both until
        every container of the service uses the new one (ops/secrets/rotation.py)."""
        own = self.vault_path(service.name)
        return {"current": SecretRef(own, "REDIS_PASSWORD", "redis-password"),
                "previous": SecretRef(own, REDIS_PREVIOUS_KEY, "redis-password",
                                      optional=True)}

    def redis_admin_password_ref(self) -> SecretRef:
        """The password of Redis's admin ACL user: only the deploy uses it (to load the
        services' users); no service holds it."""
        return SecretRef(self.vault_path("shared", "redis"), "REDIS_PASSWORD", "password")

    def redis_admin_previous_ref(self) -> SecretRef:
        """The admin password being replaced, set only while a change rolls out: the deploy
        authenticates with it when the running server does not know the new one yet, and the
        admin user holds both until this key is gone (no Redis restart, ops/render/redis_acl)."""
        return SecretRef(self.vault_path("shared", "redis"), REDIS_PREVIOUS_KEY, "password",
                         optional=True)

    def postgres_password_ref(self) -> SecretRef:
        return SecretRef(self.vault_path("shared", "postgres"), "POSTGRES_PASSWORD", "password")

    def superuser_password_ref(self) -> SecretRef:
        """The PostgreSQL superuser's password the backups log in with: the single server's,
        or with `db_ha` the one Patroni gives every member."""
        return self.dbha_refs()["superuser"] if self.db_ha else self.postgres_password_ref()

    def monitor_password_refs(self) -> dict[str, SecretRef]:
        """The exporters' own logins: a PostgreSQL role with pg_monitor only and a Redis ACL
        user allowed INFO-like commands only (ops/render/exporters.py). A server password:
        set with `bao kv patch`, rolled by the next deploy (ops/secrets/rotation.py)."""
        return {server: SecretRef(self.vault_path("shared", server), MONITOR_PASSWORD_KEY,
                                  "password") for server in ("postgres", "redis")}

    def pitr_refs(self) -> dict[str, SecretRef]:
        """pgBackRest's repository secrets ({} without `pitr`): the cipher passphrase (never
        rotated: the repository is encrypted with it), the S3 keys, and the S3 endpoint's TLS
        private key and self-signed certificate in one PEM bundle (pinned by the db host, so
        the two can never disagree)."""
        if not self.settings.get("pitr"):
            return {}
        path = self.vault_path("shared", "pgbackrest")
        return {"cipher": SecretRef(path, "REPO_CIPHER_PASS", "password"),
                "access_key": SecretRef(path, "S3_ACCESS_KEY", "password"),
                "secret_key": SecretRef(path, "S3_SECRET_KEY", "password"),
                "tls": SecretRef(path, "S3_TLS_PEM", "tls-bundle")}

    def dbha_refs(self) -> dict[str, SecretRef]:
        """The database cluster's secrets ({} without `db_ha`): the logins Patroni manages
        (PostgreSQL's superuser, replication, pg_rewind's own, Patroni's REST API) at
        `<prefix>/shared/dbha`, and etcd's mutual TLS at `<prefix>/shared/dbha-tls`: a CA of
        the cluster's own (`ca`, listed first: the bootstrap signs with it) and one
        certificate per etcd and Patroni member it signed (`tls:<host>`, keyed by host)."""
        if self.db_ha is None:
            return {}
        logins = self.vault_path("shared", "dbha")
        tls = self.vault_path("shared", "dbha-tls")
        refs = {name: SecretRef(logins, key, "password") for name, key in (
            ("superuser", "SUPERUSER_PASSWORD"), ("replication", "REPLICATION_PASSWORD"),
            ("rewind", "REWIND_PASSWORD"), ("rest_api", "REST_API_PASSWORD"))}
        refs["ca"] = SecretRef(tls, DBHA_CA_KEY, "tls-authority")
        for node in (*self.db_ha.etcd, *self.db_ha.members):
            refs.setdefault(f"tls:{node.name}", SecretRef(tls, node.name, "tls-leaf"))
        return refs

    def edge_certificate_domains(self, host: Host) -> dict[str, str]:
        """Domain -> "acme" | "vault" of every certificate Traefik serves on `host` (group_data
        `tls_certificates`, "{host}" replaced by the host's name), in group_data order."""
        return {domain.replace("{host}", host.name): source
                for domain, source in self.settings["tls_certificates"].items()}

    def edge_certificate_refs(self, host: Host) -> dict[str, SecretRef]:
        """Domain -> where Vault keeps its operator-provided key and certificate chain (one PEM
        bundle per domain, all under <prefix>/shared/tls), for the "vault" domains of `host`."""
        path = self.vault_path("shared", "tls")
        return {domain: SecretRef(path, domain, "tls-certificate")
                for domain, source in self.edge_certificate_domains(host).items()
                if source == "vault"}

    def alertmanager_refs(self) -> dict[str, SecretRef]:
        path = self.vault_path("alertmanager")
        kinds = {
            "OPS_ADMIN_WEBHOOK_URL": "url", "SLACK_WEBHOOK_URL": "url", "SLACK_CHANNEL": "string",
            "ALERT_EMAIL_TO": "email", "ALERT_EMAIL_FROM": "email", "SMTP_HOST": "hostport",
            "SMTP_USER": "string", "SMTP_PASS": "password",
            # the dead-man's switch: pages when the always-firing Watchdog stops arriving
            "DEADMANS_SWITCH_URL": "url",
        }
        return {key: SecretRef(path, key, kind) for key, kind in kinds.items()}

    def all_secret_refs(self) -> list[SecretRef]:
        """Every secret of the environment, deduplicated, for Vault checks and rotation."""
        refs: dict[str, SecretRef] = {}
        for service in self.services.values():
            refs.update((str(r), r) for r in self.secret_refs(service))
        refs.update((str(r), r) for r in self.alertmanager_refs().values())
        refs[str(self.postgres_password_ref())] = self.postgres_password_ref()
        refs[str(self.redis_admin_password_ref())] = self.redis_admin_password_ref()
        refs[str(self.redis_admin_previous_ref())] = self.redis_admin_previous_ref()
        refs.update((str(r), r) for r in self.monitor_password_refs().values())
        refs.update((str(r), r) for r in self.pitr_refs().values())
        refs.update((str(r), r) for r in self.dbha_refs().values())
        for host in self.hosts_with_role("app"):
            refs.update((str(r), r) for r in self.edge_certificate_refs(host).values())
        return list(refs.values())
