"""Tests for the testbed stand-in service (testbed/standin/standin.py).

Every behaviour is checked against the real program started as a subprocess with the
system interpreter (/usr/bin/python3, as in the image), listening on 127.0.0.1 only.
The migrate tests run a throwaway PostgreSQL cluster in a temporary directory.
Secrets are canary values that must never show up in any captured output.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STANDIN = Path(__file__).resolve().parents[3] / "testbed" / "standin" / "standin.py"
PYTHON = "/usr/bin/python3"

HMAC_SECRET = "CANARY-hmac-5f1e"
HMAC_PREVIOUS = "CANARY-hmacprev-9a3b"
JWT_SECRET = "CANARY-jwt-" + "k" * 30
REDIS_URL = "redis://:CANARY-redis-71c2@redis:6379/0"
TOMTOM_KEY = "CANARY-tomtom-0c4d"
ADMIN_TOKEN = "CANARY-admin-e8f7"
PG_PASSWORD = "CANARY-pg-3d9c:@/%?#&x"
WRONG_PG_PASSWORD = "CANARY-pgwrong-44aa"
SPECIAL_SECRET = "CANARY-spécial $'\"`\\ ;&|<>{}%!*~\ttab\nline2"
CANARIES = (
    HMAC_SECRET,
    HMAC_PREVIOUS,
    JWT_SECRET,
    "CANARY-redis-71c2",
    TOMTOM_KEY,
    ADMIN_TOKEN,
    "CANARY-pg-3d9c",
    WRONG_PG_PASSWORD,
    "CANARY-spécial",
    "CANARY-body-77",
    "CANARY-query-12",
    "CANARY-header-90",
)

PROD_ENV = {
    "APP_ENV": "prod",
    "ALLOWED_ORIGINS": "https://app.example.com,https://admin.example.com",
    "RATE_LIMIT_BACKEND": "redis",
    "REDIS_URL": REDIS_URL,
    "JWT_SECRET": JWT_SECRET,
    "UVICORN_EXTRA_ARGS": "--proxy-headers --forwarded-allow-ips=10.0.0.2,10.0.0.3",
}
PAYMENTS_ENV = {
    **PROD_ENV,
    "SERVICE_NAME": "payments",
    "INTERNAL_REQUIRE_HMAC": "true",
    "INTERNAL_HMAC_SECRET": HMAC_SECRET,
}
TAXI_ENV = {
    **PROD_ENV,
    "SERVICE_NAME": "taxi",
    "TOMTOM_API_KEY": TOMTOM_KEY,
    "ADMIN_TOKEN_SHA256": hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(),
}


def load_module() -> Any:
    spec = importlib.util.spec_from_file_location("standin_under_test", STANDIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing inherited but PATH (no proxies, no stray config)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def assert_no_canary(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"secret canary {canary[:14]}... leaked into output"


# --------------------------------------------------------------------------- process helpers


class Proc:
    """A running stand-in command with its stdout/stderr collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [PYTHON, str(STANDIN), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.popen.stdout), ("stderr", self.popen.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines[name].append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, stream: str = "stderr", timeout: float = 5.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[stream]:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._alive_readers()):
                    raise AssertionError(
                        f"no {stream} line matching {pattern!r}; got:\n{self.output()}"
                    )
                self._cond.wait(min(left, 0.05))

    def _alive_readers(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def finish(self, timeout: float = 10.0) -> int:
        rc = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=2)
        return rc

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        for reader in self._readers:
            reader.join(timeout=2)
        return self.popen.returncode

    def text(self, stream: str) -> str:
        with self._cond:
            return "\n".join(self.lines[stream])

    def output(self) -> str:
        return self.text("stdout") + "\n" + self.text("stderr")


@dataclass
class Service:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_value(text: str, name: str, labels: dict[str, str]) -> float:
    """Value of the sample `name` whose labels include `labels` (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        label_part, value = line[len(name) :].rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_part))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def sign(secret: str, method: str, path: str, timestamp: int | str, body: bytes) -> str:
    """Reference signer written from the spec, independent of the program."""
    message = f"{method}\n{path}\n{timestamp}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, method: str, path: str, body: bytes, age: float = 0.0, **extra: str
) -> dict[str, str]:
    ts = int(time.time() - age)
    return {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": str(ts),
        "X-Signature": sign(secret, method, path, ts, body),
        **extra,
    }


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process started by a test: stopped afterwards, output checked for canaries."""
    started: list[Proc] = []
    yield started
    for proc in started:  # signal all first, so they shut down in parallel
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    for proc in started:
        proc.stop()
    for proc in started:
        assert_no_canary(proc.output())


@pytest.fixture
def run(procs: list[Proc]) -> Callable[..., Proc]:
    def _run(args: list[str], **env: str) -> Proc:
        proc = Proc(args, base_env(**env))
        procs.append(proc)
        return proc

    return _run


@pytest.fixture
def serve(run: Callable[..., Proc]) -> Callable[..., Service]:
    def _serve(**env: str) -> Service:
        env.setdefault("SERVICE_NAME", "billing")
        env.setdefault("APP_ENV", "local")
        env.setdefault("STANDIN_VERSION", "1.4.2")
        proc = run(["serve"], BIND="127.0.0.1", PORT="0", **env)
        match = proc.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
        return Service(proc, int(match.group(1)))

    return _serve


