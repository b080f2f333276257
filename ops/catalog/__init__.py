'''The service catalog and per-environment data: schema, loader, validation.

Two sources, validated together by `load_environment(env)` into one `Environment`:

* `ops/catalog/services.yml`: the services (pure data, the same in every environment). Its
  `defaults` mapping is merged into each entry, so a new service is one entry under `services`
  and nothing else: every artifact (compose, Traefik, Prometheus, Grafana, env files, database
  init) is derived from the catalog.
* `group_data/all.py` (defaults) + `group_data/<env>.py` (differences only): per-environment
  data. These are pyinfra group_data files, loaded by pyinfra as host data too, so they hold
  only `lowercase_name = <literal>` assignments (parsed, never executed here). A key set in
  `<env>.py` replaces the whole value from `all.py`, as in pyinfra.

Any unknown key, missing key, wrong type or impossible value raises one `ConfigError` listing
every problem as `<file>: <key.path>: <message>`, e.g.
`group_data/prod.py: unknown key 'alowed_origins' (did you mean 'allowed_origins'?)` or
`group_data/prod.py: allowed_origins.payments: '*' is not allowed in prod`.

Public API (for inventories/, deploy.py and tasks/):

* `load_environment(env: str, root: Path = REPO_ROOT) -> Environment`
* `inventory_groups(environment) -> {"app"|"db"|"monitoring": [(name, host data), ...]}`
* `Environment`: `.hosts` (rollout order), `.services`, `.placement`, `.singleton_hosts`,
  `.settings` (the merged group_data), `.services_on(host)`, `.hosts_running(service)`,
  `.image(service)`, `.migrate_command(service)`, `.secret_refs(service)`,
  `.all_secret_refs()` (Vault path, key and kind of every secret, for fetch and rotation).

Example service entry::

    services:
      payments:
        image: superapp/payments             # repository; registry and tag come from group_data
        port: 8000
        health_path: /health
        database: payments                   # null: no database
        has_alembic: true
        migrate_command: [alembic, upgrade, head]   # argv; null = no migrations
        schema_bootstrap_command: null       # without migrations, required in prod/staging:
                                             #   argv creating an empty database's schema once
                                             #   (tasks/bootstrap_schema.py, AUTO_CREATE_SCHEMA)
        hmac_role: verifier                  # verifier | caller | none (internal API signing)
        jwt_mode: secret                     # secret (JWT_SECRET) | jwks (JWT_JWKS_URL)
        admin_token: none                    # sha256: ADMIN_TOKEN in Vault, hash in the env
        routes: [/payments]                  # public path prefixes on the API domain(s)
        secrets: {}                          # extra secret env vars -> kind (jwt, admin-token,
                                             #   hmac, api-key, password, url, email, hostport,
                                             #   string); JWT_SECRET, DB_PASSWORD, HMAC and
                                             #   Redis secrets are derived from the fields above
        env_from_settings: {STARTING_CREDIT_CENTS: starting_credit_cents}  # env -> group_data
        error_tracking: sentry               # sentry: SENTRY_DSN (kind url, optional) from
                                             #   Vault, SENTRY_ENVIRONMENT, SENTRY_RELEASE;
                                             #   none: no error tracker (audit warning in prod)
        sidecars:
          worker:
            command: [celery, -A, app.worker, worker]
            health_command: [celery, -A, app.worker, inspect, ping]  # exit 0 = healthy
          beat:
            command: [celery, -A, app.worker, beat]
            singleton: true                  # exactly one in the whole environment
          # reaper-like sidecars: inherit_env: false, url_env: TAXI_URL,
          #                       secret_env: {TAXI_ADMIN_TOKEN: ADMIN_TOKEN}
        dashboard: full                      # full | minimal
        extra_dashboards: []                 # e.g. [taxi_wallet]
        resources: {memory: 512m, cpus: 1.0}
        health_timeout_seconds: 60           # rollout gives up waiting for /health after this
        stop_grace_seconds: 30               # SIGTERM -> SIGKILL
        edge: {max_body_bytes: 65536}        # overrides of group_data `edge` for its public
                                             #   routes: rate_per_second, rate_burst,
                                             #   in_flight (per client: 429), max_body_bytes (413)

Example group_data::

    env = "prod"                                   # must equal the file name
    api_domains = ["api.superapp.sy"]              # Traefik Host() rules
    default_allowed_origins = ["https://app.superapp.sy"]   # CORS; never "*"
    allowed_origins = {"payments": ["https://pay.superapp.sy"]}  # per service overrides
    hosts = [                                      # ROLLOUT ORDER; roles: app, db, monitoring
        {"name": "app-1", "address": "10.10.0.11", "roles": ["app"],
         "placement_group": "rack-a"},             # never rolled at once with another of it
        {"name": "app-2", "address": "10.10.0.12", "roles": ["app"],
         "public_address": "10.10.5.12"},          # where :80 is published (default: address)
        {"name": "db-1", "address": "10.10.1.11", "roles": ["db"]},
        {"name": "mon-1", "address": "10.10.2.11", "roles": ["monitoring"]},
    ]
    placement = {"ai_gateway": ["app-2"]}          # default: every app host
    singleton_hosts = {"payments.beat": "app-1"}   # default: first app host running payments
    registry = "registry.superapp.internal:5000"
    default_image_tag = "2025.11.1"                # never "latest"
    image_tags = {"payments": "2025.11.2"}
    standin_image = None                           # local only (relaxation "standin-image")
    infra_images = {"traefik": "superapp/traefik:3.7.15",
                    "prometheus": "superapp/prometheus:2.42.0",
                    "alertmanager": "superapp/alertmanager:0.25.0",
                    "node_exporter": "superapp/node-exporter:1.5.0",
                    "postgres": "superapp/postgres:15.18.0", "redis": "superapp/redis:7.0.15",
                    "seaweedfs": "superapp/seaweedfs:4.48.0",
                    "blackbox_exporter": "superapp/blackbox-exporter:0.23.0",
                    "rsyslog": "superapp/rsyslog:8.2302.0",
                    "postgres_exporter": "superapp/postgres-exporter:0.11.1",
                    "redis_exporter": "superapp/redis-exporter:1.45.0",
                    "etcd": "superapp/etcd:3.4.23", "patroni": "superapp/patroni:3.0.2",
                    "haproxy": "superapp/haproxy:2.6.12"}
    upstream_proxies = ["10.10.9.10"]              # load balancers: Traefik's trustedIPs
    admin_sources = ["10.10.8.10"]                 # the only SSH sources (host firewall)
    firewall = {"confirm_seconds": 60}             # a new ruleset reverts unless confirmed
    ssh_known_hosts_file = "/etc/superapp/known_hosts.prod"  # pinned host keys
    ssh_strict_host_key_checking = "yes"           # pyinfra refuses unknown/changed keys
    edge = {"rate_per_second": 100, "rate_burst": 200,      # per client, at Traefik: 429
            "in_flight": 100, "max_body_bytes": 1048576}    # bigger body: 413
    rollout = {"min_free_disk_mb": 2048,           # every host, before the first changes
               "parallel_hosts": 1}                # hosts at once after the canary host
    canary = {"steps": [5, 25, 50, 100],           # % to the new slot on the first host
              "interval_seconds": 60, "min_requests": 100, "max_wait_seconds": 300,
              "success_min_percent": 99.0, "success_max_drop_points": 0.5,  # vs old slot
              "p99_max_seconds": 1.0, "p99_max_ratio": 1.5}  # p99 <= max(1 s, 1.5 x old)
    tls_certificates = {"api.superapp.sy": "vault"}  # or "acme"; "{host}.x": one per host
    tls_plain_http_domains = []                     # else :80 only redirects to https
    tls = {"acme": {"email": "ops@superapp.sy",
                    "ca_server": "https://acme-v02.api.letsencrypt.org/directory",
                    "ca_file": None, "algorithm": "EC256",
                    "certificates_duration_hours": 2160},  # renewed with a third left
           "min_version": "VersionTLS12", "hsts_seconds": 63072000,
           "expiry_alert_seconds": 1209600}                # CertificateExpiring
    docker_network = {"name": "superapp", "subnet": "172.30.0.0/24",
                      "traefik_address": "172.30.0.2"}  # services' --forwarded-allow-ips
    vault = {"addr": "https://vault.superapp.internal:8200", "mount": "secret",
             "path_prefix": "superapp/prod", "auth_method": "approle",
             "ca_path": "/etc/superapp/vault-ca.pem"}
    backups = {"schedule": "15 2 * * *",          # first database; others +3 min each
               "keep_daily": 7, "keep_weekly": 4,  # retention: newest per day / ISO week
               "stale_after_hours": 26,            # BackupStale alert
               "freshness_limit_hours": 24,        # prod: no migration after an older backup
               "encrypt_to_public_key": None}      # or a PEM certificate (openssl cms)
    redis_acl = {"commands": ["ping", "get", "set", "incrby", "expire", "evalsha"]}  # per
                                                   # service, keys under "<service>:"
    health_check = {"interval_seconds": 10, "timeout_seconds": 3, "retries": 3,
                    "start_period_seconds": 20}
    hmac_replay_window_seconds = 120               # 60-300
    deploy_lock_lease_seconds = 120                # a lock not renewed this long frees itself
    starting_credit_cents = 0                      # > 0 in prod needs promo_enabled = True
    promo_enabled = False
    jwt_jwks_url = "https://auth.superapp.sy/.well-known/jwks.json"
    container_logs = {"max_size": "10m", "max_file": 5}
    logs = {"retention_days": 14, "port": 2514,   # central store on the monitoring host
            "queue_max_disk": "1g",                # per host, while the store is away
            "heartbeat_max_age_seconds": 300}      # LogsNotShipped
    prometheus = {"scrape_interval": "15s", "evaluation_interval": "15s", "retention": "15d"}
    alerting = {"runbook_base_url": "https://runbooks.superapp.sy/alerts",
                "error_rate_ratio": 0.05, "webhook_retries_per_15m": 20,
                "memory_available_ratio": 0.10, "postgres_connections_ratio": 0.8,
                "postgres_replication_lag_bytes": 67108864, "redis_memory_ratio": 0.9}
    data_uids = {"redis": 999, "prometheus": 65534, "alertmanager": 65534, "postgres": 101,
                 "seaweedfs": 65534, "log_store": 65534,
                 "patroni": 102, "etcd": 100, "haproxy": 101}
    relaxations = []                               # local only: standin-image,
                                                   # vault-token-auth, vault-plain-http
    testbed_fleet = None                           # local only: the hosts a testbed started
                                                   # past `hosts` (ops/catalog/testbed_fleet.py)
'''

from ops.catalog.errors import ConfigError
from ops.catalog.inventory import inventory_for, inventory_groups
from ops.catalog.loader import REPO_ROOT, load_catalog, load_environment
from ops.catalog.model import Catalog, Environment, Host, SecretRef, Service, Sidecar

__all__ = [
    "REPO_ROOT", "Catalog", "ConfigError", "Environment", "Host", "SecretRef", "Service",
    "Sidecar", "inventory_for", "inventory_groups", "load_catalog", "load_environment",
]
