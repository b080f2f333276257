"""Image references (pure): `registry/repository:tag`, optionally pinned `...@sha256:<hex>`.

A deploy renders `repository:tag@sha256:...` into compose files: the tag says which release an
operator meant, the digest which bits run (Docker pulls by the digest and ignores the tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port], "" when none
    repository: str
    tag: str  # "" when none
    digest: str  # "sha256:..." or ""

    @property
    def name(self) -> str:
        """`registry/repository` (what `docker image ls` calls the repository)."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def tagged(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag else self.name

    @property
    def by_digest(self) -> str:
        """`name@sha256:...`, the form Docker lists in an image's RepoDigests."""
        return f"{self.name}@{self.digest}"

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


def parse_ref(ref: str) -> ImageRef:
    """Split a reference; the first path part is a registry when it has a `.` or `:`."""
    rest, _, digest = ref.partition("@")
    first, slash, path = rest.partition("/")
    registry = first if slash and ("." in first or ":" in first) else ""
    name = path if registry else rest
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = name, ""
    return ImageRef(registry, repository, tag, digest)


def pinned(ref: str, digest: str | None) -> str:
    """`ref@digest` (the deployable form), or `ref` unchanged when no digest is known."""
    if not digest:
        return ref
    if not DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"{ref.partition('@')[0]}@{digest}"


def tag_of(ref: str) -> str:
    return parse_ref(ref).tag


def digest_of(ref: str) -> str:
    return parse_ref(ref).digest
