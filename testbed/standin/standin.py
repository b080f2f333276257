#!/usr/bin/env python3
"""Stand-in for the product's FastAPI services, used by the deploy testbed.

The real product is 17 FastAPI services that cannot run in the testbed. This one
program stands in for all of them: it is configured per service purely through
environment variables and honours the same operational contract (health, metrics,
prod guards, proxy headers, CORS, internal HMAC, graceful SIGTERM, migrations,
worker/beat/reaper side processes), so the deploy orchestrator can be exercised
end to end.

It needs only the Python 3.11 standard library, plus ``psycopg2`` for ``migrate``.

Commands::

    standin.py serve                 HTTP service (default CMD of the image)
    standin.py migrate               apply the versioned schema to DATABASE_URL
    standin.py create-schema         create the schema in an EMPTY database, once
                                     (AUTO_CREATE_SCHEMA=true; what create_all does at start)
    standin.py worker                Celery-worker stand-in (finishes task on SIGTERM)
    standin.py beat                  Celery-beat stand-in (lock file in BEAT_LOCK_DIR)
    standin.py reaper                taxi sidecar: pings $TAXI_URL/admin/ping
    standin.py health MODE           a sidecar's health check: its loop's heartbeat is recent
    standin.py signed-call URL ...   make HMAC-signed call(s) to another service

Secrets (HMAC keys, JWT secret, tokens, database password) are never printed or
logged, and no log line ever contains request headers or bodies.

Exit codes: 0 ok, 1 failure (migration failed, a signed call failed), 2 bad
configuration or usage, 3 a prod guard failed, 4 another beat holds the lock.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import random
import re
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

try:  # only `migrate` needs psycopg2 (python3-psycopg2 in the image)
    import psycopg2
except ImportError:  # pragma: no cover - depends on the interpreter
    psycopg2 = None

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_GUARD = 3
EXIT_LOCKED = 4

# Inside the container the service must be reachable from other containers and from the
# busybox health check; tests set BIND=127.0.0.1.
DEFAULT_BIND = "0.0.0.0"  # noqa: S104
APP_ENVS = ("prod", "staging", "local")
GUARDED_ENVS = ("prod", "staging")
MAX_BODY_BYTES = 1024 * 1024
MAX_SLOW_MS = 30_000
IDEMPOTENCY_CACHE_SIZE = 10_000
HISTOGRAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Session-level advisory lock that serializes concurrent `migrate` runs on one database.
MIGRATE_LOCK_KEY = 0x5374616E64696E  # "Standin"

# Where a caller reaches payments' internal API when told nothing else: PAYMENTS_INTERNAL_URL
# (the deploy renders http://payments.internal:8081, the host's Traefik) plus this path.
PAYMENTS_CHARGE_PATH = "/internal/charge"

# Route templates used as the `path` metric label (bounded cardinality).
EXACT_ROUTES = (
    "/",
    "/health",
    "/metrics",
    "/api/slow",
    "/api/call-internal",
    "/internal/charge",
    "/admin/ping",
    "/debug/env-digest",
)

# Ordered schema migrations: (version, description, SQL).
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "create table items",
        (
            "CREATE TABLE items ("
            " id bigserial PRIMARY KEY,"
            " name text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        ),
    ),
    (
        2,
        "add column items.status",
        "ALTER TABLE items ADD COLUMN status text NOT NULL DEFAULT 'new'",
    ),
    (
        3,
        "index items.created_at",
        "CREATE INDEX items_created_at_idx ON items (created_at)",
    ),
)


# --------------------------------------------------------------------------- logging

_out_lock = threading.Lock()


def log(message: str) -> None:
    """Write one operational log line to stderr (never secrets)."""
    with _out_lock:
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()


def emit(message: str) -> None:
    """Write one line of program output (access log, results) to stdout."""
    with _out_lock:
        sys.stdout.write(message.rstrip("\n") + "\n")
        sys.stdout.flush()


REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(header: str | None) -> str:
    """The request id a real app's middleware keeps or makes: the caller's `X-Request-Id`
    when it looks like one (the edge or a client set it), else a new random one. It is logged
    with the request and returned, so Traefik's access log (which keeps the header both ways)
    and this service's line carry the same id."""
    if header and REQUEST_ID_RE.fullmatch(header.strip()):
        return header.strip()
    return secrets.token_hex(16)


def die(message: str, code: int) -> NoReturn:
    log(message)
    sys.exit(code)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        die(f"config error: {name} must be a number, got {raw!r}", EXIT_CONFIG)


def env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def require_service_name() -> str:
    name = env_str("SERVICE_NAME").strip()
    if not name:
        die("config error: SERVICE_NAME is required", EXIT_CONFIG)
    return name


