"""Production: differences from group_data/all.py only."""

env = "prod"
api_domains = ["api.superapp.sy"]
# The public certificate is the operator's (Vault <prefix>/shared/tls#api.superapp.sy):
# ACME HTTP-01 cannot work for a name every app host shares behind the balancers.
tls_certificates = {"api.superapp.sy": "vault"}

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
# The pinned SSH host key of every host above (from the provisioning system, not a first login).
ssh_known_hosts_file = "/etc/superapp/known_hosts.prod"
# The load balancers in front of the app hosts: the only sources Traefik trusts for X-Forwarded-*.
upstream_proxies = ["10.10.9.10", "10.10.9.11"]
# The bastions the deploy runs from and operators come through: the only SSH sources.
admin_sources = ["10.10.8.10", "10.10.8.11"]

vault = {
    "addr": "https://vault.superapp.internal:8200",
    "mount": "secret",
    "path_prefix": "superapp/prod",
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
