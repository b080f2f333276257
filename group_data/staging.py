"""Staging: differences from group_data/all.py only. Holds every production invariant."""

env = "staging"
api_domains = ["api.staging.superapp.sy"]
# The public certificate is the operator's (Vault <prefix>/shared/tls#api.staging.superapp.sy):
# ACME HTTP-01 cannot work for a name every app host shares behind the balancers.
tls_certificates = {"api.staging.superapp.sy": "vault"}
default_allowed_origins = ["https://app.staging.superapp.sy", "https://admin.staging.superapp.sy"]
allowed_origins = {}

hosts = [
    {"name": "stg-app-1", "address": "10.20.0.11", "roles": ["app"]},
    {"name": "stg-app-2", "address": "10.20.0.12", "roles": ["app"]},
    {"name": "stg-data-1", "address": "10.20.1.11", "roles": ["db", "monitoring"]},
    {"name": "stg-backup-1", "address": "10.20.3.11", "roles": ["backup"]},
]

registry = "registry.superapp.internal:5000"
# The pinned SSH host key of every host above (from the provisioning system, not a first login).
ssh_known_hosts_file = "/etc/superapp/known_hosts.staging"
upstream_proxies = ["10.20.9.10"]
# The bastion the deploy runs from and operators come through: the only SSH source.
admin_sources = ["10.20.8.10"]
jwt_jwks_url = "https://auth.staging.superapp.sy/.well-known/jwks.json"

vault = {
    "addr": "https://vault.superapp.internal:8200",
    "mount": "secret",
    "path_prefix": "superapp/staging",
    "auth_method": "approle",
    "ca_path": "/etc/superapp/vault-ca.pem",
    # A CI deploy's secret-id (minted per release day by an operator: bootstrap_vault.py prints
    # the command). 24h covers a day of deploys, retries and a rollback, and a leaked one is
    # dead by the next day. 1000 logins: each deploy-lock heartbeat logs in twice (every 30 s),
    # so that is ~4 h of held lock, above the longest run (a full rotation with its replay
    # window waits); it caps a leaked secret-id, the TTL is the real bound. Bind logins to the
    # CI runners' egress addresses here once they are fixed ("secret_id_bound_cidrs", and
    # "token_bound_cidrs" for the token): unknown today, so not bound.
    "secret_id_ttl": "24h",
    "secret_id_num_uses": 1000,
    "secret_id_bound_cidrs": [],
    "token_bound_cidrs": [],
}