def safe_url(url: str) -> str:
    """URL without userinfo, query or fragment, safe to log."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ProxyConfig:
    """uvicorn-compatible `--proxy-headers --forwarded-allow-ips=...` handling."""

    enabled: bool
    trust_all: bool
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    literals: tuple[str, ...]

    def trusts(self, peer: str) -> bool:
        if self.trust_all:
            return True
        if peer in self.literals:
            return True
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """As uvicorn's ProxyHeadersMiddleware: when the TCP peer is a trusted proxy, walk
        X-Forwarded-For from the right and take the first address that is not a trusted proxy
        (a load balancer in front of Traefik is one hop more); all trusted: the leftmost."""
        if not self.enabled or not forwarded_for or not self.trusts(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if not hops:
            return peer
        client = next((h for h in reversed(hops) if not self.trusts(h)), hops[0])
        return client[:64]


def parse_uvicorn_args(extra_args: str, default_allow: str) -> tuple[bool, list[str]]:
    """Return (proxy_headers, forwarded_allow_ips entries) from UVICORN_EXTRA_ARGS."""
    try:
        tokens = shlex.split(extra_args)
    except ValueError:
        tokens = extra_args.split()
    proxy_headers = False
    allow: str | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--proxy-headers":
            proxy_headers = True
        elif tok == "--no-proxy-headers":
            proxy_headers = False
        elif tok.startswith("--forwarded-allow-ips="):
            allow = tok.split("=", 1)[1]
        elif tok == "--forwarded-allow-ips" and i + 1 < len(tokens):
            allow = tokens[i + 1]
            i += 1
        i += 1
    if allow is None:
        allow = default_allow
    entries = [e.strip().strip("'\"") for e in allow.split(",") if e.strip()]
    return proxy_headers, entries


def build_proxy_config(extra_args: str, default_allow: str) -> ProxyConfig:
    enabled, entries = parse_uvicorn_args(extra_args, default_allow)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    literals: list[str] = []
    for entry in entries:
        if entry == "*":
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            literals.append(entry)
    return ProxyConfig(
        enabled=enabled,
        trust_all="*" in entries,
        networks=tuple(networks),
        literals=tuple(literals),
    )


@dataclass(frozen=True)
class Config:
    service: str
    version: str
    app_env: str
    bind: str
    port: int
    broken: bool
    fail_percent: float
    slow_percent: float
    slow_seconds: float
    allowed_origins: tuple[str, ...]
    rate_limit_backend: str
    redis_url: str
    redis_key_prefix: str
    proxy: ProxyConfig
    require_hmac: bool
    hmac_secret: str = field(repr=False)
    hmac_secret_previous: str = field(repr=False)
    replay_window: float
    idempotent_max_age: float
    admin_token_sha256: str
    debug_env_digest: bool
    graceful_timeout: float
    drain_delay: float
    schema_version: int
    call_target_url: str
    call_rate: float
    payments_internal_url: str

    @classmethod
    def from_env(cls, service: str) -> Config:
        port_raw = env_str("PORT", "8000").strip() or "8000"
        try:
            port = int(port_raw)
        except ValueError:
            die(f"config error: PORT must be an integer, got {port_raw!r}", EXIT_CONFIG)
        origins = tuple(o.strip() for o in env_str("ALLOWED_ORIGINS").split(",") if o.strip())
        return cls(
            service=service,
            version=env_str("STANDIN_VERSION", "unknown") or "unknown",
            app_env=(env_str("APP_ENV", "prod").strip().lower() or "prod"),
            bind=env_str("BIND", DEFAULT_BIND).strip() or DEFAULT_BIND,
            port=port,
            broken=env_str("STANDIN_BROKEN").strip() == "1",
            fail_percent=env_float("STANDIN_FAIL_PERCENT", 0.0),
            slow_percent=env_float("STANDIN_SLOW_PERCENT", 0.0),
            slow_seconds=env_float("STANDIN_SLOW_SECONDS", 3.0),
            allowed_origins=origins,
            rate_limit_backend=env_str("RATE_LIMIT_BACKEND", "memory").strip() or "memory",
            redis_url=env_str("REDIS_URL").strip(),
            redis_key_prefix=env_str("REDIS_KEY_PREFIX"),
            proxy=build_proxy_config(
                env_str("UVICORN_EXTRA_ARGS"),
                env_str("FORWARDED_ALLOW_IPS", "127.0.0.1"),
            ),
            require_hmac=env_true("INTERNAL_REQUIRE_HMAC"),
            hmac_secret=env_str("INTERNAL_HMAC_SECRET"),
            hmac_secret_previous=env_str("INTERNAL_HMAC_SECRET_PREVIOUS"),
            replay_window=env_float("INTERNAL_HMAC_REPLAY_WINDOW", 300.0),
            idempotent_max_age=env_float("INTERNAL_HMAC_IDEMPOTENT_MAX_AGE", 86400.0),
            admin_token_sha256=env_str("ADMIN_TOKEN_SHA256").strip().lower(),
            debug_env_digest=env_str("STANDIN_DEBUG_ENV_DIGEST").strip() == "1",
            graceful_timeout=env_float("GRACEFUL_TIMEOUT", 25.0),
            drain_delay=env_float("STANDIN_DRAIN_DELAY", 0.0),
            schema_version=schema_version_cap(),
            call_target_url=(
                env_str("CALL_TARGET_URL").strip() or payments_url(PAYMENTS_CHARGE_PATH)
            ),
            call_rate=env_float("CALL_RATE", 0.0),
            payments_internal_url=payments_url(""),
        )


def payments_url(path: str) -> str:
    """PAYMENTS_INTERNAL_URL + path, or "" when the deploy did not set it (not a caller)."""
    base = env_str("PAYMENTS_INTERNAL_URL").strip().rstrip("/")
    return base + path if base else ""


def schema_version_cap() -> int:
    latest = MIGRATIONS[-1][0]
    raw = env_str("STANDIN_SCHEMA_VERSION").strip().lower()
    if raw in ("", "all"):
        return latest
    try:
        value = int(raw)
    except ValueError:
        die(
            f"config error: STANDIN_SCHEMA_VERSION must be an integer or 'all', got {raw!r}",
            EXIT_CONFIG,
        )
    if value < 0 or value > latest:
        die(
            f"config error: STANDIN_SCHEMA_VERSION must be between 0 and {latest}, got {value}",
            EXIT_CONFIG,
        )
    return value


# --------------------------------------------------------------------------- prod guards


def check_guards(service: str, env: Mapping[str, str]) -> list[str]:
    """Return one message per failing prod guard (empty list: all good or not guarded)."""
    app_env = env.get("APP_ENV", "prod").strip().lower() or "prod"
    if app_env not in APP_ENVS:
        return [f"guard failed: APP_ENV must be one of {', '.join(APP_ENVS)}, got {app_env!r}"]
    if app_env not in GUARDED_ENVS:
        return []
    failed: list[str] = []
    origins = [o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip()]
    if not origins:
        failed.append("guard failed: ALLOWED_ORIGINS must be explicit, got ''")
    elif any("*" in o for o in origins):
        failed.append("guard failed: ALLOWED_ORIGINS must be explicit, got '*'")
    backend = env.get("RATE_LIMIT_BACKEND", "").strip()
    if backend != "redis":
        failed.append(f"guard failed: RATE_LIMIT_BACKEND must be 'redis', got {backend!r}")
    elif not env.get("REDIS_URL", "").strip():
        failed.append("guard failed: REDIS_URL must be set when RATE_LIMIT_BACKEND=redis")
    require_hmac = env.get("INTERNAL_REQUIRE_HMAC", "").strip().lower()
    if service == "payments" and require_hmac != "true":
        failed.append(
            f"guard failed: INTERNAL_REQUIRE_HMAC must be 'true' for payments, got {require_hmac!r}"
        )
    if require_hmac == "true" and not env.get("INTERNAL_HMAC_SECRET", ""):
        failed.append(
            "guard failed: INTERNAL_HMAC_SECRET must be set when INTERNAL_REQUIRE_HMAC=true"
        )
    if env.get("AUTO_CREATE_SCHEMA", "").strip().lower() == "true":
        failed.append("guard failed: AUTO_CREATE_SCHEMA must not be 'true' in prod")
    extra = env.get("UVICORN_EXTRA_ARGS", "")
    _, allow = parse_uvicorn_args(extra, env.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))
    if "*" in allow or "--forwarded-allow-ips=*" in extra or "'*'" in extra:
        failed.append(
            "guard failed: UVICORN_EXTRA_ARGS must not trust every proxy (--forwarded-allow-ips=*)"
        )
    jwks = env.get("JWT_JWKS_URL", "").strip()
    jwt_secret = env.get("JWT_SECRET", "")
    if not jwks and len(jwt_secret) < 32:
        failed.append("guard failed: JWT_JWKS_URL or JWT_SECRET (at least 32 chars) must be set")
    if service == "taxi":
        if not env.get("TOMTOM_API_KEY", "").strip():
            failed.append("guard failed: TOMTOM_API_KEY must be set for taxi")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", env.get("ADMIN_TOKEN_SHA256", "").strip()):
            failed.append("guard failed: ADMIN_TOKEN_SHA256 must be 64 hex chars for taxi")
    return failed


# --------------------------------------------------------------------------- metrics


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    parts = []
    for name, value in zip(names, values, strict=True):
        escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{name}="{escaped}"')
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    """Format like prometheus_client does (1.0, 0.005, 10.0)."""
    return repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def get(self, labels: tuple[str, ...]) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            lines.append(f"{self.name}{_labels(self.labelnames, labels)} {_num(value)}")
        return lines


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...] = HISTOGRAM_BUCKETS,
    ) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self.buckets = buckets
        # labels -> [bucket counts..., +Inf count, sum]
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += 1
            series[-1] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        names = self.labelnames + ("le",)
        for labels, series in items:
            for i, bound in enumerate(self.buckets):
                lines.append(
                    f"{self.name}_bucket{_labels(names, labels + (_num(bound),))} {_num(series[i])}"
                )
            inf_labels = _labels(names, labels + ("+Inf",))
            lines.append(f"{self.name}_bucket{inf_labels} {_num(series[-2])}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {series[-1]!r}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {_num(series[-2])}")
        return lines


def resident_bytes() -> int:
    """This process's resident set size, from /proc/self/statm (pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Metrics:
    def __init__(self, service: str, version: str) -> None:
        self.service = service
        self.version = version
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests handled.",
            ("service", "method", "path", "status"),
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration.",
            ("service", "method", "path"),
        )
        self.hmac = Counter(
            "internal_hmac_verifications_total",
            "Internal HMAC signature verifications.",
            ("result", "key"),
        )
        self.calls = Counter(
            "internal_calls_total",
            "Signed internal calls made by the background caller.",
            ("result",),
        )
        self.charges = Counter(
            "standin_charges_total",
            "Internal charges executed (idempotent replays excluded).",
            ("service",),
        )
        for result in ("ok", "bad_signature", "expired", "missing"):
            for key in ("current", "previous"):
                self.hmac.inc((result, key), 0)
        self.charges.inc((service,), 0)
        # the image contract's webhook metric (README): payments exports it from its start
        self.webhook_retries = Counter(
            "payments_webhook_retries_total", "Payment provider webhook deliveries retried.", ())
        if service == "payments":
            self.webhook_retries.inc((), 0)

    def render(self) -> str:
        lines = [
            "# HELP standin_build_info Build information of the stand-in service.",
            "# TYPE standin_build_info gauge",
            f"standin_build_info{_labels(('version', 'service'), (self.version, self.service))} 1",
            # what prometheus_client's process collector exports in the real images
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {resident_bytes()}",
        ]
        for metric in (
            self.requests,
            self.duration,
            self.hmac,
            self.calls,
            self.charges,
            self.webhook_retries,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


def route_template(path: str) -> str:
    if path in EXACT_ROUTES:
        return path
    if path.startswith("/api/wallet/"):  # taxi's wallet area (its own dashboard)
        return "/api/wallet/{path}"
    if path.startswith("/api/"):
        return "/api/{path}"
    if path.startswith("/internal/"):
        return "/internal/{path}"
    return "{unmatched}"


# --------------------------------------------------------------------------- HMAC


def hmac_signature(secret: str, method: str, target: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 over METHOD\\nPATH\\nTIMESTAMP\\nBODY (PATH includes any query)."""
    message = f"{method.upper()}\n{target}\n{timestamp}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def request_target(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    return f"{target}?{parts.query}" if parts.query else target


@dataclass(frozen=True)
class Verification:
    ok: bool
    result: str  # ok | bad_signature | expired | missing
    key: str  # current | previous
    reason: str


def verify_signature(
    cfg: Config,
    method: str,
    target: str,
    headers: Message,
    body: bytes,
    now: float | None = None,
) -> Verification:
    ts_raw = (headers.get("X-Signature-Timestamp") or "").strip()
    signature = (headers.get("X-Signature") or "").strip().lower()
    if not ts_raw or not signature:
        return Verification(
            False,
            "missing",
            "current",
            "missing X-Signature or X-Signature-Timestamp header",
        )
    try:
        timestamp = int(ts_raw)
    except ValueError:
        return Verification(
            False,
            "missing",
            "current",
            "X-Signature-Timestamp must be integer unix seconds",
        )
    keys = [("current", cfg.hmac_secret), ("previous", cfg.hmac_secret_previous)]
    matched: str | None = None
    for key_name, secret in keys:
        if not secret:
            continue  # an empty secret never validates anything
        expected = hmac_signature(secret, method, target, ts_raw, body)
        if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            matched = key_name
            break
    if matched is None:
        return Verification(False, "bad_signature", "current", "signature does not match")
    age = abs((time.time() if now is None else now) - timestamp)
    if age > cfg.replay_window:
        has_key = bool((headers.get("X-Idempotency-Key") or "").strip())
        if not has_key or age > cfg.idempotent_max_age:
            return Verification(
                False,
                "expired",
                matched,
                f"timestamp outside the {int(cfg.replay_window)} s replay window "
                "(retries of old requests need X-Idempotency-Key)",
            )
    return Verification(True, "ok", matched, "")


@dataclass
class CallResult:
    status: int | None
    body: bytes
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class RedisError(Exception):
    """A Redis error reply or a connection failure; the message is the reply's code word."""


def resp_command(args: Iterable[str]) -> bytes:
    parts = [a.encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def resp_reply(stream: Any) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace").split(" ", 1)[0])
    if kind == b"+":
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    raise RedisError("unexpected reply")


def redis_call(url: str, commands: list[list[str]], timeout: float = 2.0) -> list[Any]:
    """Run `commands` on a NEW connection to the redis:// URL, authenticating as its user
    (Redis ACL) first: what a rate-limited request of the real apps needs, without a pool that
    would hide a password the server no longer accepts. Never puts a password in an error."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise RedisError("REDIS_URL is not a redis:// URL")
    auth = [urllib.parse.unquote(parts.username or "default"),
            urllib.parse.unquote(parts.password or "")]
    db = (parts.path or "/0").strip("/") or "0"
    todo = [["AUTH", *auth]] + ([["SELECT", db]] if db != "0" else []) + commands
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout) as sock:
            sock.sendall(b"".join(resp_command(c) for c in todo))
            stream = sock.makefile("rb")
            replies = [resp_reply(stream) for _ in todo]
    except OSError as e:
        raise RedisError(type(e).__name__) from None
    return replies[len(todo) - len(commands):]


_no_proxy_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_call(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> CallResult:
    """Plain HTTP call (no env proxies). Errors are reported without headers or secrets."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _no_proxy_opener.open(req, timeout=timeout) as resp:
            return CallResult(resp.status, resp.read(), None)
    except urllib.error.HTTPError as exc:
        try:
            data = exc.read()
        except OSError:
            data = b""
        return CallResult(exc.code, data, None)
    except urllib.error.URLError as exc:
        return CallResult(None, b"", f"{type(exc.reason).__name__}: {exc.reason}")
    except (OSError, ValueError) as exc:
        return CallResult(None, b"", f"{type(exc).__name__}: {exc}")


def signed_call(
    url: str,
    secret: str,
    body: bytes = b"{}",
    method: str = "POST",
    idempotency_key: str | None = None,
    timestamp_skew: float = 0.0,
    timeout: float = 10.0,
) -> CallResult:
    method = method.upper()
    if method in ("GET", "HEAD"):
        body = b""
    timestamp = str(int(time.time() - timestamp_skew))
    headers = {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": timestamp,
        "X-Signature": hmac_signature(secret, method, request_target(url), timestamp, body),
    }
    if idempotency_key:
        headers["X-Idempotency-Key"] = idempotency_key
    return http_call(url, method, body or None, headers, timeout)


# --------------------------------------------------------------------------- the service


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    peer: str
    client_ip: str


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status,
        json.dumps(payload, separators=(",", ":")).encode() + b"\n",
        "application/json",
        headers or {},
    )


class InFlight:
    """Counts connections being served so SIGTERM can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        with self._cond:
            self._count += 1

    def leave(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout=timeout)


class App:
    """Request routing and state, independent of the HTTP plumbing."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics = Metrics(cfg.service, cfg.version)
        self.draining = threading.Event()
        self.inflight = InFlight()
        self._idem_lock = threading.Lock()
        self._idem: OrderedDict[tuple[str, str], Response] = OrderedDict()
        self._charge_lock = threading.Lock()
        self._charge_count = 0

    # -- helpers -----------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {"service": self.cfg.service, "version": self.cfg.version}

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        if not origin:
            return {}
        headers = {"Vary": "Origin"}
        if origin in self.cfg.allowed_origins:
            headers["Access-Control-Allow-Origin"] = origin
        elif "*" in self.cfg.allowed_origins:  # only reachable with APP_ENV=local
            headers["Access-Control-Allow-Origin"] = "*"
        return headers

    # -- routing -----------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        path, method = req.path, req.method
        if method == "OPTIONS":
            return self.preflight(req)
        read = method in ("GET", "HEAD")
        if path == "/health" and read:
            return self.health()
        if path == "/metrics" and read:
            return Response(
                200,
                self.metrics.render().encode(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        if path == "/" and read:
            return json_response(200, {**self.identity(), "client_ip": req.client_ip})
        if path == "/api/slow" and read:
            return self.slow(req)
        if path == "/api/rate-limited" and read:
            return self.rate_limited(req)
        if path == "/api/db-session" and read:
            return self.db_session()
        if path == "/api/call-internal":
            if method != "POST":
                return json_response(405, {"error": "method not allowed"})
            return self.call_internal(req)
        if path.startswith("/api/"):
            # the testbed's `flaky` and `slow` releases: healthy, but worse for their users
            if random.uniform(0, 100) < self.cfg.fail_percent:  # noqa: S311 - not crypto
                return json_response(500, {"error": "flaky release (STANDIN_FAIL_PERCENT)"})
            if random.uniform(0, 100) < self.cfg.slow_percent:  # noqa: S311 - not crypto
                time.sleep(self.cfg.slow_seconds)
            payload = {**self.identity(), "client_ip": req.client_ip, "path": path}
            if not read:
                payload["received_bytes"] = len(req.body)
            return json_response(200, payload)
        if path.startswith("/internal/"):
            return self.internal(req)
        if path == "/admin/ping" and read:
            return self.admin_ping(req)
        if path == "/debug/env-digest" and read and self.cfg.debug_env_digest:
            return self.env_digest(req)
        return json_response(404, {"error": "not found"})

    def preflight(self, req: Request) -> Response:
        origin = req.headers.get("Origin")
        headers = self.cors_headers(origin)
        if origin and "Access-Control-Allow-Origin" not in headers:
            return json_response(400, {"error": "disallowed CORS origin"}, headers)
        headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        requested = req.headers.get("Access-Control-Request-Headers")
        if requested:
            headers["Access-Control-Allow-Headers"] = requested[:256]
        headers["Access-Control-Max-Age"] = "600"
        return Response(200, b"", "text/plain", headers)

    # -- endpoints -----------------------------------------------------------------
    def health(self) -> Response:
        payload: dict[str, Any] = {
            "status": "ok",
            **self.identity(),
            "app_env": self.cfg.app_env,
            "rate_limit_backend": self.cfg.rate_limit_backend,
            "schema_version": self.cfg.schema_version,
        }
        if self.cfg.broken:
            payload["status"] = "broken"
            return json_response(503, payload)
        if self.draining.is_set():
            payload["status"] = "draining"
            return json_response(503, payload)
        return json_response(200, payload)

    def rate_limited(self, req: Request) -> Response:
        """Count the client's requests this minute in Redis, as a rate limiter does (keys under
        REDIS_KEY_PREFIX, the only ones the service's ACL user may touch); 503 naming the Redis
        error when Redis refuses (a wrong password, a key outside the prefix)."""
        key = f"{self.cfg.redis_key_prefix}ratelimit:{req.client_ip}:{int(time.time() // 60)}"
        try:
            count, _ = redis_call(self.cfg.redis_url, [["INCR", key], ["EXPIRE", key, "120"]])
        except RedisError as e:
            return json_response(503, {"error": f"redis: {e}", **self.identity()})
        return json_response(200, {"count": count, **self.identity()})

    def db_session(self) -> Response:
        """Open a NEW connection to DATABASE_URL (no pool that would hide a password the server
        no longer accepts) and report who it runs as: the login role (session_user) and the
        role its objects belong to (current_user); 503 naming only the error's class and
        SQLSTATE (a driver message may quote the connection string)."""
        if psycopg2 is None:
            return json_response(503, {"error": "postgres: psycopg2 missing", **self.identity()})
        try:
            params = {**parse_database_url(env_str("DATABASE_URL").strip()), "connect_timeout": 3}
        except ValueError:
            return json_response(503, {"error": "postgres: bad DATABASE_URL", **self.identity()})
        try:
            conn = psycopg2.connect(**params)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT session_user, current_user")
                    session_user, current_user = cur.fetchone()
            finally:
                conn.close()
        except psycopg2.Error as e:
            return json_response(503, {"error": f"postgres: {type(e).__name__} {e.pgcode or ''}",
                                       **self.identity()})
        return json_response(200, {"session_user": session_user, "current_user": current_user,
                                   **self.identity()})

    def slow(self, req: Request) -> Response:
        raw = (req.query.get("ms") or ["1000"])[0]
        try:
            ms = max(0, min(int(raw), MAX_SLOW_MS))
        except ValueError:
            return json_response(400, {"error": "ms must be an integer"})
        time.sleep(ms / 1000.0)
        return json_response(200, {**self.identity(), "client_ip": req.client_ip, "slept_ms": ms})

    def call_internal(self, req: Request) -> Response:
        try:
            data = json.loads(req.body or b"{}")
        except ValueError:
            return json_response(400, {"error": "body must be JSON"})
        if not isinstance(data, dict):
            return json_response(400, {"error": "body must be a JSON object"})
        url = data.get("url")
        if url is None and self.cfg.payments_internal_url:
            # default: payments' internal API through this host's Traefik
            path = data.get("path", PAYMENTS_CHARGE_PATH)
            if not isinstance(path, str) or not path.startswith("/"):
                return json_response(400, {"error": "path must start with /"})
            url = self.cfg.payments_internal_url + path
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            hint = "" if self.cfg.payments_internal_url else " (or PAYMENTS_INTERNAL_URL)"
            return json_response(400, {"error": f"url (http or https) is required{hint}"})
        if not self.cfg.hmac_secret:
            return json_response(500, {"error": "INTERNAL_HMAC_SECRET is not set"})
        body = json.dumps(data.get("body", {}), separators=(",", ":")).encode()
        idem = data.get("idempotency_key")
        try:
            skew = float(data.get("timestamp_skew", 0))
        except (TypeError, ValueError):
            return json_response(400, {"error": "timestamp_skew must be a number"})
        result = signed_call(
            url,
            self.cfg.hmac_secret,
            body,
            method=str(data.get("method", "POST")).upper(),
            idempotency_key=str(idem) if idem else None,
            timestamp_skew=skew,
        )
        upstream: Any = None
        if result.body:
            try:
                upstream = json.loads(result.body)
            except ValueError:
                upstream = result.body[:512].decode("utf-8", "replace")
        payload = {
            "upstream_status": result.status,
            "ok": result.ok,
            "upstream": upstream,
        }
        if result.error:
            payload["error"] = result.error
            return json_response(502, payload)
        return json_response(200, payload)

    def internal(self, req: Request) -> Response:
        key_used: str | None = None
        if self.cfg.require_hmac:
            ver = verify_signature(self.cfg, req.method, req.target, req.headers, req.body)
            self.metrics.hmac.inc((ver.result, ver.key))
            if not ver.ok:
                return json_response(
                    401,
                    {
                        "error": "unauthorized",
                        "reason": ver.reason,
                        "result": ver.result,
                    },
                )
            key_used = ver.key
        idem_key = (req.headers.get("X-Idempotency-Key") or "").strip()
        if not idem_key:
            return self.execute_internal(req, key_used)
        store_key = (req.path, idem_key[:200])
        with self._idem_lock:
            stored = self._idem.get(store_key)
            if stored is not None:
                self._idem.move_to_end(store_key)
                return Response(
                    stored.status,
                    stored.body,
                    stored.content_type,
                    {**stored.headers, "Idempotent-Replayed": "true"},
                )
            resp = self.execute_internal(req, key_used)
            self._idem[store_key] = resp
            while len(self._idem) > IDEMPOTENCY_CACHE_SIZE:
                self._idem.popitem(last=False)
            return resp

    def execute_internal(self, req: Request, key_used: str | None) -> Response:
        if req.path == "/internal/charge":
            if req.method != "POST":
                return json_response(405, {"error": "method not allowed"})
            with self._charge_lock:
                self._charge_count += 1
                number = self._charge_count
            self.metrics.charges.inc((self.cfg.service,))
            return json_response(
                200,
                {
                    **self.identity(),
                    "status": "charged",
                    "charge_id": uuid.uuid4().hex,
                    "charge_number": number,
                    "verified_with": key_used,
                    "body_sha256": hashlib.sha256(req.body).hexdigest(),
                },
            )
        return json_response(
            200,
            {
                **self.identity(),
                "status": "ok",
                "path": req.path,
                "verified_with": key_used,
            },
        )

    def admin_ping(self, req: Request) -> Response:
        auth = req.headers.get("Authorization") or ""
        expected = self.cfg.admin_token_sha256
        if auth.startswith("Bearer ") and re.fullmatch(r"[0-9a-f]{64}", expected):
            token = auth[len("Bearer ") :].strip()
            digest = hashlib.sha256(token.encode()).hexdigest()
            if hmac.compare_digest(digest, expected):
                return json_response(200, {**self.identity(), "admin": "pong"})
        return json_response(401, {"error": "unauthorized"})

    def env_digest(self, req: Request) -> Response:
        name = (req.query.get("key") or [""])[0]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
            return json_response(400, {"error": "key must be an environment variable name"})
        value = os.environb.get(name.encode())
        if value is None:
            return json_response(404, {"error": "not set", "key": name})
        return json_response(200, {"key": name, "sha256": hashlib.sha256(value).hexdigest()})


# --------------------------------------------------------------------------- HTTP plumbing


class BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0 + Connection: close) keeps draining exact."""

    server: StandinServer
    protocol_version = "HTTP/1.0"
    server_version = "standin"
    timeout = 15  # socket timeout: idle/slow clients cannot hold a drain forever

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt: str, *args: Any) -> None:
        pass  # replaced by the JSON access log

    def do_GET(self) -> None:
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BodyError(400, "bad chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                if len(out) + size > MAX_BODY_BYTES:
                    raise BodyError(413, "body too large")
                out += self.rfile.read(size)
                self.rfile.readline(8)
        raw = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw)
        except ValueError:
            raise BodyError(400, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise BodyError(413, "body too large")
        return self.rfile.read(length) if length > 0 else b""

    def dispatch(self) -> None:
        app = self.server.app
        start = time.monotonic()
        method = self.command.upper()
        split = urllib.parse.urlsplit(self.path)
        path = split.path or "/"
        peer = self.client_address[0] if self.client_address else ""
        client_ip = app.cfg.proxy.client_ip(peer, self.headers.get("X-Forwarded-For"))
        try:
            body = self.read_body()
            req = Request(
                method,
                self.path,
                path,
                urllib.parse.parse_qs(split.query),
                self.headers,
                body,
                peer,
                client_ip,
            )
            resp = app.handle(req)
        except BodyError as exc:
            resp = json_response(exc.status, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - never leak details, they may hold secrets
            log(f"serve: error handling {method} {route_template(path)}: {type(exc).__name__}")
            resp = json_response(500, {"error": "internal error"})
        resp.headers.update(app.cors_headers(self.headers.get("Origin")))
        request_id = request_id_of(self.headers.get("X-Request-Id"))
        resp.headers["X-Request-Id"] = request_id
        duration = time.monotonic() - start
        method_label = method if method in KNOWN_METHODS else "OTHER"
        route = route_template(path)
        app.metrics.requests.inc((app.cfg.service, method_label, route, str(resp.status)))
        app.metrics.duration.observe((app.cfg.service, method_label, route), duration)
        emit(
            json.dumps(
                {
                    "ts": utc_now(),
                    "service": app.cfg.service,
                    "method": method,
                    "path": path[:256],
                    "status": resp.status,
                    "duration_ms": round(duration * 1000.0, 3),
                    "client_ip": client_ip,
                    "request_id": request_id,
                },
                separators=(",", ":"),
            )
        )
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            self.send_header("Connection", "close")
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(resp.body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: App) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.app.inflight.enter()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.app.inflight.leave()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.app.inflight.leave()


class BackgroundCaller(threading.Thread):
    """CALL_TARGET_URL (default: PAYMENTS_INTERNAL_URL + /internal/charge) + CALL_RATE: signed
    calls at a fixed rate, counted in metrics."""

    MAX_IN_FLIGHT = 64

    def __init__(self, app: App, stop: threading.Event) -> None:
        super().__init__(name="background-caller", daemon=True)
        self.app = app
        self.stop = stop
        self.slots = threading.BoundedSemaphore(self.MAX_IN_FLIGHT)
        self.sequence = 0
        for result in ("ok", "rejected", "error"):
            app.metrics.calls.inc((result,), 0)

    def run(self) -> None:
        interval = 1.0 / self.app.cfg.call_rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < next_at:
                self.stop.wait(next_at - now)
                continue
            next_at = max(next_at + interval, now - 1.0)
            if not self.slots.acquire(blocking=False):
                self.app.metrics.calls.inc(("error",))
                continue
            self.sequence += 1
            threading.Thread(target=self.call_once, args=(self.sequence,), daemon=True).start()

    def call_once(self, sequence: int) -> None:
        try:
            body = json.dumps({"caller": self.app.cfg.service, "n": sequence}).encode()
            result = signed_call(
                self.app.cfg.call_target_url,
                self.app.cfg.hmac_secret,
                body,
                timeout=5.0,
            )
            if result.ok:
                outcome = "ok"
            elif result.status in (401, 403):
                outcome = "rejected"
            else:
                outcome = "error"
            self.app.metrics.calls.inc((outcome,))
        finally:
            self.slots.release()


class StopSignal:
    """Installs SIGTERM/SIGINT handlers explicitly (the process may be PID 1).

    The handler only sets a flag: taking a lock inside a signal handler could deadlock
    the main thread, so waiting is done by polling with short sleeps.
    """

    POLL = 0.05

    def __init__(self) -> None:
        self.requested = False
        self.name = ""

    def install(self) -> StopSignal:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if not self.requested:
            self.name = signal.Signals(signum).name
            self.requested = True

    def wait(self) -> None:
        while not self.requested:
            time.sleep(self.POLL)

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True early when a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.POLL, left))
        return True


def cmd_serve(_args: argparse.Namespace) -> int:
    service = require_service_name()
    failed = check_guards(service, os.environ)
    if failed:
        for line in failed:
            log(line)
        app_env = env_str("APP_ENV", "prod") or "prod"
        log(
            f"serve: {service} refusing to start: {len(failed)} guard(s) failed (APP_ENV={app_env})"
        )
        return EXIT_GUARD
    cfg = Config.from_env(service)
    if not 60 <= cfg.replay_window <= 300:
        log(
            f"serve: warning: INTERNAL_HMAC_REPLAY_WINDOW={cfg.replay_window:g} is outside 60-300 s"
        )
    stop = StopSignal().install()
    app = App(cfg)
    try:
        server = StandinServer((cfg.bind, cfg.port), app)
    except OSError as exc:
        log(f"serve: cannot listen on {cfg.bind}:{cfg.port}: {exc.strerror or exc}")
        return EXIT_FAILURE
    port = server.server_address[1]
    serve_thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="serve",
        daemon=True,
    )
    serve_thread.start()
    caller_stop = threading.Event()
    if cfg.call_target_url and cfg.call_rate > 0:
        BackgroundCaller(app, caller_stop).start()
        log(f"serve: background caller on, {cfg.call_rate:g} signed call(s)/s")
    log(
        f"serve: {cfg.service} version {cfg.version} listening on {cfg.bind}:{port} "
        f"(APP_ENV={cfg.app_env}{', BROKEN' if cfg.broken else ''})"
    )

    stop.wait()
    app.draining.set()
    caller_stop.set()
    log(f"serve: {stop.name} received, draining: /health now returns 503")
    if cfg.drain_delay > 0:
        time.sleep(cfg.drain_delay)
    server.shutdown()
    server.socket.close()
    log(
        f"serve: listener closed, no new connections; waiting up to {cfg.graceful_timeout:g}s "
        f"for {app.inflight.count} in-flight request(s)"
    )
    if app.inflight.wait_idle(cfg.graceful_timeout):
        log("serve: all in-flight requests finished, exiting 0")
    else:
        log(
            f"serve: graceful timeout reached with {app.inflight.count} request(s) "
            "still in flight, exiting 0"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- migrate


def parse_database_url(url: str) -> dict[str, Any]:
    """Split postgresql://user:pass@host:port/db?opts into psycopg2.connect() kwargs."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL must start with postgresql://")
    params: dict[str, Any] = {"connect_timeout": 10}
    if parts.hostname:
        params["host"] = urllib.parse.unquote(parts.hostname)
    if parts.port:
        params["port"] = parts.port
    if parts.username:
        params["user"] = urllib.parse.unquote(parts.username)
    if parts.password is not None:
        params["password"] = urllib.parse.unquote(parts.password)
    dbname = urllib.parse.unquote(parts.path.lstrip("/"))
    if dbname:
        params["dbname"] = dbname
    allowed = {"sslmode", "connect_timeout", "application_name", "host", "port"}
    for key, value in urllib.parse.parse_qsl(parts.query):
        if key in allowed:
            params[key] = value
    return params


class MigrationFailed(Exception):
    pass


def _redact(text: str, secret: str | None) -> str:
    if secret:
        for variant in {secret, urllib.parse.quote(secret, safe="")}:
            text = text.replace(variant, "***")
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def connect_database(command: str, service: str) -> tuple[Any, str | None]:
    """psycopg2 connection to DATABASE_URL and its password (for redaction); dies with
    EXIT_CONFIG naming the server when it cannot."""
    url = env_str("DATABASE_URL").strip()
    if not url:
        die(f"{command}: {service} DATABASE_URL is not set", EXIT_CONFIG)
    try:
        params = parse_database_url(url)
    except ValueError as exc:
        die(f"{command}: {service} bad DATABASE_URL: {exc}", EXIT_CONFIG)
    password = params.get("password")
    host, port = params.get("host", "localhost"), params.get("port", 5432)
    where = f"{host}:{port}/{params.get('dbname', '')}"
    if psycopg2 is None:
        die(f"{command}: psycopg2 is not installed (python3-psycopg2)", EXIT_CONFIG)
    try:
        return psycopg2.connect(**params), password
    except psycopg2.Error as exc:
        die(
            f"{command}: {service} cannot connect to {where}: {_redact(str(exc), password)}",
            EXIT_CONFIG,
        )


def user_tables(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        return int(cur.fetchone()[0])


def cmd_create_schema(_args: argparse.Namespace) -> int:
    """What a FastAPI service's create_all does at start with AUTO_CREATE_SCHEMA=true, once
    and then exit: the schema of this image, created in an EMPTY database (refused when it
    has any table). Run by the deploy's tasks/bootstrap_schema.py."""
    service = require_service_name()
    if env_str("AUTO_CREATE_SCHEMA").strip().lower() != "true":
        die(f"create-schema: {service} runs only with AUTO_CREATE_SCHEMA=true", EXIT_CONFIG)
    conn, password = connect_database("create-schema", service)
    conn.autocommit = True  # run_migrations manages its own transactions
    try:
        existing = user_tables(conn)
        if existing:
            log(f"create-schema: {service} refused: the database already has {existing} "
                "table(s); nothing was changed")
            return EXIT_FAILURE
        _applied, version = run_migrations(conn, service, schema_version_cap())
        conn.autocommit = True
        tables = user_tables(conn)
    except (MigrationFailed, psycopg2.Error) as exc:
        log(f"create-schema: {service} FAILED: {_redact(str(exc), password)}")
        return EXIT_FAILURE
    finally:
        conn.close()
    emit(f"create-schema: {service} created {tables} table(s), now at version {version}")
    return EXIT_OK


def cmd_migrate(_args: argparse.Namespace) -> int:
    service = require_service_name()
    cap = schema_version_cap()
    conn, password = connect_database("migrate", service)
    try:
        applied, version = run_migrations(conn, service, cap)
    except MigrationFailed as exc:
        log(f"migrate: {service} FAILED: {_redact(str(exc), password)}")
        return EXIT_FAILURE
    except psycopg2.Error as exc:
        log(f"migrate: {service} FAILED: {_redact(str(exc), password)}")
        return EXIT_FAILURE
    finally:
        conn.close()
    emit(f"migrate: {service} applied {applied} migration(s), now at version {version}")
    return EXIT_OK


def run_migrations(conn: Any, service: str, cap: int) -> tuple[int, int]:
    lock_timeout = int(env_float("MIGRATE_LOCK_TIMEOUT", 300.0) * 1000)
    simulate_failure = env_str("STANDIN_MIGRATIONS_FAIL").strip() == "1"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_timeout}ms",))
        cur.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
        if not cur.fetchone()[0]:
            log(f"migrate: {service} waiting for the migration lock (another migrate is running)")
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
    log(f"migrate: {service} holds the migration lock")
    conn.autocommit = False
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
        applied = 0
        for version, description, sql in MIGRATIONS:
            if version > cap or version in done:
                continue
            log(f"migrate: {service} applying version {version} ({description})")
            with conn, conn.cursor() as cur:  # one transaction per migration
                cur.execute(sql)
                cur.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, now())",
                    (version,),
                )
                if simulate_failure:
                    raise MigrationFailed(
                        f"migration {version} ({description}) failed: simulated failure "
                        "(STANDIN_MIGRATIONS_FAIL=1), rolled back"
                    )
            done.add(version)
            applied += 1
        if simulate_failure:
            raise MigrationFailed("simulated failure (STANDIN_MIGRATIONS_FAIL=1), nothing to apply")
        current = max(done, default=0)
        if current > cap:
            log(
                f"migrate: {service} database is at version {current}, ahead of this "
                f"image's schema version {cap}; leaving it as it is"
            )
        return applied, current
    finally:
        try:
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK_KEY,))
        except psycopg2.Error:
            log(f"migrate: {service} could not release the lock cleanly; closing releases it")


