"""Staging: differences from group_data/all.py only. Holds every production invariant."""

env = "staging"
api_domains = ["api.staging.superapp.sy"]
default_allowed_origins = ["https://app.staging.superapp.sy", "https://admin.staging.superapp.sy"]
allowed_origins = {}

hosts = [
    {"name": "stg-app-1", "address": "10.20.0.11", "roles": ["app"]},
    {"name": "stg-app-2", "address": "10.20.0.12", "roles": ["app"]},
    {"name": "stg-data-1", "address": "10.20.1.11", "roles": ["db", "monitoring"]},
    {"name": "stg-backup-1", "address": "10.20.3.11", "roles": ["backup"]},
]

registry = "registry.superapp.internal:5000"
upstream_proxies = ["10.20.9.10"]
jwt_jwks_url = "https://auth.staging.superapp.sy/.well-known/jwks.json"

vault = {
    "addr": "https://vault.superapp.internal:8200",
    "mount": "secret",
    "path_prefix": "superapp/staging",
    "auth_method": "approle",
    "ca_path": "/etc/superapp/vault-ca.pem",
}
