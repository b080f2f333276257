"""Schema of `ops/catalog/services.yml` (documented with an example in `ops.catalog`)."""

from __future__ import annotations

from ops.catalog.model import SECRET_KINDS
from ops.catalog.schema import (
    Anything,
    Bool,
    Field,
    Int,
    ListOf,
    MapOf,
    Number,
    Optional,
    Record,
    Str,
)

IDENT = r"[a-z][a-z0-9_]*"
ENV_VAR = Str(pattern=r"[A-Z][A-Z0-9_]*", hint="an UPPER_CASE environment variable name")
ARGV = ListOf(Str(), min_len=1)

RESOURCES = Record({
    "memory": Field(Str(pattern=r"[0-9]+[kmg]", hint="a memory size like 256m")),
    "cpus": Field(Number(min=0.01)),
})

# The edge limits Traefik applies to a service's public routes (templates/traefik/dynamic.yml.j2):
# group_data `edge` sets every one per environment, a catalog entry's `edge` overrides some.
EDGE_LIMITS = {
    "rate_per_second": (Int(min=1, max=100000),
                        "requests/s one client may send on average (Traefik rateLimit; over it: "
                        "429)"),
    "rate_burst": (Int(min=1, max=100000), "requests one client may send at once above the rate"),
    "in_flight": (Int(min=1, max=100000),
                  "requests one client may have open at once (Traefik inFlightReq; over: 429)"),
    "max_body_bytes": (Int(min=1024, max=1073741824),
                       "largest request body (Traefik buffering; over it: 413)"),
}

SIDECAR = Record({
    "command": Field(ARGV, doc="argv of the sidecar for the real image"),
    "singleton": Field(Bool(), required=False, default=False,
                       doc="runs on exactly one host of the whole environment"),
    "inherit_env": Field(Bool(), required=False, default=True,
                         doc="shares the service's environment and env file"),
    "url_env": Field(Optional(ENV_VAR), required=False,
                     doc="env var that receives the URL of the service's live slot"),
    "secret_env": Field(MapOf(Str(), key=ENV_VAR), required=False, default={},
                        doc="env var -> secret key of the service it receives"),
    "resources": Field(Optional(RESOURCES), required=False),
    "health_command": Field(Optional(ARGV), required=False,
                            doc="argv run inside the sidecar, exit 0 = healthy: its Docker "
                                "health check and the rollout's health gate (none: running "
                                "is healthy)"),
})

SERVICE_FIELDS = {
    "image": Field(Str(pattern=r"[a-z0-9][a-z0-9._/-]*",
                       hint="an image repository without registry or tag")),
    "port": Field(Int(min=1, max=65535)),
    "health_path": Field(Str(pattern=r"/[A-Za-z0-9/_.-]*", hint="a path starting with /")),
    "database": Field(Optional(Str(pattern=IDENT, hint="a lowercase identifier"))),
    "has_alembic": Field(Bool()),
    "migrate_command": Field(Optional(ARGV)),
    "schema_bootstrap_command": Field(Optional(ARGV), doc=(
        "argv that creates the schema of an empty database once, run with "
        "AUTO_CREATE_SCHEMA=true by tasks/bootstrap_schema.py (services without migrations)")),
    "hmac_role": Field(Str(choices=("verifier", "caller", "none"))),
    "jwt_mode": Field(Str(choices=("secret", "jwks"))),
    "admin_token": Field(Str(choices=("sha256", "none"))),
    "routes": Field(ListOf(Str(pattern=r"/[a-z0-9][a-z0-9_/-]*", hint="a path prefix like /taxi"),
                           min_len=1)),
    "secrets": Field(MapOf(Str(choices=SECRET_KINDS), key=ENV_VAR)),
    "env_from_settings": Field(MapOf(Str(pattern=IDENT, hint="a group_data key"), key=ENV_VAR),
                               doc="non-secret env var -> scalar group_data key"),
    "sidecars": Field(MapOf(SIDECAR, key=Str(pattern=IDENT, hint="a lowercase identifier"))),
    "dashboard": Field(Str(choices=("full", "minimal"))),
    "error_tracking": Field(Str(choices=("sentry", "none"))),
    "extra_dashboards": Field(ListOf(Str(pattern=IDENT, hint="a lowercase identifier"))),
    "resources": Field(RESOURCES),
    "health_timeout_seconds": Field(Int(min=1, max=3600)),
    "stop_grace_seconds": Field(Int(min=1, max=600)),
    "edge": Field(Record({k: Field(t, required=False, doc=d) for k, (t, d) in EDGE_LIMITS.items()}),
                  doc="per-service edge limits over group_data `edge` (client = the address "
                      "the load balancer saw)"),
}

SERVICE = Record(SERVICE_FIELDS)
DEFAULTS = Record({k: Field(f.type, required=False) for k, f in SERVICE_FIELDS.items()})
CATALOG = Record({
    "defaults": Field(Anything(), required=False, default={}),  # checked with DEFAULTS
    "services": Field(MapOf(Anything(), key=Str(pattern=IDENT, hint="a lowercase identifier"))),
})