# --------------------------------------------------------------------------- worker / beat / reaper


def heartbeat_path(mode: str) -> str:
    """The sidecar's heartbeat file, in the container's private /tmp (HEARTBEAT_DIR: tests)."""
    return os.path.join(env_str("HEARTBEAT_DIR").strip() or "/tmp", f"standin-{mode}.alive")  # noqa: S108


def heartbeat(mode: str) -> None:
    """Touch the sidecar's heartbeat file: `standin.py health <mode>` reads its age."""
    path = heartbeat_path(mode)
    with open(path, "a"):
        pass
    os.utime(path)


def heartbeat_limit(mode: str) -> float:
    """Seconds without a heartbeat after which a sidecar is unhealthy: three of its loops."""
    loop = {"worker": 2.0, "beat": env_float("BEAT_INTERVAL", 10.0),
            "reaper": env_float("REAPER_INTERVAL", 30.0)}[mode]
    return 3 * loop + 5


def cmd_health(args: argparse.Namespace) -> int:
    """A sidecar's health check (the catalog's health_command on the testbed): its loop
    touched the heartbeat recently. A hung or stopped loop fails it."""
    path = heartbeat_path(args.mode)
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        log(f"health: {args.mode}: no heartbeat yet ({path})")
        return EXIT_FAILURE
    if age > heartbeat_limit(args.mode):
        log(f"health: {args.mode}: last heartbeat {age:.0f}s ago")
        return EXIT_FAILURE
    return EXIT_OK


