"""Pre-staging on the testbed: a release whose image one host cannot pull (host3's way to the
registry is cut) is refused before host1 changes; host1 and host2 keep running what they ran."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from ops.catalog import load_environment

from .conftest import Testbed
from .release import output, pyinfra, release_copy

pytestmark = pytest.mark.integration

ENV = load_environment("local")
SERVICE = "payments"
CUT = "nft add table inet prestage_test; nft add chain inet prestage_test out " \
      "'{{ type filter hook output priority 0; }}'; nft add rule inet prestage_test out " \
      "ip daddr {addr} tcp dport {port} reject with tcp reset"


def builder(testbed: Testbed, *args: str, stdin: str | None = None) -> None:
    res = subprocess.run(["docker", "-H", f"unix://{testbed.status['builder_socket']}", *args],
                         input=stdin, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture
def new_tag(testbed: Testbed) -> str:
    """A tag no host holds: the good stand-in with a label of its own (a new digest)."""
    tag = f"prestage-{secrets.token_hex(4)}"
    ref = f"{testbed.registry}/superapp/standin:{tag}"
    builder(testbed, "build", "-q", "-t", ref, "-",
            stdin=f"FROM {testbed.registry}/superapp/standin:v2\nLABEL superapp.test={tag}\n")
    builder(testbed, "push", "-q", ref)
    return tag


def records(testbed: Testbed) -> dict[str, dict]:
    return {h.name: json.loads(testbed.ssh(h, f"cat /var/lib/superapp/services/{SERVICE}.json")
                               .stdout) for h in testbed.hosts if "app" in h.roles}


def test_a_tag_host3_cannot_pull_is_refused_before_host1_changes(testbed, deployed, new_tag,
                                                                 tmp_path):
    tree = release_copy(tmp_path / "rel", {"image_tags": f'{{"{SERVICE}": "{new_tag}"}}'})
    before = records(testbed)
    host3 = testbed.host("host3")
    addr, port = testbed.registry.split(":")
    testbed.ssh(host3, CUT.format(addr=addr, port=port))
    try:
        res = pyinfra(tree, "-y", "inventories/local.py", "deploy.py", timeout=900)
    finally:
        testbed.ssh(host3, "nft delete table inet prestage_test")
    text = output(res)
    assert res.returncode != 0, text[-3000:]
    assert "pre-staging failed, no host was changed:\n  host3: pulling " in text, text[-3000:]
    assert f"standin:{new_tag}" in text.split("pre-staging failed")[1]
    assert "--> host1:" not in text  # the per-host rollout never began
    assert records(testbed) == before
    slots = testbed.ssh(testbed.host("host1"), "docker ps -a --format "
                        "'{{.Label \"superapp.slot\"}}' --filter "
                        f"label=superapp.service={SERVICE}").stdout.split()
    assert len(set(slots)) == 1, slots  # no new slot started anywhere
