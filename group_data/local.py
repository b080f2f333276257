"""The local testbed (testbed/, README "The testbed"): differences from group_data/all.py only.

What the testbed cannot provide is relaxed explicitly in `relaxations`; the validator and the
audit read that list, and prod/staging may not have one.
"""

env = "local"
relaxations = ["standin-image", "vault-token-auth", "vault-plain-http", "registry-plain-http"]

api_domains = ["api.superapp.test"]
default_allowed_origins = ["http://app.superapp.test"]
allowed_origins = {}

hosts = [
    {"name": "host1", "address": "10.231.0.11", "roles": ["app", "db"]},
    {"name": "host2", "address": "10.231.0.12", "roles": ["app"]},
    {"name": "host3", "address": "10.231.0.13", "roles": ["app", "monitoring", "backup"]},
]
# `testbed.py up --hosts N` with N > 3 starts host4..hostN at 10.231.0.(10+i), plain app hosts;
# the loader adds them from the testbed's state.json (ops/catalog/testbed_fleet.py). Two cores
# hold 17 services on three hosts, not on twelve: the extra hosts run payments (the service the
# fleet bench rolls) and chat (no sidecar, calls no one) only; every other service stays on
# host1..host3. No state file, or N <= 3: exactly the three hosts above.
testbed_fleet = {
    "state_dir": "/var/lib/superapp-testbed",
    "name_prefix": "host", "address_base": "10.231.0.10", "roles": ["app"],
    "services": ["payments", "chat"],
}

registry = "10.231.0.1:5000"
registry_api = {"url": "http://10.231.0.1:5000", "ca_path": None}
default_image_tag = "v1"
# No Super-App image exists here: every service runs the stand-in, which takes its role as the
# last argument (serve, migrate, worker, beat, reaper).
standin_image = {"repository": "superapp/standin", "command": ["python3", "/app/standin.py"]}

# Test clients reach the hosts from the testbed bridge.
upstream_proxies = ["10.231.0.1"]
# The controller (the deploy, the tests, the operator): the only SSH source of the hosts.
# The firewall reverts a ruleset quickly on the testbed (tests wait out a revert).
admin_sources = ["10.231.0.1"]
firewall = {"confirm_seconds": 15}
jwt_jwks_url = "http://10.231.0.1:8089/.well-known/jwks.json"

# TLS from the testbed's ACME server (Pebble, Let's Encrypt's test server, on the controller):
# each app host gets a certificate for its own name (Pebble resolves host1.superapp.test to
# host1 through its test DNS server), and Pebble's short validity makes Traefik renew every few
# minutes. vault.superapp.test: a certificate from Vault (the bootstrap's self-signed one).
# api.superapp.test stays plain on `web`: the testbed balancer's hop (the suite's load).
tls_certificates = {"{host}.superapp.test": "acme", "vault.superapp.test": "vault"}
tls_plain_http_domains = ["api.superapp.test"]
tls = {
    "acme": {"email": "ops@superapp.test", "ca_server": "https://10.231.0.1:14000/dir",
             # put on every host by the testbed (its provisioning): the CA of Pebble's API
             "ca_file": "/etc/superapp/pki/acme-ca.pem",
             "algorithm": "EC256", "certificates_duration_hours": 1},
    "min_version": "VersionTLS12",
    "hsts_seconds": 63072000,
    "expiry_alert_seconds": 600,  # Pebble's certificates last 21 minutes, renewed with ~16 left
}

# Lower than prod so a test's burst from one client reaches them; still above what the
# rollout tests' load sends one service on one host (it comes without X-Forwarded-For from the
# controller, the testbed's load balancer: one client).
edge = {"rate_per_second": 50, "rate_burst": 50, "in_flight": 20, "max_body_bytes": 1048576}

# Two cores for three hosts of 17 services: health checks must stay cheap.
health_check = {
    "interval_seconds": 30, "timeout_seconds": 3, "retries": 3, "start_period_seconds": 10,
}

vault = {
    "addr": "http://127.0.0.1:8200",
    "mount": "secret",
    "path_prefix": "superapp/local",
    "auth_method": "token",
    "token_file": "/var/lib/superapp-testbed/vault-token",
    "ca_path": None,
}

# How pyinfra reaches the testbed hosts (testbed/testbed.py makes the key and known_hosts).
ssh_user = "root"
ssh_key = "/var/lib/superapp-testbed/ssh/id_ed25519"
ssh_known_hosts_file = "/var/lib/superapp-testbed/ssh/known_hosts"

# The shortest window the invariants allow: an HMAC rotation waits it out (tests run faster).
hmac_replay_window_seconds = 60

# Tests wait out a dead run's lock: a short lease keeps that quick (heartbeat every 7.5 s).
deploy_lock_lease_seconds = 30

# No canary by default here: the suite runs dozens of deploys with little traffic. The canary
# tests turn it on with `--data canary_steps=10,100` and the short steps below (two Prometheus
# scrapes each). min_requests as prod's: a release failing 5% of requests shows no failure in
# 20 requests 36% of the time (0.95^20), in 100 only 0.6% (0.95^100); the tests' `flaky`
# release must be caught at the first step, which sees about 120 requests in 30 s.
canary = {"steps": [], "interval_seconds": 30, "min_requests": 100, "max_wait_seconds": 60,
          "success_min_percent": 99.0, "success_max_drop_points": 0.5, "p99_max_seconds": 1.0,
          "p99_max_ratio": 1.5}
