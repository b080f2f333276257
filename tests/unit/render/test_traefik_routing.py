"""The rendered Traefik configuration, run by the real Traefik binary on loopback (as
ops/validate.py does), with every service's server replaced by a local recorder: what the
public entrypoint refuses, and what the internal entrypoint passes on, byte for byte. Prod's
public entrypoint is `websecure` (HTTPS; a dry run has no certificate, so Traefik's default
one, which this client does not check: routing is what is tested); `web` only redirects."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ops.render import PlaceholderSecrets, render_host
from ops.validate import (
    find_tool,
    free_port,
    stop_process,
    traefik_test_config,
    traefik_test_dynamic,
)

DOMAIN = "api.superapp.sy"


class Recorder(ThreadingHTTPServer):
    """Stands for one service: answers 200 and records what reached it."""

    def __init__(self, name: str):
        self.name = name
        self.seen: list[tuple[str, str, str, bytes]] = []  # method, target, Host, body
        super().__init__(("127.0.0.1", 0), RecorderHandler)


class RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, self.headers.get("Host", ""), body))
        reply = json.dumps({"service": self.server.name}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = answer

    def log_message(self, *args: object) -> None:
        pass


class Edge:
    def __init__(self, ports: dict[str, int], recorders: dict[str, Recorder]):
        self.ports = ports
        self.recorders = recorders

    def request(self, entrypoint: str, method: str, target: str, host: str,
                body: bytes = b"") -> tuple[int, bytes]:
        """`target` goes on the request line exactly as given (no client-side cleaning)."""
        if entrypoint == "websecure":
            unchecked = ssl._create_unverified_context()  # noqa: S323 - Traefik's default cert
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.ports[entrypoint], timeout=5, context=unchecked)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports[entrypoint], timeout=5)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def reached(self) -> list:
        return [(name, *hit) for name, r in self.recorders.items() for hit in r.seen]

    def clear(self) -> None:
        for r in self.recorders.values():
            r.seen.clear()


@pytest.fixture(scope="module")
def edge(environments, tmp_path_factory) -> Iterator[Edge]:
    prod = environments["prod"]
    recorders = {"payments": Recorder("payments"), "other": Recorder("other")}
    for r in recorders.values():
        threading.Thread(target=r.serve_forever, daemon=True).start()
    tmp = tmp_path_factory.mktemp("traefik")
    (tmp / "dynamic").mkdir()
    for f in render_host(prod, "app-1", PlaceholderSecrets()):
        if f.path == "/opt/superapp/traefik/traefik.yml":
            (tmp / "static.yml").write_text(f.content)
        elif f.path.startswith("/opt/superapp/traefik/dynamic/"):
            doc = yaml.safe_load(f.content)
            for name, service in (doc.get("http") or {}).get("services", {}).items():
                port = recorders["payments" if name == "payments" else "other"].server_port
                service["loadBalancer"]["servers"] = [{"url": f"http://127.0.0.1:{port}"}]
                # Traefik's own probes of the server are not routed requests: keep them out
                service["loadBalancer"].pop("healthCheck", None)
            (tmp / "dynamic" / Path(f.path).name).write_text(yaml.safe_dump(doc))
    dynamic = traefik_test_dynamic(tmp / "static.yml", tmp / "dynamic", tmp / "checked")
    config = traefik_test_config(tmp / "static.yml", dynamic, tmp)
    ports = {"web": free_port(), "websecure": free_port(), "internal": free_port()}
    for name, port in ports.items():
        config["entryPoints"][name]["address"] = f"127.0.0.1:{port}"
    (tmp / "traefik.yml").write_text(yaml.safe_dump(config))
    with open(tmp / "traefik.log", "w") as log:
        proc = subprocess.Popen([find_tool("traefik"), f"--configfile={tmp / 'traefik.yml'}"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    edge = Edge(ports, recorders)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if edge.request("websecure", "GET", "/payments/ready", DOMAIN)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("Traefik did not route the rendered config:\n"
                            + (tmp / "traefik.log").read_text()[-3000:])
            time.sleep(0.1)
        edge.clear()
        yield edge
    finally:
        stop_process(proc)
        for r in recorders.values():
            r.shutdown()
            r.server_close()


@pytest.mark.parametrize("target", [
    "/payments/internal/charge", "/payments/internal", "/payments/admin/anything",
    "/taxi/admin/ping", "/ai/internal/x", "/payments/internal/charge?x=1",
    # Traefik cleans these before routing: they meet the deny router too
    "/payments//internal/charge", "/payments/./internal/charge", "/payments/x/../internal/charge",
    "/payments/%69nternal/charge",
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_internal_and_admin_answer_404_on_https_and_never_reach_the_service(edge, method,
                                                                            target):
    edge.clear()
    assert edge.request("websecure", method, target, DOMAIN, b"{}" if method == "POST" else b"") \
        == (404, b"")
    assert edge.reached() == []


@pytest.mark.parametrize("target", ["/payments/internal%2Fcharge", "/payments/%2Finternal/x",
                                    "/taxi/admin%5Cping", "/taxi/admin%2fping"])
def test_encoded_separators_are_refused_on_both_entrypoints(edge, target):
    edge.clear()
    assert edge.request("websecure", "GET", target, DOMAIN)[0] == 400
    assert edge.request("web", "GET", target, DOMAIN)[0] == 400
    assert edge.reached() == []


@pytest.mark.parametrize("target", ["/payments/api/wallet?id=1", "/payments/internal/charge",
                                    "/nothing"])
def test_plain_http_only_redirects_to_https_and_reaches_nothing(edge, target):
    edge.clear()
    conn = http.client.HTTPConnection("127.0.0.1", edge.ports["web"], timeout=5)
    conn.request("GET", target, headers={"Host": DOMAIN})
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Location")) == (301, f"https://{DOMAIN}{target}")
    conn.close()
    assert edge.reached() == []


def test_public_routes_still_reach_the_service_with_the_prefix_stripped(edge):
    edge.clear()
    assert edge.request("websecure", "GET", "/payments/api/wallet?id=1", DOMAIN)[0] == 200
    assert edge.request("websecure", "GET", "/payments/internals", DOMAIN)[0] == 200
    assert [(n, m, t) for n, m, t, _, _ in edge.reached()] == [
        ("payments", "GET", "/api/wallet?id=1"), ("payments", "GET", "/internals")]


def test_internal_entrypoint_passes_the_signed_path_unchanged(edge):
    edge.clear()
    status, _ = edge.request("internal", "POST", "/internal/charge?n=1",
                             "payments.internal:8081", b'{"n":1}')
    assert status == 200
    assert edge.reached() == [("payments", "POST", "/internal/charge?n=1",
                               "payments.internal:8081", b'{"n":1}')]


@pytest.mark.parametrize(("host", "recorder"), [
    ("payments.internal:8081", "payments"), ("taxi.internal:8081", "other"),
    ("ai-gateway.internal:8081", "other"), ("payments.internal", "payments")])
def test_every_service_answers_on_its_internal_name(edge, host, recorder):
    edge.clear()
    assert edge.request("internal", "GET", "/health", host)[0] == 200
    assert [(n, t) for n, _, t, _, _ in edge.reached()] == [(recorder, "/health")]


def test_internal_names_are_not_routed_publicly_and_prometheus_paths_still_work(edge):
    edge.clear()
    assert edge.request("websecure", "GET", "/internal/charge", "payments.internal")[0] == 404
    assert edge.reached() == []
    assert edge.request("internal", "GET", "/_svc/payments/metrics", "10.10.0.11:8081")[0] == 200
    assert [(n, t) for n, _, t, _, _ in edge.reached()] == [("payments", "/metrics")]
