"""Defaults for every environment (pyinfra loads this file for every host).

Plain data only: top-level `lowercase_name = <literal>` assignments, no imports, no logic.
`group_data/<env>.py` overrides a key by restating it whole (top-level keys are replaced, not
merged, exactly as pyinfra does). Schema and documented example: `ops/catalog/__init__.py`.
"""

# Browser origins allowed by CORS for services without an entry in `allowed_origins`.
default_allowed_origins = ["https://app.superapp.sy", "https://admin.superapp.sy"]
allowed_origins = {
    "payments": ["https://app.superapp.sy", "https://pay.superapp.sy"],
    "doctors": ["https://app.superapp.sy", "https://clinic.superapp.sy"],
}

# service -> app hosts; a service not listed runs on every app host.
placement = {}
# "service.sidecar" -> host for singleton sidecars; default: first app host running the service.
singleton_hosts = {}

default_image_tag = "2025.11.1"
image_tags = {}
standin_image = None

infra_images = {
    "traefik": "superapp/traefik:3.7.15",
    "prometheus": "superapp/prometheus:2.42.0",
    "alertmanager": "superapp/alertmanager:0.25.0",
    "node_exporter": "superapp/node-exporter:1.5.0",
    "postgres": "superapp/postgres:15.18.0",
    "redis": "superapp/redis:7.0.15",
    "seaweedfs": "superapp/seaweedfs:4.48.0",
    "blackbox_exporter": "superapp/blackbox-exporter:0.23.0",
    "rsyslog": "superapp/rsyslog:8.2302.0",
    "postgres_exporter": "superapp/postgres-exporter:0.11.1",
    "redis_exporter": "superapp/redis-exporter:1.45.0",
    # the database cluster (`db_ha`): Debian's etcd-server, patroni and haproxy packages
    "etcd": "superapp/etcd:3.4.23",
    "patroni": "superapp/patroni:3.0.2",
    "haproxy": "superapp/haproxy:2.6.12",
}

# The docker network every container of a host joins; Traefik has a fixed address on it, which
# is the only address services trust for X-Forwarded-* headers.
docker_network = {"name": "superapp", "subnet": "172.30.0.0/24", "traefik_address": "172.30.0.2"}

# Nightly pg_dump of every database (ops/render/backup.py; restore: ops/runbooks/restore.md).
# keep_daily/keep_weekly: newest backup of each of the last N days / M ISO weeks is kept.
# freshness_limit_hours: in prod a migration is refused when the last good backup is older.
# encrypt_to_public_key: None, or a PEM certificate: dumps are encrypted to it (openssl cms).
backups = {
    "schedule": "15 2 * * *", "keep_daily": 7, "keep_weekly": 4, "stale_after_hours": 26,
    "freshness_limit_hours": 24, "encrypt_to_public_key": None,
}
# Continuous WAL archiving and point-in-time recovery (pgBackRest; the repository is an S3
# bucket over TLS on the `backup` role host, encrypted with a passphrase from Vault).
pitr = {
    "stanza": "superapp", "bucket": "superapp-pitr", "port": 8333,
    "full_schedule": "30 1 * * 0", "diff_schedule": "30 1 * * 1-6", "retention_full": 4,
    "archive_timeout_seconds": 60, "archive_max_age_seconds": 300,
    "full_max_age_hours": 192, "diff_max_age_hours": 26, "volume_full_ratio": 0.8,
    "drill_stale_days": 8,
}
# Redis: one ACL user per service, named after it, limited to keys and channels under
# "<service>:" (the apps prefix every key: REDIS_KEY_PREFIX) and to these commands: what rate
# limiting (limits/slowapi: counters, Lua scripts) and Celery (kombu's Redis transport and
# result backend) send. Everything else (KEYS, FLUSHALL, CONFIG, ...) is refused.
redis_acl = {
    "commands": [
        "ping", "echo", "hello", "client|setname", "client|getname", "client|id",
        "get", "set", "setnx", "setex", "mget", "del", "exists", "incr", "incrby", "decr",
        "decrby", "expire", "pexpire", "ttl", "pttl", "eval", "evalsha", "script|load",
        "script|exists", "lpush", "rpush", "lpop", "rpop", "brpop", "llen", "lrange", "lrem",
        "ltrim", "sadd", "srem", "smembers", "sismember", "scard", "zadd", "zrem", "zcard",
        "zscore", "zrangebyscore", "zrevrangebyscore", "hset", "hget", "hmget", "hdel",
        "hgetall", "hexists", "publish", "subscribe", "psubscribe", "unsubscribe",
        "punsubscribe", "multi", "exec", "discard", "watch", "unwatch",
    ],
}
health_check = {
    "interval_seconds": 10, "timeout_seconds": 3, "retries": 3, "start_period_seconds": 20,
}
hmac_replay_window_seconds = 120

# One deploy at a time per environment (a lock in Vault, renewed every lease/4 while the run
# lives); a run that died frees it after this long, or break it with --data break_lock=<token>.
deploy_lock_lease_seconds = 120
starting_credit_cents = 0
promo_enabled = False
jwt_jwks_url = "https://auth.superapp.sy/.well-known/jwks.json"