def cmd_worker(_args: argparse.Namespace) -> int:
    service = require_service_name()
    stop = StopSignal().install()
    log(f"worker: {service} started")
    task = 0
    while True:
        heartbeat("worker")
        task += 1
        duration = 0.5 + secrets.randbelow(1501) / 1000.0  # 0.5-2.0 s
        log(f"worker: starting task {task} ({duration:.2f}s)")
        time.sleep(duration)  # PEP 475: a signal does not cut the sleep short
        if stop.requested:
            log(f"worker: finished task {task}, exiting")
            return EXIT_OK
        log(f"worker: finished task {task}")


def cmd_beat(_args: argparse.Namespace) -> int:
    service = require_service_name()
    stop = StopSignal().install()
    lock_fd: int | None = None
    lock_dir = env_str("BEAT_LOCK_DIR").strip()
    if lock_dir:
        path = os.path.join(lock_dir, "beat.lock")
        try:
            lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log(f"beat: cannot open lock file {path}: {exc.strerror}")
            return EXIT_FAILURE
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(lock_fd, 200, 0).decode("utf-8", "replace").strip()
            log(f"beat: another beat holds {path} ({holder or 'unknown holder'}), exiting")
            return EXIT_LOCKED
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode(), 0)
        log(f"beat: {service} holds lock {path}")
    interval = env_float("BEAT_INTERVAL", 10.0)
    tick = 0
    while not stop.requested:
        heartbeat("beat")
        tick += 1
        emit(f"beat: {service} tick {tick}")
        stop.sleep(interval)
    log(f"beat: {stop.name} received, exiting")
    if lock_fd is not None:
        os.close(lock_fd)
    return EXIT_OK