def run_once(args: list[str], timeout: float = 20.0, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [PYTHON, str(STANDIN), *args],
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert_no_canary(result.stdout + result.stderr)
    return result


# --------------------------------------------------------------------------- environment


def test_system_python_has_psycopg2() -> None:
    result = subprocess.run(
        [PYTHON, "-c", "import psycopg2"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, "python3-psycopg2 missing for /usr/bin/python3"


def test_defaults_bind_all_interfaces_on_port_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_module()
    for name in ("BIND", "PORT", "APP_ENV", "STANDIN_VERSION"):
        monkeypatch.delenv(name, raising=False)
    cfg = module.Config.from_env("billing")
    assert (cfg.bind, cfg.port, cfg.app_env) == ("0.0.0.0", 8000, "prod")


def test_missing_service_name_is_a_config_error() -> None:
    result = run_once(["serve"], timeout=5, APP_ENV="local", BIND="127.0.0.1", PORT="0")
    assert result.returncode == 2
    assert "SERVICE_NAME is required" in result.stderr


# --------------------------------------------------------------------------- HTTP basics


def test_health_reports_service_version_and_backend(serve: Callable[..., Service]) -> None:
    svc = serve(SERVICE_NAME="orders", RATE_LIMIT_BACKEND="redis")
    reply = request(svc.port, "GET", "/health")
    assert reply.status == 200
    data = reply.json()
    assert data["status"] == "ok"
    assert data["service"] == "orders"
    assert data["version"] == "1.4.2"
    assert data["rate_limit_backend"] == "redis"


def test_root_and_api_report_client_ip(serve: Callable[..., Service]) -> None:
    svc = serve()
    for path in ("/", "/api/orders/42"):
        reply = request(svc.port, "GET", path)
        assert reply.status == 200
        data = reply.json()
        assert data["service"] == "billing"
        assert data["version"] == "1.4.2"
        assert data["client_ip"] == "127.0.0.1"
    assert request(svc.port, "GET", "/nope").status == 404


def test_slow_endpoint_sleeps_requested_time(serve: Callable[..., Service]) -> None:
    svc = serve()
    start = time.monotonic()
    reply = request(svc.port, "GET", "/api/slow?ms=300")
    elapsed = time.monotonic() - start
    assert reply.status == 200
    assert reply.json()["slept_ms"] == 300
    assert 0.3 <= elapsed < 2.0
    assert request(svc.port, "GET", "/api/slow?ms=abc").status == 400


def test_broken_release_listens_but_never_healthy(serve: Callable[..., Service]) -> None:
    svc = serve(STANDIN_BROKEN="1")
    for _ in range(3):
        reply = request(svc.port, "GET", "/health")
        assert reply.status == 503
        assert reply.json()["status"] == "broken"
    assert request(svc.port, "GET", "/").status == 200


def test_metrics_counter_histogram_build_info(serve: Callable[..., Service]) -> None:
    svc = serve(SERVICE_NAME="orders")
    request(svc.port, "GET", "/api/orders/1")
    request(svc.port, "GET", "/api/orders/2")
    request(svc.port, "GET", "/api/customers/3")
    request(svc.port, "GET", "/no/such/path")
    request(svc.port, "GET", "/api/slow?ms=300")
    reply = request(svc.port, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()

    assert 'standin_build_info{version="1.4.2",service="orders"} 1' in text
    api = {"service": "orders", "method": "GET", "path": "/api/{path}"}
    assert metric_value(text, "http_requests_total", {**api, "status": "200"}) == 3
    unmatched = {"service": "orders", "path": "{unmatched}", "status": "404"}
    assert metric_value(text, "http_requests_total", unmatched) == 1
    # Route templates only: raw paths never become label values.
    assert "/api/orders/1" not in text
    assert "/no/such/path" not in text

    assert "# TYPE http_request_duration_seconds histogram" in text
    assert metric_value(text, "http_request_duration_seconds_count", api) == 3
    for le in ("0.005", "0.01", "0.1", "1.0", "10.0", "+Inf"):
        assert metric_value(text, "http_request_duration_seconds_bucket", {**api, "le": le}) == 3
    slow = {"service": "orders", "method": "GET", "path": "/api/slow"}
    assert metric_value(text, "http_request_duration_seconds_bucket", {**slow, "le": "0.25"}) == 0
    assert metric_value(text, "http_request_duration_seconds_bucket", {**slow, "le": "0.5"}) == 1
    assert metric_value(text, "http_request_duration_seconds_sum", slow) >= 0.3


def test_access_log_is_json_without_headers_bodies_or_query(
    serve: Callable[..., Service],
) -> None:
    svc = serve()
    reply = request(
        svc.port,
        "POST",
        "/api/things?token=CANARY-query-12",
        headers={"Authorization": "Bearer CANARY-header-90", "X-Custom": "CANARY-header-90"},
        body=b'{"secret": "CANARY-body-77"}',
    )
    assert reply.status == 200
    assert reply.json()["received_bytes"] == len(b'{"secret": "CANARY-body-77"}')
    request(svc.port, "GET", "/health")
    svc.proc.wait_for(r'"path":"/health"', stream="stdout")
    entries = [json.loads(line) for line in svc.proc.lines["stdout"]]
    assert len(entries) == 2
    first = entries[0]
    assert {"method", "path", "status", "duration_ms", "client_ip"} <= set(first)
    assert (first["method"], first["path"], first["status"]) == ("POST", "/api/things", 200)
    assert first["client_ip"] == "127.0.0.1"
    assert isinstance(first["duration_ms"], float | int)
    # The `procs` fixture asserts that no canary (header, body, query) was logged.


# --------------------------------------------------------------------------- proxy headers, CORS


@pytest.mark.parametrize(
    ("extra_args", "expected"),
    [
        ("--proxy-headers --forwarded-allow-ips=127.0.0.1", "203.0.113.9"),
        ("--proxy-headers --forwarded-allow-ips=10.0.0.0/8,127.0.0.0/8", "203.0.113.9"),
        ("--proxy-headers --forwarded-allow-ips 10.1.2.3,127.0.0.1", "203.0.113.9"),
        ("--proxy-headers --forwarded-allow-ips=10.0.0.0/8,192.168.1.1", "127.0.0.1"),
        # a load balancer (203.0.113.9) in front of the trusted proxy: one hop further left
        ("--proxy-headers --forwarded-allow-ips=127.0.0.1,203.0.113.9", "198.51.100.7"),
        ("--proxy-headers --forwarded-allow-ips=127.0.0.1,203.0.113.9,198.51.100.7",
         "198.51.100.7"),
        ("--forwarded-allow-ips=127.0.0.1", "127.0.0.1"),
        ("", "127.0.0.1"),
    ],
)
def test_client_ip_from_forwarded_for_only_via_trusted_proxy(
    serve: Callable[..., Service], extra_args: str, expected: str
) -> None:
    svc = serve(UVICORN_EXTRA_ARGS=extra_args)
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    assert request(svc.port, "GET", "/api/whoami", headers=headers).json()["client_ip"] == expected
    svc.proc.wait_for(rf'"client_ip":"{re.escape(expected)}"', stream="stdout")


def test_cors_allows_only_listed_origins(serve: Callable[..., Service]) -> None:
    svc = serve(ALLOWED_ORIGINS="https://app.example.com, https://admin.example.com")
    ok = request(svc.port, "GET", "/api/x", headers={"Origin": "https://admin.example.com"})
    assert ok.headers.get("access-control-allow-origin") == "https://admin.example.com"
    evil = request(svc.port, "GET", "/api/x", headers={"Origin": "https://evil.example.net"})
    assert evil.status == 200
    assert "access-control-allow-origin" not in evil.headers
    plain = request(svc.port, "GET", "/api/x")
    assert "access-control-allow-origin" not in plain.headers

    preflight_headers = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    pre = request(svc.port, "OPTIONS", "/api/x", headers=preflight_headers)
    assert pre.status == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in pre.headers["access-control-allow-methods"]
    bad = {**preflight_headers, "Origin": "https://evil.example.net"}
    rejected = request(svc.port, "OPTIONS", "/api/x", headers=bad)
    assert rejected.status == 400
    assert "access-control-allow-origin" not in rejected.headers


# --------------------------------------------------------------------------- prod guards


def test_valid_prod_config_starts(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV)
    assert request(svc.port, "GET", "/health").json()["app_env"] == "prod"
    taxi = serve(**TAXI_ENV)
    assert request(taxi.port, "GET", "/health").status == 200


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS must be explicit, got '*'"),
        ({"ALLOWED_ORIGINS": "https://a.example.com,*"}, "ALLOWED_ORIGINS must be explicit"),
        ({"ALLOWED_ORIGINS": ""}, "ALLOWED_ORIGINS must be explicit, got ''"),
        ({"RATE_LIMIT_BACKEND": "memory"}, "RATE_LIMIT_BACKEND must be 'redis'"),
        ({"REDIS_URL": ""}, "REDIS_URL must be set"),
        ({"INTERNAL_REQUIRE_HMAC": "false"}, "INTERNAL_REQUIRE_HMAC must be 'true' for payments"),
        ({"INTERNAL_HMAC_SECRET": ""}, "INTERNAL_HMAC_SECRET must be set"),
        ({"AUTO_CREATE_SCHEMA": "true"}, "AUTO_CREATE_SCHEMA"),
        ({"UVICORN_EXTRA_ARGS": "--proxy-headers --forwarded-allow-ips=*"}, "UVICORN_EXTRA_ARGS"),
        ({"UVICORN_EXTRA_ARGS": "--proxy-headers --forwarded-allow-ips '*'"}, "UVICORN_EXTRA_ARGS"),
        ({"JWT_SECRET": "CANARY-jwt-short"}, "JWT_JWKS_URL or JWT_SECRET"),
        ({"APP_ENV": "staging", "AUTO_CREATE_SCHEMA": "true"}, "AUTO_CREATE_SCHEMA"),
        ({"APP_ENV": "production"}, "APP_ENV must be one of"),
    ],
)
def test_each_prod_guard_refuses_start(change: dict[str, str], needle: str) -> None:
    env = {**PAYMENTS_ENV, **change, "BIND": "127.0.0.1", "PORT": "0"}
    result = run_once(["serve"], timeout=5, **env)
    assert result.returncode == 3, result.stderr
    guard_lines = [line for line in result.stderr.splitlines() if line.startswith("guard failed:")]
    assert len(guard_lines) == 1, result.stderr
    assert needle in guard_lines[0]
    assert "listening" not in result.stderr


def test_jwks_url_satisfies_jwt_guard(serve: Callable[..., Service]) -> None:
    env = {**PAYMENTS_ENV, "JWT_SECRET": "", "JWT_JWKS_URL": "https://auth.example.com/jwks"}
    svc = serve(**env)
    assert request(svc.port, "GET", "/health").status == 200


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"TOMTOM_API_KEY": ""}, "TOMTOM_API_KEY must be set for taxi"),
        ({"ADMIN_TOKEN_SHA256": "abc123"}, "ADMIN_TOKEN_SHA256 must be 64 hex chars"),
        ({"ADMIN_TOKEN_SHA256": "z" * 64}, "ADMIN_TOKEN_SHA256 must be 64 hex chars"),
    ],
)
def test_taxi_guards(change: dict[str, str], needle: str) -> None:
    result = run_once(
        ["serve"], timeout=5, **{**TAXI_ENV, **change, "BIND": "127.0.0.1", "PORT": "0"}
    )
    assert result.returncode == 3
    assert needle in result.stderr


