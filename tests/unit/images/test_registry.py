"""ops.images.registry against a real HTTP server speaking the registry API v2 (manifests by
tag, 404 for an unknown tag, a bearer-token challenge). The testbed's own registry is used by
the integration tests (tests/integration/test_rollout.py, test_dryrun_drift_status.py)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.images.registry import ACCEPT, Registry, RegistryError

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType":
                       "application/vnd.docker.distribution.manifest.v2+json"}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """`/v2/<repo>/manifests/<tag>`: tag `v1` exists; repo `private/*` needs a bearer token
    from `/token`; tag `nodigest` answers without the digest header."""

    seen: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def answer(self, body: bool) -> None:
        self.seen.append({"path": self.path, "accept": self.headers.get("Accept", ""),
                          "auth": self.headers.get("Authorization", "")})
        if self.path.startswith("/token"):
            data = json.dumps({"token": "t0k"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        _, _, repo_tag = self.path.partition("/v2/")
        repo, _, tag = repo_tag.partition("/manifests/")
        if repo.startswith("private/") and self.headers.get("Authorization") != "Bearer t0k":
            self.send_response(401)
            port = self.server.server_address[1]
            self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token"'
                                                 f',service="reg",scope="repository:{repo}:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if tag not in ("v1", "nodigest"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if tag == "v1":
            self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", str(len(MANIFEST)))
        self.end_headers()
        if body:
            self.wfile.write(MANIFEST)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self.answer(body=True)


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Handler.seen = []
    yield Registry(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


def test_a_tag_resolves_to_the_digest_the_registry_names(registry) -> None:
    assert registry.digest("127.0.0.1/superapp/standin:v1") == DIGEST
    assert Handler.seen[0]["path"] == "/v2/superapp/standin/manifests/v1"
    assert Handler.seen[0]["accept"] == ACCEPT  # indexes and manifests, OCI and Docker


def test_an_unknown_tag_is_one_clear_error_naming_every_missing_image(registry) -> None:
    with pytest.raises(RegistryError) as info:
        registry.digests(["r:1/superapp/a:v1", "r:1/superapp/b:nope", "r:1/superapp/c:gone"])
    text = str(info.value)
    assert "r:1/superapp/b:nope: the registry" in text and "has no such tag" in text
    assert "r:1/superapp/c:gone" in text and "superapp/a:v1" not in text
    assert info.value.refs == ("r:1/superapp/b:nope", "r:1/superapp/c:gone")


def test_a_bearer_challenge_gets_an_anonymous_token_then_the_digest(registry) -> None:
    assert registry.digest("r:1/private/app:v1") == DIGEST
    assert [s["auth"] for s in Handler.seen] == ["", "", "Bearer t0k"]
    assert Handler.seen[1]["path"].startswith("/token?") and "scope=repository" in \
        Handler.seen[1]["path"]


def test_a_registry_without_the_digest_header_is_hashed_from_the_manifest(registry) -> None:
    assert registry.digest("r:1/superapp/standin:nodigest") == DIGEST


def test_an_unreachable_registry_says_where() -> None:
    with pytest.raises(RegistryError, match="cannot reach the registry http://127.0.0.1:9"):
        Registry("http://127.0.0.1:9").digest("r/x:v1")


def test_settings_choose_the_url_https_by_default() -> None:
    assert Registry.from_settings({"registry": "reg.example:5000"}).url == \
        "https://reg.example:5000"
    assert Registry.from_settings({"registry": "reg:5000", "registry_api": {
        "url": "http://reg:5000/", "ca_path": None}}).url == "http://reg:5000"
