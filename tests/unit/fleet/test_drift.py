"""ops/fleet/drift.py against HostState data shaped like the fact's recorded output (pure)."""

from __future__ import annotations

import json

import pytest

from ops.catalog import load_environment
from ops.fleet.drift import expected_containers, format_drift, host_drift, moved_tags
from ops.host.state import parse_host_state
from ops.render import PlaceholderSecrets, render_host, service_content_hash
from ops.rollout.plan import sha256

ENV = load_environment("local")
HOST = "host1"
IMAGE = ENV.image(ENV.services["food"])
RELEASE = {"release": "R1", "result": "success", "finished": "2026-01-01T00:00:00+00:00",
           "images": {s: ENV.image(ENV.services[s]) for s in ENV.services},
           "secret_versions": {}}


def fact_output(files) -> list[str]:
    """What SuperappHostState's command prints for a host that runs the release exactly."""
    lines = ["@@files"] + [f"{sha256(f.content)}  {f.path}" for f in files]
    lines.append("@@containers")
    for name, (image, project, _unit) in expected_containers(files).items():
        labels = f"com.docker.compose.project={project}"
        lines.append(json.dumps({"Names": name, "Image": image, "State": "running",
                                 "Status": "Up 2 hours (healthy)", "Labels": labels}))
    lines.append("@@images")
    lines.append(json.dumps({"Repository": IMAGE.rpartition(":")[0],
                             "Tag": IMAGE.rpartition(":")[2], "Digest": "sha256:" + "a" * 64}))
    lines.append("@@services")
    for s in ENV.services_on(HOST):
        lines.append(json.dumps({"service": s.name, "slot": "a", "image": ENV.image(s),
                                 "digest": "sha256:" + "a" * 64,
                                 "hash": service_content_hash(ENV, s.name, HOST,
                                                              PlaceholderSecrets())}))
    lines += ["@@lock", "@@ledger", json.dumps(RELEASE)]
    return lines


@pytest.fixture
def files():
    return render_host(ENV, HOST, PlaceholderSecrets(), {})


def drift(files, lines):
    state = parse_host_state(lines)
    hashes = {s.name: service_content_hash(ENV, s.name, HOST, PlaceholderSecrets())
              for s in ENV.services_on(HOST)}
    return host_drift(ENV, HOST, state, files, RELEASE, hashes)


def test_a_host_that_matches_its_release_has_no_drift(files):
    assert drift(files, fact_output(files)) == []


def test_file_edited_on_the_host(files):
    lines = fact_output(files)
    i = next(i for i, x in enumerate(lines) if x.endswith("  /opt/superapp/compose/food.yml"))
    lines[i] = "0" * 64 + "  /opt/superapp/compose/food.yml"
    rows = drift(files, lines)
    assert [(r.kind, r.subject) for r in rows] == [("file", "/opt/superapp/compose/food.yml")]
    assert "edited on the host" in rows[0].detail


def test_secret_file_edited_is_compared_by_hash_only(files):
    lines = fact_output(files)
    i = next(i for i, x in enumerate(lines) if x.endswith("  /etc/superapp/env/food.env"))
    lines[i] = "0" * 64 + "  /etc/superapp/env/food.env"
    (row,) = drift(files, lines)
    assert row.subject == "/etc/superapp/env/food.env" and "hash only" in row.detail


def test_missing_cron_job(files):
    cron = next(f.path for f in files if f.path.startswith("/etc/cron.d/superapp-"))
    lines = [x for x in fact_output(files) if not x.endswith("  " + cron)]
    assert [(r.kind, r.subject, r.detail) for r in drift(files, lines)] == [
        ("cron", cron, "cron job missing")]


def test_leftover_file_in_an_owned_directory(files):
    lines = fact_output(files)
    lines.insert(1, "1" * 64 + "  /opt/superapp/compose/food.yml.prev")
    (row,) = drift(files, lines)
    assert row.subject == "/opt/superapp/compose/food.yml.prev"


def container_line(name, image=IMAGE, state="running", status="Up 1 hour", labels=""):
    return json.dumps({"Names": name, "Image": image, "State": state, "Status": status,
                       "Labels": labels})


def replace_container(lines, name, new):
    return [new if x.startswith("{") and json.loads(x).get("Names") == name else x
            for x in lines]


def test_container_stopped_other_image_or_started_by_hand(files):
    lines = fact_output(files)
    lines = replace_container(lines, "food-a", container_line(
        "food-a", state="exited", status="Exited (137) 5 minutes ago",
        labels="com.docker.compose.project=sa-food-a"))
    lines = replace_container(lines, "bus-a", container_line(
        "bus-a", image="10.231.0.1:5000/superapp/standin:v3",
        labels="com.docker.compose.project=sa-bus-a"))
    lines = replace_container(lines, "taxi-a", container_line("taxi-a", labels=""))
    lines.insert(lines.index("@@images"), container_line("debug-shell", image="busybox"))
    rows = {(r.kind, r.subject): r.detail for r in drift(files, lines)}
    assert rows[("container", "food-a")] == "not running: Exited (137) 5 minutes ago"
    assert rows[("image", "bus-a")].startswith("runs 10.231.0.1:5000/superapp/standin:v3")
    assert "started by hand" in rows[("container", "taxi-a")]
    assert "started by hand" in rows[("container", "debug-shell")]
    assert len(rows) == 4


def test_image_digest_moved_under_the_same_tag(files):
    lines = [x.replace('"Digest": "sha256:' + "a" * 64, '"Digest": "sha256:' + "b" * 64)
             for x in fact_output(files)]
    rows = drift(files, lines)
    assert rows and all(r.kind == "image" and "is now sha256:bbbb" in r.detail for r in rows)


def test_undeployed_repo_change_is_one_row_not_file_noise(files):
    lines = [x.replace('"hash": "sha256:', '"hash": "sha256:0') if '"service": "food"' in x
             else x for x in fact_output(files)]
    i = next(i for i, x in enumerate(lines) if x.endswith("  /opt/superapp/compose/food.yml"))
    lines[i] = "0" * 64 + "  /opt/superapp/compose/food.yml"
    (row,) = drift(files, lines)
    assert (row.kind, row.subject) == ("service", "food") and "undeployed" in row.detail


def test_no_release_in_the_ledger(files):
    state = parse_host_state(fact_output(files)[:-1])
    (row,) = host_drift(ENV, HOST, state, files, None, {})
    assert row.kind == "release"


def test_table_has_one_row_per_drift(files):
    lines = [x for x in fact_output(files) if "cron.d" not in x]
    rows = drift(files, lines)
    table = format_drift(rows).splitlines()
    assert table[0].split() == ["host", "kind", "what", "drift"]
    assert len(table) == len(rows) + 1


def test_a_tag_the_registry_moved_since_the_release_is_reported_once_per_service():
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    release = {**RELEASE, "image_digests": dict.fromkeys(ENV.services, old)}
    moved = {IMAGE: new}  # every stand-in service shares the same tag here
    rows = moved_tags(release, moved)
    users = sorted(s for s, ref in RELEASE["images"].items() if ref == IMAGE)
    assert [r.subject for r in rows] == users
    assert rows[0].host == "registry" and rows[0].kind == "tag"
    assert f"{IMAGE} now points to 222222222222; the release runs 111111111111" in rows[0].detail
    assert moved_tags(release, {IMAGE: old}) == []  # still where it was
    assert moved_tags(RELEASE, moved) == []  # a release recorded before digests: nothing known
