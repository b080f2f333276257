"""Production: differences from group_data/all.py only."""

env = "prod"
api_domains = ["api.superapp.sy"]

# Rollout order: one app host first (the canary), then the rest.
hosts = [
    {"name": "app-1", "address": "10.10.0.11", "roles": ["app"]},
    {"name": "app-2", "address": "10.10.0.12", "roles": ["app"]},
    {"name": "app-3", "address": "10.10.0.13", "roles": ["app"]},
    {"name": "app-4", "address": "10.10.0.14", "roles": ["app"]},
    {"name": "db-1", "address": "10.10.1.11", "roles": ["db"]},
    {"name": "mon-1", "address": "10.10.2.11", "roles": ["monitoring"]},
    {"name": "backup-1", "address": "10.10.3.11", "roles": ["backup"]},
]

registry = "registry.superapp.internal:5000"
# The load balancers in front of the app hosts: the only sources Traefik trusts for X-Forwarded-*.
upstream_proxies = ["10.10.9.10", "10.10.9.11"]

vault = {
    "addr": "https://vault.superapp.internal:8200",
    "mount": "secret",
    "path_prefix": "superapp/prod",
    "auth_method": "approle",
    "ca_path": "/etc/superapp/vault-ca.pem",
}