def test_all_failing_guards_are_reported_one_line_each() -> None:
    env = {
        "SERVICE_NAME": "payments",
        "APP_ENV": "prod",
        "ALLOWED_ORIGINS": "*",
        "RATE_LIMIT_BACKEND": "memory",
        "INTERNAL_REQUIRE_HMAC": "false",
        "AUTO_CREATE_SCHEMA": "true",
        "UVICORN_EXTRA_ARGS": "--proxy-headers --forwarded-allow-ips=*",
        "JWT_SECRET": "CANARY-jwt-short",
    }
    result = run_once(["serve"], timeout=5, **env, BIND="127.0.0.1", PORT="0")
    assert result.returncode == 3
    guard_lines = [line for line in result.stderr.splitlines() if line.startswith("guard failed:")]
    joined = "\n".join(guard_lines)
    for needle in (
        "ALLOWED_ORIGINS",
        "RATE_LIMIT_BACKEND",
        "INTERNAL_REQUIRE_HMAC",
        "AUTO_CREATE_SCHEMA",
        "UVICORN_EXTRA_ARGS",
        "JWT_JWKS_URL",
    ):
        assert sum(needle in line for line in guard_lines) == 1, joined
    assert len(guard_lines) == 6


def test_unset_app_env_is_guarded_like_prod() -> None:
    result = run_once(["serve"], timeout=5, SERVICE_NAME="billing", BIND="127.0.0.1", PORT="0")
    assert result.returncode == 3
    assert "guard failed: ALLOWED_ORIGINS" in result.stderr


