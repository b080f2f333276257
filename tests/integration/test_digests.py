"""Deploy by digest on the testbed: a tag re-pushed after a deploy changes nothing that runs,
drift reports it, and a rollback restores the recorded bits, not what the tag names now; a tag
the registry does not hold is refused before any host changes.

The moving tag is a fresh name in the testbed registry, first pointing at the `v2` stand-in,
then moved (its manifest re-put, as `docker push` does) to `v1`. Only chat uses it; the fleet is
put back on the repo's release when the module is done.
"""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest

from ops.catalog import load_environment
from ops.images.registry import ACCEPT, Registry

from .conftest import REPO, Testbed
from .release import deploy, output, pyinfra, release_copy
from .test_rollout import deploy_tree_hash, ledger, versions

pytestmark = pytest.mark.integration

ENV = load_environment("local")
REGISTRY = Registry.from_settings(ENV.settings)
REPOSITORY = ENV.settings["standin_image"]["repository"]


def manifest(tag: str) -> tuple[bytes, str]:
    request = urllib.request.Request(f"{REGISTRY.url}/v2/{REPOSITORY}/manifests/{tag}",
                                      headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=15) as answer:
        return answer.read(), answer.headers["Content-Type"]


def point_tag(tag: str, at: str) -> str:
    """Make `tag` name what `at` names (a re-push); the digest it names now."""
    body, media_type = manifest(at)
    request = urllib.request.Request(f"{REGISTRY.url}/v2/{REPOSITORY}/manifests/{tag}",
                                     data=body, method="PUT",
                                     headers={"Content-Type": media_type})
    urllib.request.urlopen(request, timeout=15).close()
    return REGISTRY.digest(ref(tag))


def ref(tag: str) -> str:
    return f"{ENV.settings['registry']}/{REPOSITORY}:{tag}"


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def chat_images(testbed: Testbed) -> dict[str, str]:
    """host -> the image reference chat's live container was created from."""
    out = {}
    for h in testbed.hosts:
        if "app" in h.roles:
            out[h.name] = testbed.ssh(h, "docker ps -q --filter label=superapp.service=chat "
                                         "--filter label=superapp.role=serve | xargs docker "
                                         "inspect --format '{{.Config.Image}}'").stdout.strip()
    return out


@pytest.fixture(scope="module")
def moved(testbed: Testbed, deployed, tmp_path_factory):
    """chat deployed by a fresh tag naming v2's bits; then the tag is moved to v1's."""
    tag = "moving-" + secrets.token_hex(4)
    v2 = point_tag(tag, "v2")
    tree = release_copy(tmp_path_factory.mktemp("digests") / "rp",
                        {"image_tags": f'{{"chat": "{tag}"}}'})
    res = deploy(tree)
    assert res.returncode == 0, output(res)[-4000:]
    release = ledger(testbed, testbed.hosts[0])[-1]
    v1 = point_tag(tag, "v1")
    assert v1 != v2
    yield {"tag": tag, "v1": v1, "v2": v2, "release": release, "base": tmp_path_factory}
    res = deploy(REPO)
    assert res.returncode == 0, output(res)[-4000:]


def test_the_release_runs_and_records_the_digest_the_tag_had(moved, testbed):
    assert moved["release"]["images"]["chat"] == ref(moved["tag"])
    assert moved["release"]["image_digests"]["chat"] == moved["v2"]
    assert set(chat_images(testbed).values()) == {f"{ref(moved['tag'])}@{moved['v2']}"}


def test_a_moved_tag_changes_nothing_that_runs_and_status_shows_tag_and_digest(moved, testbed):
    assert set(versions(testbed, "chat").values()) == {"v2"}  # the recorded bits, not v1's
    res = pyinfra(REPO, "inventories/local.py", "tasks/status.py", "--data", "service=chat")
    assert res.returncode == 0, output(res)[-3000:]
    rows = [line.split() for line in output(res).splitlines() if " chat " in f" {line} "]
    assert rows and all(moved["tag"] in row and short(moved["v2"]) in row for row in rows), \
        output(res)[-3000:]


def test_drift_reports_the_moved_tag(moved, testbed):
    res = pyinfra(REPO, "inventories/local.py", "tasks/drift.py", timeout=300)
    assert res.returncode == 1, output(res)[-3000:]
    assert (f"{ref(moved['tag'])} now points to {short(moved['v1'])}; the release runs "
            f"{short(moved['v2'])}") in output(res), output(res)[-3000:]


def test_a_rollback_restores_the_recorded_digest_not_what_the_tag_names_now(moved, testbed):
    tree = release_copy(moved["base"].mktemp("v3"), {"image_tags": '{"chat": "v3"}'})
    res = deploy(tree)
    assert res.returncode == 0, output(res)[-4000:]
    assert set(versions(testbed, "chat").values()) == {"v3"}
    back = pyinfra(REPO, "-y", "inventories/local.py", "tasks/rollback.py")
    assert back.returncode == 0, output(back)[-4000:]
    assert f"rolling back to release {moved['release']['release']}" in output(back)
    assert "chat: v3 (" in output(back) and f"-> {moved['tag']} ({short(moved['v2'])})" \
        in output(back), output(back)[-3000:]
    assert set(versions(testbed, "chat").values()) == {"v2"}  # not v1, where the tag is now
    assert set(chat_images(testbed).values()) == {f"{ref(moved['tag'])}@{moved['v2']}"}
    last = ledger(testbed, testbed.hosts[0])[-1]
    assert last["rolled_back_to"] == moved["release"]["release"]
    assert last["image_digests"]["chat"] == moved["v2"]


def test_a_tag_the_registry_does_not_hold_is_refused_before_any_host_changes(moved, testbed):
    tree = release_copy(moved["base"].mktemp("nope"),
                        {"image_tags": json.dumps({"chat": "no-such-tag"})})
    before = [deploy_tree_hash(testbed, h) for h in testbed.hosts]
    res = deploy(tree)
    assert res.returncode != 0
    text = output(res)
    assert f"{ref('no-such-tag')}: the registry {REGISTRY.url} has no such tag" in text, \
        text[-3000:]
    assert f"{ref('no-such-tag')} is the image of chat" in text
    assert "no host was changed" in text
    assert [deploy_tree_hash(testbed, h) for h in testbed.hosts] == before