container_logs = {"max_size": "10m", "max_file": 5}
# Central logs (ops/render/logs.py): an rsyslog shipper per host, the store on the monitoring
# host. `make logs ENV=... SERVICE=...` reads the store.
logs = {
    "retention_days": 14,  # store files older than this are deleted (cron, daily)
    "port": 2514,  # RELP, on the monitoring host's private address
    "queue_max_disk": "1g",  # per host: what waits on disk while the store is away
    # LogsNotShipped: a host's newest heartbeat line in the store is older than this
    "heartbeat_max_age_seconds": 300,
}
prometheus = {"scrape_interval": "15s", "evaluation_interval": "15s", "retention": "15d"}
alerting = {
    "runbook_base_url": "https://runbooks.superapp.sy/alerts",
    "error_rate_ratio": 0.05,
    "webhook_retries_per_15m": 20,
    # HostMemoryLow: MemAvailable / MemTotal below this for 10 minutes
    "memory_available_ratio": 0.10,
    # PostgresTooManyConnections: connections / max_connections above this for 5 minutes
    "postgres_connections_ratio": 0.8,
    # PostgresReplicationLag: a standby this many WAL bytes behind the primary's current
    # position (measured on the primary; no standby: no series, silent). 4 WAL segments.
    "postgres_replication_lag_bytes": 67108864,
    # RedisMemoryHigh: used / maxmemory (or / the host's memory when maxmemory is unset)
    "redis_memory_ratio": 0.9,
}
# uid each infra process runs as in its image: it owns its 0600 config files (secrets inside).
# (postgres: its entrypoint chowns its data directory itself; the uid owns pgBackRest's config.
# patroni, etcd, haproxy: the users Debian's packages create in the testbed's images, checked
# against the images by tests/integration/test_db_ha.py)
data_uids = {"redis": 999, "prometheus": 65534, "alertmanager": 65534, "postgres": 101,
             "seaweedfs": 65534, "log_store": 65534,
             "patroni": 102, "etcd": 100, "haproxy": 101}
relaxations = []

# SSH host keys are pinned: pyinfra refuses a host whose key is unknown or changed (before it
# authenticates, so before anything is sent). Each environment names its known_hosts file
# (`ssh_known_hosts_file`), filled out of band from the provisioning system, never on first use.
ssh_strict_host_key_checking = "yes"

# Limits Traefik applies at the edge to every public route, per client address (the address the
# load balancer saw, from X-Forwarded-For past `upstream_proxies`). Generous per client on purpose:
# mobile carriers put many users behind one address (carrier-grade NAT). A catalog entry's `edge`
# overrides them for its service (payments: small bodies). Over a rate or in-flight limit: 429;
# a bigger body: 413, before the request reaches the service.
edge = {"rate_per_second": 100, "rate_burst": 200, "in_flight": 100, "max_body_bytes": 1048576}

# The host firewall (ops/firewall, nftables, rendered per role): applied "commit confirmed": a
# new ruleset reverts by itself after confirm_seconds unless the deploy reaches the host again
# over a new SSH connection (a ruleset that would cut the controller off undoes itself).
firewall = {"confirm_seconds": 60}

# Before the first host changes, every host pulls what it lacks and shows this much free disk
# for Docker's images, all hosts at once (ops/rollout/prestage.py). parallel_hosts: hosts
# rolled at once once the first changed host (the canary) is done, never two hosts of one
# `placement_group` (a host key); `--data parallel_hosts=N` for one run.
rollout = {"min_free_disk_mb": 2048, "parallel_hosts": 1}

# The canary (ops/canary): on the first host the rollout changes, the new slot of each changed
# service gets `steps` percent of that host's traffic in turn, `interval_seconds` each, through
# Traefik weights. At each step the environment's Prometheus says how the new slot answered
# compared with the old one; a worse release is taken out (100% old) and the run stops before
# any other host. Too little traffic to judge stops the run too (--data canary=skip goes on).
canary = {"steps": [5, 25, 50, 100], "interval_seconds": 60, "min_requests": 100,
          "max_wait_seconds": 300, "success_min_percent": 99.0,
          "success_max_drop_points": 0.5, "p99_max_seconds": 1.0, "p99_max_ratio": 1.5}

# TLS at the edge (ops/render/tls.py). Traefik serves every public route over HTTPS on its
# `websecure` entrypoint (443, TLS 1.2+, AEAD suites, HSTS) with these certificates; `web` (80)
# answers ACME HTTP-01 challenges and redirects the rest to https, except
# `tls_plain_http_domains`.
# tls_certificates: domain -> "acme" (Traefik's own ACME client; account key and certificates
#   in a 0600 file only Traefik's uid reads, copied nightly on the host) or "vault" (the
#   operator's key and chain as one PEM bundle in Vault at <prefix>/shared/tls, key = the
#   domain). "{host}" in a domain: one name and certificate per app host (a balancer's TLS hop
#   to each host). ACME for a name several app hosts share is refused: its HTTP-01 challenge
#   would reach any of them through the balancer. Empty: no HTTPS at all.
# tls_plain_http_domains: API domains still served in plaintext on `web`: only behind a
#   balancer that terminates TLS itself; prod and staging need an audit waiver for it.
# tls.acme: the ACME directory, the account's e-mail, a CA file on the hosts for a private ACME
#   server (None: the system's), the key algorithm, and how long its certificates last
#   (Traefik renews with a third of that left: 30 days for Let's Encrypt's 90).
tls_certificates = {}
tls_plain_http_domains = []
tls = {
    "acme": {"email": "ops@superapp.sy",
             "ca_server": "https://acme-v02.api.letsencrypt.org/directory", "ca_file": None,
             "algorithm": "EC256", "certificates_duration_hours": 2160},
    "min_version": "VersionTLS12",
    "hsts_seconds": 63072000,
    # CertificateExpiring: a certificate Traefik serves expires within this (ACME renews long
    # before; a Vault certificate waits for its operator: ops/runbooks/certificate-expiring.md)
    "expiry_alert_seconds": 1209600,
}