def test_local_env_skips_guards(serve: Callable[..., Service]) -> None:
    svc = serve(
        SERVICE_NAME="payments",
        ALLOWED_ORIGINS="*",
        RATE_LIMIT_BACKEND="memory",
        AUTO_CREATE_SCHEMA="true",
    )
    assert request(svc.port, "GET", "/health").status == 200
    reply = request(svc.port, "GET", "/", headers={"Origin": "http://localhost:3000"})
    assert reply.headers.get("access-control-allow-origin") == "*"


# --------------------------------------------------------------------------- internal HMAC


def charge(
    port: int, headers: dict[str, str], body: bytes, path: str = "/internal/charge"
) -> Reply:
    return request(port, "POST", path, headers=headers, body=body)


def metrics_text(port: int) -> str:
    return request(port, "GET", "/metrics").body.decode()


def test_hmac_current_and_previous_keys(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV, INTERNAL_HMAC_SECRET_PREVIOUS=HMAC_PREVIOUS)
    body = b'{"amount": 1250, "currency": "EUR"}'
    reply = charge(svc.port, signed_headers(HMAC_SECRET, "POST", "/internal/charge", body), body)
    assert reply.status == 200, reply.body
    data = reply.json()
    assert (data["status"], data["verified_with"]) == ("charged", "current")
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()

    reply = charge(svc.port, signed_headers(HMAC_PREVIOUS, "POST", "/internal/charge", body), body)
    assert reply.status == 200
    assert reply.json()["verified_with"] == "previous"

    other = request(
        svc.port,
        "GET",
        "/internal/status?x=1",
        headers=signed_headers(HMAC_SECRET, "GET", "/internal/status?x=1", b""),
    )
    assert other.status == 200

    text = metrics_text(svc.port)
    ok_current = {"result": "ok", "key": "current"}
    ok_previous = {"result": "ok", "key": "previous"}
    assert metric_value(text, "internal_hmac_verifications_total", ok_current) == 2
    assert metric_value(text, "internal_hmac_verifications_total", ok_previous) == 1


def test_hmac_previous_key_rejected_once_rotation_is_over(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV, INTERNAL_HMAC_SECRET_PREVIOUS="")
    body = b"{}"
    reply = charge(svc.port, signed_headers(HMAC_PREVIOUS, "POST", "/internal/charge", body), body)
    assert reply.status == 401
    assert reply.json()["result"] == "bad_signature"


def test_hmac_rejections_name_the_reason(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV)
    body = b'{"amount": 5}'
    path = "/internal/charge"

    missing = charge(svc.port, {"Content-Type": "application/json"}, body)
    assert missing.status == 401
    assert missing.json()["result"] == "missing"
    assert "X-Signature" in missing.json()["reason"]

    only_sig = {"X-Signature": sign(HMAC_SECRET, "POST", path, 1, body)}
    assert charge(svc.port, only_sig, body).json()["result"] == "missing"

    tampered = charge(svc.port, signed_headers(HMAC_SECRET, "POST", path, body), b'{"amount": 9}')
    assert tampered.status == 401
    assert tampered.json()["result"] == "bad_signature"

    wrong_path = charge(
        svc.port, signed_headers(HMAC_SECRET, "POST", "/internal/refund", body), body
    )
    assert wrong_path.json()["result"] == "bad_signature"

    wrong_method = charge(svc.port, signed_headers(HMAC_SECRET, "PUT", path, body), body)
    assert wrong_method.json()["result"] == "bad_signature"

    wrong_key = charge(svc.port, signed_headers("not-the-key", "POST", path, body), body)
    assert wrong_key.json()["result"] == "bad_signature"

    old = charge(svc.port, signed_headers(HMAC_SECRET, "POST", path, body, age=400), body)
    assert old.status == 401
    assert old.json()["result"] == "expired"
    future = charge(svc.port, signed_headers(HMAC_SECRET, "POST", path, body, age=-400), body)
    assert future.json()["result"] == "expired"

    for reply in (missing, tampered, wrong_path, old):
        assert HMAC_SECRET.encode() not in reply.body

    text = metrics_text(svc.port)
    assert metric_value(text, "internal_hmac_verifications_total", {"result": "missing"}) == 2
    assert metric_value(text, "internal_hmac_verifications_total", {"result": "bad_signature"}) == 4
    expired = {"result": "expired", "key": "current"}
    assert metric_value(text, "internal_hmac_verifications_total", expired) == 2
    assert metric_value(text, "standin_charges_total", {"service": "payments"}) == 0


def test_hmac_replay_window_is_configurable(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV, INTERNAL_HMAC_REPLAY_WINDOW="60")
    body = b"{}"
    path = "/internal/charge"
    assert (
        charge(svc.port, signed_headers(HMAC_SECRET, "POST", path, body, age=30), body).status
        == 200
    )
    stale = charge(svc.port, signed_headers(HMAC_SECRET, "POST", path, body, age=120), body)
    assert stale.status == 401
    assert stale.json()["result"] == "expired"


