"""ops.images.refs: references split and pinned the way Docker reads them."""

from __future__ import annotations

import pytest

from ops.host.state import HostState, has_image
from ops.images.refs import parse_ref, pinned

D = "sha256:" + "ab" * 32


def test_registry_repository_tag_and_digest_are_split() -> None:
    ref = parse_ref(f"10.231.0.1:5000/superapp/standin:v2@{D}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "10.231.0.1:5000", "superapp/standin", "v2", D)
    assert ref.by_digest == f"10.231.0.1:5000/superapp/standin@{D}"
    assert ref.tagged == "10.231.0.1:5000/superapp/standin:v2"
    assert ref.short_digest == "ab" * 6
    plain = parse_ref("superapp/payments:1.4.2")
    assert (plain.registry, plain.repository, plain.tag, plain.digest) == (
        "", "superapp/payments", "1.4.2", "")
    assert parse_ref("registry.example:5000/app").tag == ""  # a port is not a tag


def test_pinning_replaces_any_digest_and_refuses_a_malformed_one() -> None:
    assert pinned("reg/x:v1", D) == f"reg/x:v1@{D}"
    assert pinned(f"reg/x:v1@sha256:{'0' * 64}", D) == f"reg/x:v1@{D}"
    assert pinned("reg/x:v1", None) == "reg/x:v1"
    with pytest.raises(ValueError):
        pinned("reg/x:v1", "sha256:short")


def test_a_pinned_image_is_present_by_its_digest_even_untagged() -> None:
    state = HostState(images={"reg:5000/x:v1"}, repo_digests={f"reg:5000/x@{D}"})
    assert has_image(state, f"reg:5000/x:v1@{D}")
    assert has_image(state, f"reg:5000/x:v9@{D}")  # Docker ignores the tag of a pinned ref
    assert not has_image(state, f"reg:5000/x:v1@sha256:{'0' * 64}")
    assert has_image(state, "reg:5000/x:v1") and not has_image(state, "reg:5000/x:v2")
