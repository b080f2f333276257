"""Schema of the merged group_data (`group_data/all.py` + `group_data/<env>.py`).

Documented with an example in `ops.catalog`; `tests/unit/test_catalog.py` checks that the
documented example validates against this schema, so the two cannot drift apart.
"""

from __future__ import annotations

from ops.catalog.db_ha_schema import DB_HA
from ops.catalog.model import ROLES
from ops.catalog.schema import Bool, Field, Int, ListOf, MapOf, Number, Optional, Record, Str
from ops.catalog.services_schema import EDGE_LIMITS

# What `local` may relax, by name; prod and staging must list none.
RELAXATIONS = {
    "standin-image": "every service runs the stand-in image (`standin_image`)",
    "vault-token-auth": "Vault auth by a token from VAULT_TOKEN instead of AppRole",
    "vault-plain-http": "Vault over plain http on loopback, no CA",
    "registry-plain-http": "the registry's HTTP API over plain http (the testbed registry)",
}

UID_OWNERS = ("redis", "prometheus", "alertmanager", "postgres", "seaweedfs", "log_store",
              "patroni", "etcd", "haproxy")
NAME = Str(pattern=r"[a-z][a-z0-9_-]*", hint="a lowercase name")
HOSTNAME = Str(pattern=r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", hint="a DNS name")
# a DNS name, or one with "{host}" for each app host's own name
CERT_DOMAIN = Str(pattern=r"(\{host\}|[a-z0-9])([a-z0-9.{}-]*[a-z0-9])?",
                  hint="a DNS name, optionally with {host}")
ORIGIN = Str(pattern=r"https?://[^\s/,*]+|\*", hint="an origin like https://app.example")
IMAGE_REF = Str(pattern=r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*",
                hint="repository:tag relative to the registry")
TAG = Str(pattern=r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", hint="an image tag")
DURATION = Str(pattern=r"[0-9]+[smhd]", hint="a duration like 15s")
CIDR = Str(pattern=r"[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?",
           hint="an IPv4 address or CIDR like 10.0.0.0/24")

HOST = Record({
    "name": Field(NAME),
    "address": Field(Str(hint="an IPv4 address")),
    "roles": Field(ListOf(Str(choices=ROLES), min_len=1)),
    "public_address": Field(Optional(Str(hint="an IPv4 address")), required=False,
                            doc="where :80 is published; default `address`"),
    "placement_group": Field(Optional(NAME), required=False,
                             doc="hosts that fail together (a rack, a zone): a rollout with "
                                 "rollout.parallel_hosts > 1 never changes two of one group at "
                                 "once; default: the host is its own group"),
})

GROUP_DATA = Record({
    "env": Field(NAME, doc="environment name; must equal the file name"),
    "api_domains": Field(ListOf(HOSTNAME, min_len=1)),
    "default_allowed_origins": Field(ListOf(ORIGIN, min_len=1)),
    "allowed_origins": Field(MapOf(ListOf(ORIGIN, min_len=1)), required=False, default={}),
    "hosts": Field(ListOf(HOST, min_len=1), doc="rollout order"),
    "placement": Field(MapOf(ListOf(NAME)), required=False, default={}),
    "singleton_hosts": Field(MapOf(NAME), required=False, default={}),
    "registry": Field(Str(pattern=r"[a-z0-9.-]+(:[0-9]+)?", hint="host[:port]")),
    "registry_api": Field(Record({
        "url": Field(Optional(Str(pattern=r"https?://[a-z0-9.-]+(:[0-9]+)?",
                                  hint="a URL like https://registry.example:5000"))),
        "ca_path": Field(Optional(Str(pattern=r"/\S+", hint="an absolute path"))),
    }), required=False, default={"url": None, "ca_path": None},
        doc="where the controller resolves tags to digests (HTTP API v2); url default "
            "https://<registry>, ca_path default the system CAs"),
    "default_image_tag": Field(TAG),
    "image_tags": Field(MapOf(TAG), required=False, default={}),
    "standin_image": Field(Optional(Record({
        "repository": Field(Str()),
        "command": Field(ListOf(Str(), min_len=1)),
    })), required=False),
    "infra_images": Field(Record({
        name: Field(IMAGE_REF)
        for name in ("traefik", "prometheus", "alertmanager", "node_exporter", "postgres", "redis",
                     "seaweedfs", "blackbox_exporter", "rsyslog", "postgres_exporter",
                     "redis_exporter", "etcd", "patroni", "haproxy")
    }), doc="etcd, patroni, haproxy: the database cluster's parts (`db_ha`)"),
    "upstream_proxies": Field(ListOf(Str(hint="an IP address or CIDR"), min_len=1)),
    "admin_sources": Field(ListOf(CIDR, min_len=1),
                           doc="where the deploy and the operators come from: the only sources "
                               "of SSH (and of the Prometheus/Alertmanager UIs) in every host's "
                               "firewall"),
    "firewall": Field(Record({
        "confirm_seconds": Field(Int(min=5, max=600),
                                 doc="a new ruleset reverts by itself after this long unless "
                                     "the deploy confirms over a NEW SSH connection"),
    })),
    "docker_network": Field(Record({
        "name": Field(NAME),
        "subnet": Field(Str(hint="an IPv4 CIDR")),
        "traefik_address": Field(Str(hint="an IPv4 address")),
    })),
    "vault": Field(Record({
        "addr": Field(Str(pattern=r"https?://\S+", hint="a URL")),
        "mount": Field(NAME),
        "path_prefix": Field(Str()),
        "auth_method": Field(Str(choices=("approle", "token"))),
        "ca_path": Field(Optional(Str(pattern=r"/\S+", hint="an absolute path"))),
        "token_file": Field(Optional(Str(pattern=r"/\S+", hint="an absolute path")),
                            required=False, doc="token auth only: file holding the token"),
        # the AppRoles' secret-ids (ops/secrets/approle.py; bootstrap_vault.py writes them)
        "secret_id_ttl": Field(DURATION, required=False, default="24h",
                               doc="a secret-id is refused this long after it was minted (the "
                                   "role's cap; a mint may ask for less)"),
        "secret_id_num_uses": Field(
            Int(min=1, max=100000), required=False, default=1000,
            doc="logins one secret-id allows; a run logs in at every deploy-lock heartbeat "
                "(4 a minute in prod), so size it for the longest run, not for one login"),
        "secret_id_bound_cidrs": Field(ListOf(CIDR), required=False, default=[],
                                       doc="logins only from these addresses (the CI runners' "
                                           "egress); empty: any"),
        "token_bound_cidrs": Field(ListOf(CIDR), required=False, default=[],
                                   doc="the login's token is accepted only from these; "
                                       "empty: any"),
    })),
    "backups": Field(Record({
        "schedule": Field(Str(hint="a cron expression"),
                          doc="first database's slot; the others follow, staggered"),
        "keep_daily": Field(Int(min=1), doc="newest backup of each of the last N days kept"),
        "keep_weekly": Field(Int(min=0), doc="newest backup of each of the last M ISO weeks"),
        "stale_after_hours": Field(Int(min=1), doc="BackupStale alert threshold"),
        "freshness_limit_hours": Field(Int(min=1), required=False, default=24,
                                       doc="prod refuses a migration after an older backup"),
        "gate_migrations": Field(Bool(), required=False, default=False,
                                 doc="refuse migrations on a stale backup or WAL archive here "
                                     "too (prod always does)"),
        "encrypt_to_public_key": Field(
            Optional(Str(pattern=r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+"
                             r"-----END CERTIFICATE-----\s*",
                         hint="a PEM X.509 certificate (public key only)")),
            required=False, default=None,
            doc="encrypt dumps to this certificate (openssl cms); the host cannot decrypt"),
    })),
    "pitr": Field(Record({
        "stanza": Field(Str(pattern=r"[a-z][a-z0-9-]{0,30}", hint="a pgBackRest stanza name")),
        "bucket": Field(Str(pattern=r"[a-z0-9][a-z0-9-]{2,62}", hint="an S3 bucket name")),
        "port": Field(Int(min=1, max=65535), doc="S3 (HTTPS) port on the backup host"),
        "full_schedule": Field(Str(hint="a cron expression"), doc="full backups (weekly)"),
        "diff_schedule": Field(Str(hint="a cron expression"), doc="differential backups"),
        "retention_full": Field(Int(min=1, max=52), doc="full backups kept (with their WAL)"),
        "archive_timeout_seconds": Field(Int(min=10, max=3600),
                                         doc="a WAL segment is archived at least this often"),
        "archive_max_age_seconds": Field(Int(min=60), doc="alert and migration gate threshold"),
        "full_max_age_hours": Field(Int(min=1), doc="PitrFullBackupTooOld threshold"),
        "diff_max_age_hours": Field(Int(min=1), doc="PitrBackupTooOld threshold (any type)"),
        "volume_full_ratio": Field(Number(min=0.1), doc="BackupVolumeFilling threshold"),
        "drill_stale_days": Field(Int(min=1), doc="RestoreDrillStale threshold"),
    }), required=False, default=None,
        doc="continuous archiving to the backup host (pgBackRest, S3 over TLS, encrypted)"),
    "redis_acl": Field(Record({
        "commands": Field(ListOf(Str(pattern=r"[a-z]+(\|[a-z-]+)?",
                                     hint="a Redis command or command|subcommand"), min_len=1),
                          doc="the only commands a service's Redis user may run"),
    }), doc="one Redis ACL user per service, keys and channels under `<service>:` only"),
    "health_check": Field(Record({
        "interval_seconds": Field(Int(min=1, max=600)),
        "timeout_seconds": Field(Int(min=1, max=60)),
        "retries": Field(Int(min=1, max=20)),
        "start_period_seconds": Field(Int(min=0, max=600)),
    })),
    "hmac_replay_window_seconds": Field(Int(min=60, max=300)),
    "starting_credit_cents": Field(Int(min=0)),
    "promo_enabled": Field(Bool()),
    "jwt_jwks_url": Field(Optional(Str(pattern=r"https?://\S+", hint="a URL")), required=False),
    "container_logs": Field(Record({
        "max_size": Field(Str(pattern=r"[0-9]+[kmg]", hint="a size like 10m")),
        "max_file": Field(Int(min=1, max=100)),
    })),
    "logs": Field(Record({
        "retention_days": Field(Int(min=1, max=3650)),
        "port": Field(Int(min=1024, max=65535)),
        "queue_max_disk": Field(Str(pattern=r"[0-9]+[kmg]", hint="a size like 1g")),
        "heartbeat_max_age_seconds": Field(Int(min=120, max=86400)),
    }), doc="central logs: days kept in the store, its RELP port, each host's disk queue, "
            "how old a host's newest heartbeat in the store may be (LogsNotShipped)"),
    "prometheus": Field(Record({
        "scrape_interval": Field(DURATION),
        "evaluation_interval": Field(DURATION),
        "retention": Field(DURATION),
    })),
    "alerting": Field(Record({
        "runbook_base_url": Field(Str(pattern=r"https?://\S+", hint="a URL")),
        "error_rate_ratio": Field(Number(min=0.0001)),
        "webhook_retries_per_15m": Field(Int(min=1)),
        "memory_available_ratio": Field(Number(min=0.01),
                                        doc="HostMemoryLow below this MemAvailable/MemTotal"),
        "postgres_connections_ratio": Field(
            Number(min=0.01, max=1), doc="PostgresTooManyConnections above this share in use"),
        "postgres_replication_lag_bytes": Field(
            Int(min=1), doc="PostgresReplicationLag: a standby this many WAL bytes behind"),
        "redis_memory_ratio": Field(Number(min=0.01, max=1),
                                    doc="RedisMemoryHigh above this share of maxmemory"),
    })),
    "edge": Field(Record({k: Field(t, doc=d) for k, (t, d) in EDGE_LIMITS.items()}),
                  doc="default edge limits of every public route (a catalog entry's `edge` "
                      "overrides them per service)"),
    "tls_certificates": Field(
        MapOf(Str(choices=("acme", "vault")), key=CERT_DOMAIN),
        doc='domain -> where Traefik gets its certificate: "acme" or "vault" ("{host}" in a '
            'domain: one name per app host); empty: no HTTPS at all'),
    "tls_plain_http_domains": Field(
        ListOf(HOSTNAME), doc="API domains still served in plain HTTP on :80 (a balancer "
                              "terminating TLS itself; the audit wants a waiver in prod)"),
    "rollout": Field(Record({
        "min_free_disk_mb": Field(Int(min=0),
                                  doc="free disk for Docker's images every host must show "
                                      "before the first host changes (pre-staging)"),
        "parallel_hosts": Field(Int(min=1, max=50), required=False, default=1,
                                doc="hosts rolled at once after the first changed host (the "
                                    "canary) is done; never two of one placement_group"),
    })),
    "canary": Field(Record({
        "steps": Field(ListOf(Int(min=1, max=100)),
                       doc="percent of the canary host's traffic the new slot gets, step by "
                           "step, ending at 100; empty: no canary (the first host switches at "
                           "once)"),
        "interval_seconds": Field(Int(min=5, max=3600), doc="time at each step"),
        "min_requests": Field(Int(min=1),
                              doc="requests the new slot must answer in a step to be judged"),
        "max_wait_seconds": Field(Int(min=0),
                                  doc="a step with too little traffic waits this long more, "
                                      "then the run stops (--data canary=skip to go on)"),
        "success_min_percent": Field(Number(min=0, max=100),
                                     doc="the new slot's share of non-5xx answers, at least"),
        "success_max_drop_points": Field(Number(min=0, max=100),
                                         doc="and not below the old slot's by more than this"),
        "p99_max_seconds": Field(Number(min=0),
                                 doc="p99 latency at most max(this, p99_max_ratio x old)"),
        "p99_max_ratio": Field(Number(min=1)),
    }), doc="the metric-gated canary on the first host (ops/canary): Traefik weights, judged "
            "from Prometheus"),
    "tls": Field(Record({
        "acme": Field(Record({
            "email": Field(Str(pattern=r"[^@\s]+@[^@\s]+", hint="an e-mail address")),
            "ca_server": Field(Str(pattern=r"https://\S+", hint="an https URL")),
            "ca_file": Field(Optional(Str(pattern=r"/\S+", hint="an absolute path"))),
            "algorithm": Field(Str(choices=("EC256", "EC384", "RSA2048", "RSA4096"))),
            "certificates_duration_hours": Field(Int(min=1)),
        })),
        "min_version": Field(Str(choices=("VersionTLS12", "VersionTLS13"))),
        "hsts_seconds": Field(Int(min=0)),
        "expiry_alert_seconds": Field(Int(min=60), doc="CertificateExpiring below this"),
    }), doc="TLS at the edge: the ACME account and server, the minimum TLS version, HSTS and "
            "when an expiring certificate alerts (ops/render/tls.py)"),
    "data_uids": Field(Record({name: Field(Int(min=1)) for name in UID_OWNERS}),
                       doc="uid each infra process runs as: owner of its 0600 files"),
    "deploy_lock_lease_seconds": Field(
        Int(min=20, max=3600),
        doc="a deploy lock not renewed for this long was left by a dead run and frees itself"),
    # pyinfra's own connection settings, passed through to its SSH connector
    "ssh_user": Field(Str(), required=False),
    "ssh_key": Field(Str(pattern=r"/\S+", hint="an absolute path"), required=False),
    "ssh_known_hosts_file": Field(
        Str(pattern=r"/\S+", hint="an absolute path"),
        doc="the pinned SSH host key of every host (collected out of band): a deploy refuses "
            "an unknown or changed key before anything is sent"),
    "ssh_strict_host_key_checking": Field(
        Str(choices=("yes",)),
        doc="pyinfra's host key policy; only 'yes' (its default 'accept-new' trusts an unknown "
            "host on first use, then pushes secrets to it)"),
    "ssh_port": Field(Int(min=1, max=65535), required=False),
    "relaxations": Field(ListOf(Str(choices=tuple(RELAXATIONS))), required=False, default=[]),
    "db_ha": Field(Optional(DB_HA), required=False, default=None,
                   doc="PostgreSQL high availability (ops/dbha): Patroni members on etcd, a "
                       "router on each app host; the members are exactly the `db` hosts"),
    "testbed_fleet": Field(Optional(Record({
        "state_dir": Field(Str(pattern=r"/\S+", hint="an absolute path"),
                           doc="the testbed's state directory ($SA_TESTBED_STATE overrides it, "
                               "as for testbed.py): its state.json's hosts_count is how many "
                               "hosts it started"),
        "name_prefix": Field(NAME, doc="host i (past the listed ones) is <name_prefix><i>"),
        "address_base": Field(Str(hint="an IPv4 address"),
                              doc="host i's address is this one plus i"),
        "roles": Field(ListOf(Str(choices=ROLES), min_len=1)),
        "services": Field(ListOf(NAME, min_len=1),
                          doc="the only services those hosts run; every other service stays "
                              "on the listed hosts"),
    })), required=False, default=None,
        doc="local only: the hosts a testbed started beyond those `hosts` lists "
            "(ops/catalog/testbed_fleet.py)"),
})