def test_idempotency_key_allows_retry_and_executes_once(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV)
    body = b'{"amount": 700}'
    path = "/internal/charge"
    headers = signed_headers(
        HMAC_SECRET, "POST", path, body, age=1000, **{"X-Idempotency-Key": "ord-1"}
    )
    first = charge(svc.port, headers, body)
    assert first.status == 200, first.body
    again = charge(svc.port, headers, body)
    assert again.status == 200
    assert again.json()["charge_id"] == first.json()["charge_id"]
    assert again.headers.get("idempotent-replayed") == "true"

    fresh = {**signed_headers(HMAC_SECRET, "POST", path, body), "X-Idempotency-Key": "ord-1"}
    assert charge(svc.port, fresh, body).json()["charge_id"] == first.json()["charge_id"]
    other = {**signed_headers(HMAC_SECRET, "POST", path, body), "X-Idempotency-Key": "ord-2"}
    assert charge(svc.port, other, body).json()["charge_id"] != first.json()["charge_id"]

    # An idempotency key never rescues a bad signature.
    forged = {**headers, "X-Signature": "0" * 64}
    assert charge(svc.port, forged, body).status == 401
    text = metrics_text(svc.port)
    assert metric_value(text, "standin_charges_total", {"service": "payments"}) == 2


def test_hmac_not_required_accepts_unsigned(serve: Callable[..., Service]) -> None:
    svc = serve(SERVICE_NAME="orders")
    reply = charge(svc.port, {}, b"{}")
    assert reply.status == 200
    assert reply.json()["verified_with"] is None


def test_empty_secret_never_verifies(serve: Callable[..., Service]) -> None:
    svc = serve(SERVICE_NAME="orders", INTERNAL_REQUIRE_HMAC="true", INTERNAL_HMAC_SECRET="")
    body = b"{}"
    reply = charge(svc.port, signed_headers("", "POST", "/internal/charge", body), body)
    assert reply.status == 401


# --------------------------------------------------------------------------- signed calls


def test_signed_call_cli(serve: Callable[..., Service]) -> None:
    svc = serve(**PAYMENTS_ENV)
    url = f"{svc.url}/internal/charge"
    result = run_once(
        ["signed-call", url, "--body", '{"amount": 3}', "--count", "3", "--interval", "0.05"],
        INTERNAL_HMAC_SECRET=HMAC_SECRET,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["status"], line["ok"]) for line in lines] == [(200, True)] * 3

    wrong = run_once(["signed-call", url], INTERNAL_HMAC_SECRET="CANARY-pgwrong-44aa")
    assert wrong.returncode != 0
    assert json.loads(wrong.stdout) == {"status": 401, "ok": False, "call": 1}

    stale = run_once(
        ["signed-call", url, "--timestamp-skew", "1000"], INTERNAL_HMAC_SECRET=HMAC_SECRET
    )
    assert stale.returncode != 0
    retried = run_once(
        ["signed-call", url, "--timestamp-skew", "1000", "--idempotency-key", "k-1"],
        INTERNAL_HMAC_SECRET=HMAC_SECRET,
    )
    assert retried.returncode == 0

    down = run_once(
        ["signed-call", f"http://127.0.0.1:{free_port()}/internal/charge", "--timeout", "2"],
        INTERNAL_HMAC_SECRET=HMAC_SECRET,
    )
    assert down.returncode != 0
    line = json.loads(down.stdout)
    assert line["status"] is None
    assert line["ok"] is False

    unset = run_once(["signed-call", url])
    assert unset.returncode == 2
    assert "INTERNAL_HMAC_SECRET is not set" in unset.stderr


def test_call_internal_endpoint_signs_from_inside_the_service(
    serve: Callable[..., Service],
) -> None:
    payments = serve(**PAYMENTS_ENV)
    caller = serve(SERVICE_NAME="orders", INTERNAL_HMAC_SECRET=HMAC_SECRET)
    payload = json.dumps({"url": f"{payments.url}/internal/charge", "body": {"amount": 9}})
    reply = request(caller.port, "POST", "/api/call-internal", body=payload.encode())
    assert reply.status == 200
    data = reply.json()
    assert (data["upstream_status"], data["ok"]) == (200, True)
    assert data["upstream"]["status"] == "charged"

    stranger = serve(SERVICE_NAME="orders", INTERNAL_HMAC_SECRET="CANARY-pgwrong-44aa")
    reply = request(stranger.port, "POST", "/api/call-internal", body=payload.encode())
    assert (reply.json()["upstream_status"], reply.json()["ok"]) == (401, False)

    bad = request(caller.port, "POST", "/api/call-internal", body=b'{"url": "file:///etc/passwd"}')
    assert bad.status == 400


def test_call_internal_defaults_to_payments_internal_url(serve: Callable[..., Service]) -> None:
    payments = serve(**PAYMENTS_ENV)
    caller = serve(SERVICE_NAME="orders", INTERNAL_HMAC_SECRET=HMAC_SECRET,
                   PAYMENTS_INTERNAL_URL=f"{payments.url}/")
    reply = request(caller.port, "POST", "/api/call-internal", body=b'{"body": {"amount": 3}}')
    assert reply.status == 200
    assert (reply.json()["upstream_status"], reply.json()["upstream"]["status"]) == (
        200, "charged")
    other = request(caller.port, "POST", "/api/call-internal", body=b'{"path": "/nope"}')
    assert other.json()["upstream_status"] == 404  # the path is signed and sent as given
    bad = request(caller.port, "POST", "/api/call-internal", body=b'{"path": "nope"}')
    assert bad.status == 400

    untold = serve(SERVICE_NAME="orders", INTERNAL_HMAC_SECRET=HMAC_SECRET)
    reply = request(untold.port, "POST", "/api/call-internal", body=b"{}")
    assert reply.status == 400 and "PAYMENTS_INTERNAL_URL" in reply.json()["error"]


