"""Resolve image tags to manifest digests through the registry's HTTP API v2, from the
controller, before any host changes.

`HEAD /v2/<repository>/manifests/<tag>` answers the digest in `Docker-Content-Digest`. The
`Accept` list is the one Docker sends on pull (indexes and single manifests, OCI and Docker), so
the digest is the one Docker records for the tag. A registry that asks for a bearer token
(`WWW-Authenticate: Bearer realm=...`) gets an anonymous token request, like `docker pull`
without a login; the hosts pull anonymously too.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ops.images.refs import DIGEST, parse_ref

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
TIMEOUT = 15


class RegistryError(Exception):
    """One message naming the image and what the registry said; `refs`: the refs that failed
    (so a caller can say which services use them without parsing the message)."""

    def __init__(self, message: str, refs: Iterable[str] = ()):
        super().__init__(message)
        self.refs = tuple(refs)


@dataclass(frozen=True)
class Registry:
    url: str  # https://host:port
    ca_path: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping) -> Registry:
        api = settings.get("registry_api") or {}
        return cls((api.get("url") or f"https://{settings['registry']}").rstrip("/"),
                   api.get("ca_path"))

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        return ssl.create_default_context(cafile=self.ca_path)

    def _open(self, request: urllib.request.Request):
        return urllib.request.urlopen(request, timeout=TIMEOUT, context=self._context())

    def digest(self, ref: str) -> str:
        """The manifest digest `ref`'s tag points to now; RegistryError when it has none."""
        image = parse_ref(ref)
        if not image.tag:
            raise RegistryError(f"{ref}: no tag to resolve")
        url = f"{self.url}/v2/{image.repository}/manifests/{urllib.parse.quote(image.tag)}"
        headers = {"Accept": ACCEPT}
        for attempt in (1, 2):
            request = urllib.request.Request(url, method="HEAD", headers=headers)
            try:
                with self._open(request) as answer:
                    digest = answer.headers.get("Docker-Content-Digest", "")
                    break
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate", "") if e.headers else ""
                if e.code == 401 and attempt == 1 and challenge.lower().startswith("bearer"):
                    headers["Authorization"] = f"Bearer {self._token(challenge, ref)}"
                    continue
                if e.code == 404:
                    raise RegistryError(f"{ref}: the registry {self.url} has no such tag "
                                        "(manifest unknown): push it, or fix the tag in "
                                        "group_data") from None
                raise RegistryError(f"{ref}: the registry {self.url} answered HTTP {e.code} "
                                    f"{e.reason}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise RegistryError(f"{ref}: cannot reach the registry {self.url}: {reason}") \
                    from None
        else:  # pragma: no cover - the loop always breaks or raises
            raise RegistryError(f"{ref}: the registry refused the token")
        if not digest:  # a registry that omits the header: hash the manifest itself
            digest = self._hash_manifest(url, headers)
        if not DIGEST.fullmatch(digest):
            raise RegistryError(f"{ref}: the registry answered an unexpected digest {digest!r}")
        return digest

    def _hash_manifest(self, url: str, headers: dict[str, str]) -> str:
        with self._open(urllib.request.Request(url, headers=headers)) as answer:
            return "sha256:" + hashlib.sha256(answer.read()).hexdigest()

    def _token(self, challenge: str, ref: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in params:
            raise RegistryError(f"{ref}: the registry asks for a token without a realm")
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k != "realm"})
        try:
            with self._open(urllib.request.Request(f"{params['realm']}?{query}")) as answer:
                body = json.loads(answer.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RegistryError(f"{ref}: no anonymous pull token from {params['realm']}: "
                                f"{getattr(e, 'reason', e)} (the registry needs a login; "
                                "the hosts would need one too)") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"{ref}: the token service {params['realm']} gave no token")
        return token

    def digests(self, refs: Iterable[str]) -> dict[str, str]:
        """ref -> digest for every distinct ref; RegistryError listing every ref that failed."""
        refs = sorted(set(refs))
        results: dict[str, str] = {}
        errors: dict[str, str] = {}

        def one(ref: str) -> None:
            try:
                results[ref] = self.digest(ref)
            except RegistryError as e:
                errors[ref] = str(e)

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(refs)))) as pool:
            list(pool.map(one, refs))
        if errors:
            raise RegistryError("cannot resolve image tag(s) to digests:\n  "
                                + "\n  ".join(sorted(errors.values())), refs=sorted(errors))
        return results