def cmd_reaper(_args: argparse.Namespace) -> int:
    service = require_service_name()
    base = env_str("TAXI_URL").strip().rstrip("/")
    token = env_str("TAXI_ADMIN_TOKEN")
    if not base or not token:
        die("reaper: TAXI_URL and TAXI_ADMIN_TOKEN are required", EXIT_CONFIG)
    interval = env_float("REAPER_INTERVAL", 30.0)
    stop = StopSignal().install()
    url = f"{base}/admin/ping"
    log(f"reaper: {service} pinging {safe_url(url)} every {interval:g}s")
    while not stop.requested:
        heartbeat("reaper")
        result = http_call(url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        if result.error:
            log(f"reaper: GET /admin/ping failed: {result.error}")
        else:
            log(f"reaper: GET /admin/ping status={result.status}")
        stop.sleep(interval)
    log(f"reaper: {stop.name} received, exiting")
    return EXIT_OK


# --------------------------------------------------------------------------- signed-call


def cmd_signed_call(args: argparse.Namespace) -> int:
    secret = env_str("INTERNAL_HMAC_SECRET")
    if not secret:
        die("signed-call: INTERNAL_HMAC_SECRET is not set", EXIT_CONFIG)
    try:
        json.loads(args.body)
    except ValueError:
        die("signed-call: --body must be valid JSON", EXIT_CONFIG)
    body = args.body.encode()
    failures = 0
    for i in range(args.count):
        if i:
            time.sleep(args.interval)
        result = signed_call(
            args.url,
            secret,
            body,
            method=args.method.upper(),
            idempotency_key=args.idempotency_key,
            timestamp_skew=args.timestamp_skew,
            timeout=args.timeout,
        )
        line: dict[str, Any] = {"status": result.status, "ok": result.ok, "call": i + 1}
        if result.error:
            line["error"] = result.error
        if not result.ok:
            failures += 1
        emit(json.dumps(line, separators=(",", ":")))
    return EXIT_FAILURE if failures else EXIT_OK


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="standin.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": cmd_serve,
        "migrate": cmd_migrate,
        "create-schema": cmd_create_schema,
        "worker": cmd_worker,
        "beat": cmd_beat,
        "reaper": cmd_reaper,
    }
    for name, func in commands.items():
        sub.add_parser(name).set_defaults(func=func)
    health = sub.add_parser("health", help="a sidecar's health check (its heartbeat's age)")
    health.add_argument("mode", choices=("worker", "beat", "reaper"))
    health.set_defaults(func=cmd_health)
    call = sub.add_parser("signed-call", help="make HMAC-signed call(s) to another service")
    call.add_argument("url")
    call.add_argument("--body", default="{}", help="JSON request body (default {})")
    call.add_argument("--count", type=int, default=1)
    call.add_argument("--interval", type=float, default=1.0, help="seconds between calls")
    call.add_argument("--method", default="POST")
    call.add_argument("--idempotency-key", default=None)
    call.add_argument(
        "--timestamp-skew",
        type=float,
        default=0.0,
        help="sign with a timestamp this many seconds in the past",
    )
    call.add_argument("--timeout", type=float, default=10.0)
    call.set_defaults(func=cmd_signed_call)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