def test_background_caller_defaults_to_payments_internal_url(
    serve: Callable[..., Service],
) -> None:
    payments = serve(**PAYMENTS_ENV)
    caller = serve(SERVICE_NAME="orders", INTERNAL_HMAC_SECRET=HMAC_SECRET,
                   PAYMENTS_INTERNAL_URL=payments.url, CALL_RATE="20")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ok = metric_value(metrics_text(caller.port), "internal_calls_total", {"result": "ok"})
        if ok >= 3:
            break
        time.sleep(0.1)
    assert ok >= 3


def test_background_caller_counts_results(serve: Callable[..., Service]) -> None:
    payments = serve(**PAYMENTS_ENV)
    target = f"{payments.url}/internal/charge"
    good = serve(
        SERVICE_NAME="orders",
        INTERNAL_HMAC_SECRET=HMAC_SECRET,
        CALL_TARGET_URL=target,
        CALL_RATE="20",
    )
    bad = serve(
        SERVICE_NAME="rides",
        INTERNAL_HMAC_SECRET="CANARY-pgwrong-44aa",
        CALL_TARGET_URL=target,
        CALL_RATE="20",
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        good_text, bad_text = metrics_text(good.port), metrics_text(bad.port)
        good_ok = metric_value(good_text, "internal_calls_total", {"result": "ok"})
        rejected = metric_value(bad_text, "internal_calls_total", {"result": "rejected"})
        if good_ok >= 5 and rejected >= 5:
            break
        time.sleep(0.1)
    assert good_ok >= 5
    assert rejected >= 5
    assert metric_value(good_text, "internal_calls_total", {"result": "rejected"}) == 0
    assert metric_value(bad_text, "internal_calls_total", {"result": "ok"}) == 0
    text = metrics_text(payments.port)
    assert metric_value(text, "internal_hmac_verifications_total", {"result": "ok"}) >= 5


# --------------------------------------------------------------------------- admin, debug


def test_admin_ping_requires_matching_token(serve: Callable[..., Service]) -> None:
    svc = serve(**TAXI_ENV)
    ok = request(svc.port, "GET", "/admin/ping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status == 200
    for headers in (
        {"Authorization": "Bearer CANARY-admin-wrong"},
        {"Authorization": ADMIN_TOKEN},
        {},
    ):
        assert request(svc.port, "GET", "/admin/ping", headers=headers).status == 401


def test_env_digest_matches_special_character_secret(serve: Callable[..., Service]) -> None:
    svc = serve(STANDIN_DEBUG_ENV_DIGEST="1", WEIRD_SECRET=SPECIAL_SECRET)
    reply = request(svc.port, "GET", "/debug/env-digest?key=WEIRD_SECRET")
    assert reply.status == 200
    assert reply.json()["sha256"] == hashlib.sha256(SPECIAL_SECRET.encode()).hexdigest()
    assert b"CANARY" not in reply.body
    assert request(svc.port, "GET", "/debug/env-digest?key=NOT_SET_AT_ALL").status == 404
    assert request(svc.port, "GET", "/debug/env-digest?key=bad-name").status == 400

    off = serve(WEIRD_SECRET=SPECIAL_SECRET)
    assert request(off.port, "GET", "/debug/env-digest?key=WEIRD_SECRET").status == 404


# --------------------------------------------------------------------------- graceful SIGTERM


def test_sigterm_drains_in_flight_requests(serve: Callable[..., Service]) -> None:
    svc = serve(STANDIN_DRAIN_DELAY="0.5", GRACEFUL_TIMEOUT="10")
    results: list[Reply] = []
    slow = threading.Thread(
        target=lambda: results.append(request(svc.port, "GET", "/api/slow?ms=1500"))
    )
    slow.start()
    time.sleep(0.3)
    sent = time.monotonic()
    svc.proc.popen.send_signal(signal.SIGTERM)
    svc.proc.wait_for(r"SIGTERM received, draining")
    assert request(svc.port, "GET", "/health").status == 503

    svc.proc.wait_for(r"listener closed.*for 1 in-flight request", timeout=3)
    with pytest.raises(ConnectionRefusedError):
        request(svc.port, "GET", "/health", timeout=2)
    assert svc.proc.popen.poll() is None  # still finishing the slow request

    slow.join(timeout=5)
    assert results and results[0].status == 200
    assert svc.proc.finish() == 0
    assert time.monotonic() - sent >= 1.0
    svc.proc.wait_for(r"all in-flight requests finished, exiting 0")


def test_sigterm_gives_up_after_graceful_timeout(serve: Callable[..., Service]) -> None:
    svc = serve(GRACEFUL_TIMEOUT="0.5")
    errors: list[BaseException] = []

    def abandoned_request() -> None:
        try:
            request(svc.port, "GET", "/api/slow?ms=8000", timeout=10)
        except (http.client.HTTPException, OSError) as exc:
            errors.append(exc)

    slow = threading.Thread(target=abandoned_request, daemon=True)
    slow.start()
    time.sleep(0.3)
    sent = time.monotonic()
    svc.proc.popen.send_signal(signal.SIGTERM)
    assert svc.proc.finish() == 0
    assert time.monotonic() - sent < 3
    svc.proc.wait_for(r"graceful timeout reached with 1 request")
    slow.join(timeout=5)
    assert len(errors) == 1  # the connection was dropped when the process exited


# --------------------------------------------------------------------------- worker, beat, reaper


def test_worker_finishes_current_task_on_sigterm(run: Callable[..., Proc]) -> None:
    proc = run(["worker"], SERVICE_NAME="payments-worker")
    task = proc.wait_for(r"worker: starting task (\d+) \((\d+\.\d+)s\)").group(1)
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.finish(timeout=5) == 0
    assert time.monotonic() - sent >= 0.3  # the task (>= 0.5 s) was not cut short
    proc.wait_for(rf"worker: finished task {task}, exiting")


def test_sidecar_health_follows_the_heartbeat_of_its_loop(
        run: Callable[..., Proc], tmp_path: Path) -> None:
    """`health worker` (the catalog's health_command on the testbed) fails before the worker
    ran, passes while it runs, and fails again once its heartbeat is older than its limit."""
    env = {"SERVICE_NAME": "payments-worker", "HEARTBEAT_DIR": str(tmp_path)}
    assert run(["health", "worker"], **env).finish() == 1
    worker = run(["worker"], **env)
    worker.wait_for(r"worker: starting task 1")
    assert run(["health", "worker"], **env).finish() == 0
    assert worker.stop() == 0
    stale = time.time() - 12  # three 2 s loops + 5 s
    os.utime(tmp_path / "standin-worker.alive", (stale, stale))
    assert run(["health", "worker"], **env).finish() == 1
    assert run(["health", "beat"], **env).finish() == 1  # its own heartbeat, never written


def test_beat_lock_allows_a_single_live_beat(run: Callable[..., Proc], tmp_path: Path) -> None:
    first = run(["beat"], SERVICE_NAME="payments-beat", BEAT_LOCK_DIR=str(tmp_path))
    first.wait_for(r"beat: payments-beat tick 1", stream="stdout")
    assert (tmp_path / "beat.lock").exists()

    second = run(["beat"], SERVICE_NAME="payments-beat", BEAT_LOCK_DIR=str(tmp_path))
    assert second.finish() == 4
    assert "another beat holds" in second.text("stderr")

    assert first.stop() == 0
    third = run(
        ["beat"], SERVICE_NAME="payments-beat", BEAT_LOCK_DIR=str(tmp_path), BEAT_INTERVAL="0.1"
    )
    third.wait_for(r"tick 3", stream="stdout")
    assert third.stop() == 0


def test_reaper_pings_taxi_admin(serve: Callable[..., Service], run: Callable[..., Proc]) -> None:
    taxi = serve(**TAXI_ENV)
    good = run(
        ["reaper"],
        SERVICE_NAME="taxi-reaper",
        TAXI_URL=taxi.url,
        TAXI_ADMIN_TOKEN=ADMIN_TOKEN,
        REAPER_INTERVAL="0.1",
    )
    good.wait_for(r"reaper: GET /admin/ping status=200")
    good.wait_for(r"status=200", timeout=2)
    assert sum("status=200" in line for line in good.lines["stderr"]) >= 1
    bad = run(
        ["reaper"],
        SERVICE_NAME="taxi-reaper",
        TAXI_URL=taxi.url,
        TAXI_ADMIN_TOKEN="CANARY-admin-wrong",
        REAPER_INTERVAL="0.1",
    )
    bad.wait_for(r"reaper: GET /admin/ping status=401")
    time.sleep(0.3)
    assert good.stop() == 0
    assert sum("status=200" in line for line in good.lines["stderr"]) >= 2
    assert bad.stop() == 0


# --------------------------------------------------------------------------- migrate


@dataclass
class Postgres:
    bindir: Path
    sockdir: str
    port: int

    def psql(self, db: str, sql: str) -> str:
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                self.sockdir,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atqc",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return result.stdout.strip()

    def psql_argv(self, db: str) -> list[str]:
        return [
            str(self.bindir / "psql"),
            "-h",
            self.sockdir,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atq",
        ]

    def url(self, db: str, password: str = PG_PASSWORD) -> str:
        quoted = urllib.parse.quote(password, safe="")
        return f"postgresql://app:{quoted}@127.0.0.1:{self.port}/{db}"


def _pg_bindir() -> Path:
    for candidate in (shutil.which("initdb"), "/usr/lib/postgresql/15/bin/initdb"):
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent
    raise AssertionError("PostgreSQL server binaries (initdb) not found")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bindir = _pg_bindir()
    root = tempfile.mkdtemp(prefix="standin-pg-", dir="/tmp")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    datadir = os.path.join(root, "data")
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as fh:
        fh.write("postgres-superuser-pw\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "nobody")
    port = free_port()
    started = False
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                datadir,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                datadir,
                "-w",
                "-t",
                "30",
                "-l",
                os.path.join(root, "log"),
                "-o",
                f"-k {root} -h 127.0.0.1 -p {port} -F -c max_connections=50",
                "start",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        started = True
        pg = Postgres(bindir, root, port)
        escaped = PG_PASSWORD.replace("'", "''")
        pg.psql("postgres", f"CREATE ROLE app LOGIN PASSWORD '{escaped}'")
        yield pg
    finally:
        if started:
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", datadir, "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


_db_counter = iter(range(1, 10_000))


@pytest.fixture
def database(postgres: Postgres) -> str:
    name = f"svc_{next(_db_counter)}_{os.getpid()}"
    postgres.psql("postgres", f"CREATE DATABASE {name} OWNER app")
    return name


def migrate(pg: Postgres, db: str, **env: str) -> subprocess.CompletedProcess:
    env.setdefault("DATABASE_URL", pg.url(db))
    env.setdefault("SERVICE_NAME", "billing")
    return run_once(["migrate"], **env)


def test_migrate_applies_all_and_is_idempotent(postgres: Postgres, database: str) -> None:
    first = migrate(postgres, database)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "migrate: billing applied 3 migration(s), now at version 3"
    assert (
        postgres.psql(
            database,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
        )
        == "1,2,3"
    )
    columns = postgres.psql(
        database,
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns"
        " WHERE table_name = 'items'",
    )
    assert columns == "created_at,id,name,status"
    applied_at = postgres.psql(
        database, "SELECT count(*) FROM schema_migrations WHERE applied_at IS NOT NULL"
    )
    assert applied_at == "3"

    second = migrate(postgres, database)
    assert second.returncode == 0
    assert second.stdout.strip() == "migrate: billing applied 0 migration(s), now at version 3"


def test_create_schema_fills_an_empty_database_once(postgres: Postgres, database: str) -> None:
    env = {"DATABASE_URL": postgres.url(database), "SERVICE_NAME": "billing"}
    refused = run_once(["create-schema"], **env)  # only with AUTO_CREATE_SCHEMA=true
    assert refused.returncode == 2 and "AUTO_CREATE_SCHEMA=true" in refused.stderr
    created = run_once(["create-schema"], AUTO_CREATE_SCHEMA="true", **env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "create-schema: billing created 2 table(s), now at version 3"
    again = run_once(["create-schema"], AUTO_CREATE_SCHEMA="true", **env)
    assert again.returncode == 1 and "already has 2 table(s); nothing was changed" in again.stderr
    assert PG_PASSWORD not in again.stdout + again.stderr


def test_migrate_schema_version_cap_and_db_ahead(postgres: Postgres, database: str) -> None:
    v1 = migrate(postgres, database, STANDIN_SCHEMA_VERSION="1")
    assert v1.stdout.strip() == "migrate: billing applied 1 migration(s), now at version 1"
    columns = postgres.psql(
        database,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'items' AND column_name = 'status'",
    )
    assert columns == "0"

    v2 = migrate(postgres, database, STANDIN_SCHEMA_VERSION="all")
    assert v2.stdout.strip() == "migrate: billing applied 2 migration(s), now at version 3"

    rollback = migrate(postgres, database, STANDIN_SCHEMA_VERSION="1")
    assert rollback.returncode == 0
    assert rollback.stdout.strip() == "migrate: billing applied 0 migration(s), now at version 3"
    assert "ahead of this image's schema version 1" in rollback.stderr


def test_migrate_failure_rolls_back(postgres: Postgres, database: str) -> None:
    failed = migrate(postgres, database, STANDIN_MIGRATIONS_FAIL="1")
    assert failed.returncode == 1
    assert "FAILED" in failed.stderr
    assert "STANDIN_MIGRATIONS_FAIL=1" in failed.stderr
    assert "applied" not in failed.stdout
    assert postgres.psql(database, "SELECT count(*) FROM schema_migrations") == "0"
    assert postgres.psql(database, "SELECT to_regclass('public.items') IS NULL") == "t"

    assert migrate(postgres, database).returncode == 0
    again = migrate(postgres, database, STANDIN_MIGRATIONS_FAIL="1")
    assert again.returncode == 1


def test_migrate_connection_errors_never_show_password(postgres: Postgres, database: str) -> None:
    wrong = migrate(postgres, database, DATABASE_URL=postgres.url(database, WRONG_PG_PASSWORD))
    assert wrong.returncode == 2
    assert "cannot connect" in wrong.stderr
    assert "password authentication failed" in wrong.stderr

    down = migrate(
        postgres, database, DATABASE_URL=f"postgresql://app:x@127.0.0.1:{free_port()}/db"
    )
    assert down.returncode == 2
    unset = run_once(["migrate"], SERVICE_NAME="billing")
    assert unset.returncode == 2
    assert "DATABASE_URL is not set" in unset.stderr


def test_migrate_waits_for_the_advisory_lock(
    postgres: Postgres, database: str, run: Callable[..., Proc]
) -> None:
    key = load_module().MIGRATE_LOCK_KEY
    holder = subprocess.Popen(
        postgres.psql_argv(database), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert holder.stdin is not None
        holder.stdin.write(f"SELECT pg_advisory_lock({key});\n")
        holder.stdin.flush()
        deadline = time.monotonic() + 10
        while (
            postgres.psql(
                database, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
            != "1"
        ):
            assert time.monotonic() < deadline, "lock holder never got the lock"
            time.sleep(0.05)
        proc = run(["migrate"], SERVICE_NAME="billing", DATABASE_URL=postgres.url(database))
        proc.wait_for(r"waiting for the migration lock")
        time.sleep(0.4)
        assert proc.popen.poll() is None
        assert (
            postgres.psql(database, "SELECT to_regclass('public.schema_migrations') IS NULL") == "t"
        )
    finally:
        if holder.stdin:
            holder.stdin.close()
        holder.wait(timeout=10)
    assert proc.finish() == 0
    proc.wait_for(r"applied 3 migration\(s\), now at version 3", stream="stdout")


def test_concurrent_migrates_are_serialized(
    postgres: Postgres, database: str, run: Callable[..., Proc]
) -> None:
    env = {"SERVICE_NAME": "billing", "DATABASE_URL": postgres.url(database)}
    procs = [run(["migrate"], **env) for _ in range(3)]
    applied = []
    for proc in procs:
        assert proc.finish() == 0, proc.output()
        applied.append(int(proc.wait_for(r"applied (\d+) migration", stream="stdout").group(1)))
    assert sorted(applied) == [0, 0, 3]
    assert postgres.psql(database, "SELECT count(*) FROM schema_migrations") == "3"


def test_redis_protocol_encodes_commands_and_names_only_the_error_code() -> None:
    """The stand-in's RESP client (`/api/rate-limited`): what goes out, what comes back; a
    refusal becomes its code word (never the rest of the reply, never an argument)."""
    import io

    module = load_module()
    assert module.resp_command(["AUTH", "food", "p w"]) == \
        b"*3\r\n$4\r\nAUTH\r\n$4\r\nfood\r\n$3\r\np w\r\n"
    replies = io.BytesIO(b"+OK\r\n:5\r\n$3\r\nfoo\r\n$-1\r\n-NOPERM this user has no\r\n")
    assert [module.resp_reply(replies) for _ in range(4)] == ["OK", 5, "foo", None]
    with pytest.raises(module.RedisError, match="^NOPERM$"):
        module.resp_reply(replies)
    with pytest.raises(module.RedisError, match="connection closed"):
        module.resp_reply(io.BytesIO(b""))
    with pytest.raises(module.RedisError, match="not a redis:// URL"):
        module.redis_call("http://x", [["PING"]])
