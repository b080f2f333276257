"""ops.host.state: the one-command host snapshot, run for real and parsed (and a recorded run
from a testbed host)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from ops.host.state import (
    CRON_GLOB,
    INTENT_SUFFIX,
    LEDGER_PATH,
    SERVICE_STATE_DIR,
    SLOT_INFO_PATH,
    parse_host_state,
    state_script,
)

RECORDED = Path(__file__).parents[2] / "fixtures" / "hoststate" / "host2.txt"


def test_parses_a_recorded_snapshot() -> None:
    state = parse_host_state(RECORDED.read_text().splitlines())
    assert "/opt/superapp/compose/payments.yml" in state.files
    assert all(len(d) == 64 for d in state.files.values())
    assert state.containers["traefik"].state == "running"
    assert state.containers["traefik"].health == "healthy"
    payments = next(c for c in state.containers.values()
                    if c.labels.get("superapp.service") == "payments"
                    and c.labels.get("superapp.role") == "serve")
    assert payments.labels["superapp.slot"] in ("a", "b")
    assert "10.231.0.1:5000/superapp/traefik:3.7.15" in state.images
    assert state.digests["10.231.0.1:5000/superapp/traefik:3.7.15"].startswith("sha256:")
    assert state.services["payments"]["slot"] == payments.labels["superapp.slot"]
    assert state.intents == {} and state.routes == {}  # recorded before routes were read
    assert state.ledger and state.ledger[-1]["env"] == "local"


def test_empty_host_and_garbage_are_not_fatal() -> None:
    fresh = parse_host_state(["@@files", "@@containers", "@@images", "@@services",
                              "@@intents", "@@routes", "@@ledger"])
    assert fresh.files == {} and fresh.containers == {} and fresh.ledger == []
    noisy = parse_host_state(["@@files", "not a checksum line", "@@ledger", "{broken json",
                              "[1, 2]", '{"release": "r1"}', "@@lock", '{"owner": "a@b"}',
                              "@@routes", "/x/food.yml:# superapp-live-slot: ",
                              "no colon here"])
    assert noisy.files == {} and noisy.ledger == [{"release": "r1"}]
    assert noisy.routes == {}  # an old recording's lock section is skipped, not misread


def test_a_container_s_image_is_the_reference_it_was_created_from() -> None:
    pinned = "reg:5000/superapp/standin:v2@sha256:" + "ab" * 32
    state = parse_host_state([
        "@@containers",
        json.dumps({"Names": "chat-a", "Image": "reg:5000/superapp/standin:v1",
                    "State": "running", "Status": "Up", "Labels": ""}),
        json.dumps({"Names": "old", "Image": "busybox", "State": "exited", "Status": "",
                    "Labels": ""}),
        "@@container_images", f"/chat-a {pinned}", "/gone reg/x:v1",
        "@@images",
        json.dumps({"Repository": "reg:5000/superapp/standin", "Tag": "<none>",
                    "Digest": "sha256:" + "ab" * 32}),
    ])
    # `docker ps` names a local tag of the image (v1 here); the pin is what was asked for
    assert state.containers["chat-a"].image == pinned
    assert state.containers["old"].image == "busybox" and "gone" not in state.containers
    assert state.repo_digests == {"reg:5000/superapp/standin@sha256:" + "ab" * 32}
    assert state.images == set()  # untagged: present by digest only


CANARY = "CANARY-state-secret-7f3a"


def run_script(root: Path) -> list[str]:
    """The host script, run by sh against `root` (no Docker engine answers: empty sections)."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{root}/no-docker.sock"}
    out = subprocess.run(["sh", "-c", state_script(str(root))], capture_output=True, text=True,
                         env=env, timeout=30, check=True).stdout
    return out.splitlines()


def test_the_script_run_on_a_host_tree_returns_hashes_records_lock_and_ledger(tmp_path):
    files = {
        "/etc/superapp/env/payments.env": f"JWT_SECRET={CANARY}\n",
        "/opt/superapp/compose/payments.yml": "services: {}\n",
        "/opt/superapp/traefik/dynamic/payments.yml": "http: {}\n",
        CRON_GLOB.replace("*", "backup-payments"): "0 2 * * * root true\n",
        "/etc/cron.d/someone-else": "not ours\n",
        SLOT_INFO_PATH: 'superapp_service_slot_info{service="payments",slot="b"} 1\n',
        "/var/lib/node_exporter/textfile/superapp_sidecars.prom": "not hashed\n",
    }
    files["/opt/superapp/traefik/dynamic/food.yml"] = (
        "# food: routes to the live slot.\n# superapp-live-slot: a\nhttp: {}\n")
    record = {"service": "payments", "slot": "b", "image": "reg/x:v2"}
    intent = {"service": "food", "slot": "b", "image": "reg/x:v3"}
    ledger = [{"release": f"r{i}", "result": "success"} for i in range(3)]
    files[f"{SERVICE_STATE_DIR}/payments.json"] = json.dumps(record)
    files[f"{SERVICE_STATE_DIR}/food.json{INTENT_SUFFIX}"] = json.dumps(intent)
    files[LEDGER_PATH] = "".join(json.dumps(e) + "\n" for e in ledger)
    for path, content in files.items():
        (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path.lstrip("/")).write_text(content)

    lines = run_script(tmp_path)
    state = parse_host_state([line.replace(str(tmp_path), "") for line in lines])

    managed = {p: hashlib.sha256(c.encode()).hexdigest() for p, c in files.items()
               if p.startswith(("/etc/superapp/", "/opt/superapp/", CRON_GLOB.rstrip("*")))
               or p == SLOT_INFO_PATH}
    assert SLOT_INFO_PATH in managed
    assert state.files == managed  # every managed file (and ours only), by sha256
    assert CANARY not in "\n".join(lines)  # a secret file's content never leaves the host
    assert state.services == {"payments": record}  # the intent is not a record
    assert state.intents == {"food": intent}
    assert state.routes == {"food": "a"}  # the one line read from a route file
    assert state.ledger == ledger
    assert state.containers == {} and state.images == set()


def test_the_script_on_a_fresh_host_returns_an_empty_state(tmp_path):
    state = parse_host_state(run_script(tmp_path))
    assert (state.files, state.services, state.intents, state.routes, state.ledger) == (
        {}, {}, {}, {}, [])
