"""Central logs on the testbed (ops/render/logs.py): every container's lines reach the store on
the monitoring host; a stopped store loses nothing (each host queues on disk), lines arrive
in order per container; a swap's old slot keeps its last lines; one request id finds the
access line and the service's line; `make logs` (tasks/logs.py) merges, filters, follows.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
import uuid
from collections import defaultdict

import pytest

from bench.load import Load, Target
from ops.catalog import load_environment
from ops.render.logs import (
    HEARTBEAT_METRICS_SCRIPT,
    HEARTBEAT_SCRIPT,
    RETENTION_CRON,
    SHIPPER_CONTAINER,
    SHIPPER_SPOOL,
    STORE_CONTAINER,
    STORE_DIR,
)

from .conftest import REPO, Testbed, q
from .release import deploy, output, pyinfra, release_copy
from .test_observability import get_json, prometheus, query

pytestmark = pytest.mark.integration
ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
SERVICES = ("food", "chat")
LINE = re.compile(r"^(\S+) (\S+) (\S+): (.*)$")


def make_logs(service: str, *data: str, timeout: float = 120) -> list[tuple[str, ...]]:
    """`make logs` for `service`: (ts, host, container, message) per line it printed."""
    args = ["inventories/local.py", "tasks/logs.py", "--data", f"service={service}"]
    for d in data:
        args += ["--data", d]
    res = pyinfra(REPO, *args, timeout=timeout)
    assert res.returncode == 0, output(res)[-3000:]
    return [m.groups() for line in res.stdout.splitlines() if (m := LINE.match(line))]


def monitoring(testbed: Testbed):
    return next(h for h in testbed.hosts if "monitoring" in h.roles)


def live_container(testbed: Testbed, host, service: str) -> str:
    out = testbed.ssh(host, "docker ps --format '{{.Names}}' --filter "
                            + q(f"label=superapp.service={service}")
                            + " --filter label=superapp.role=serve").stdout.split()
    assert len(out) == 1, out
    return out[0]


def emit(testbed: Testbed, host, container: str, marker: str, count: int) -> None:
    """`count` lines on the container's stdout, as its own process would write them."""
    script = f'i=0; while [ $i -lt {count} ]; do echo "{marker} $i"; i=$((i+1)); done'
    testbed.ssh(host, f"docker exec {container} sh -c {q(script + ' > /proc/1/fd/1')}")


def wait_for(service: str, marker: str, count: int, timeout: float = 180) -> list[tuple]:
    deadline = time.time() + timeout
    while True:
        lines = [ln for ln in make_logs(service, "since=30m", f"grep={marker}")
                 if ln[3].startswith(marker)]
        if len(lines) >= count or time.time() > deadline:
            return lines
        time.sleep(3)


def test_with_the_store_stopped_1000_lines_wait_on_the_hosts_then_arrive_in_order(
        testbed, deployed):
    store_host = monitoring(testbed)
    app_hosts = [h for h in testbed.hosts if "app" in h.roles][:2]
    marker = f"logtest-{uuid.uuid4().hex[:10]}"
    containers = [(h, live_container(testbed, h, s)) for h in app_hosts for s in SERVICES]
    per_container = 1000 // len(containers)
    targets = [Target(h.address, DOMAIN, tuple(f"{ENV.services[s].routes[0]}/api/ping"
                                                 for s in SERVICES)) for h in app_hosts]
    t0 = time.time()
    with Load(targets, rate=10, workers=2) as load:
        testbed.ssh(store_host, f"docker stop {STORE_CONTAINER}")
        try:
            for h, c in containers:
                emit(testbed, h, c, marker, per_container)
            time.sleep(8)  # the shippers have read the lines and cannot deliver them
            stored = testbed.ssh(store_host, f"grep -rlF {q(marker)} {STORE_DIR} || true")
            assert stored.stdout.strip() == "", "the store was stopped but has the lines"
            for h in app_hosts:  # waiting on disk, not in memory only
                spool = testbed.ssh(h, f"ls {SHIPPER_SPOOL}").stdout.split()
                assert any(f.startswith("forward.") and f[-1].isdigit() for f in spool), spool
        finally:
            testbed.ssh(store_host, f"docker start {STORE_CONTAINER}")
        lines = {s: wait_for(s, marker, per_container * len(app_hosts)) for s in SERVICES}
    report = load.report
    print(f"store down {time.time() - t0:.0f}s in all; {report.total} requests during it, "
          f"{len(report.failed)} failed")
    assert report.total > 0 and report.failed == [], report.failures_by_kind()
    got: dict[tuple, list[int]] = defaultdict(list)
    for found in lines.values():
        for _ts, host, container, msg in found:
            got[(host, container)].append(int(msg.split()[1]))
    expected = {(h.name, c): list(range(per_container)) for h, c in containers}
    assert sum(len(v) for v in got.values()) == per_container * len(containers)
    assert dict(got) == expected  # every line, once, in the order each container wrote them


@pytest.fixture(scope="module")
def swapped(testbed, deployed, tmp_path_factory):
    """food on host2 swapped to v2 (one service, one host), and the old slot's container name
    and marker from before the swap; the repo's release is deployed back afterwards."""
    host2 = testbed.host("host2")
    old = live_container(testbed, host2, "food")
    marker = f"lastwords-{uuid.uuid4().hex[:10]}"
    emit(testbed, host2, old, marker, 3)
    tree = release_copy(tmp_path_factory.mktemp("logs") / "v2", {"image_tags": '{"food": "v2"}'})
    res = deploy(tree, "--limit", "host2")
    assert res.returncode == 0, output(res)[-3000:]
    ledger = testbed.ssh(host2, "tail -n 1 /var/lib/superapp/releases.jsonl").stdout
    yield {"old": old, "new": live_container(testbed, host2, "food"), "marker": marker,
           "release": json.loads(ledger)["release"]}
    res = pyinfra(REPO, "-y", "inventories/local.py", "deploy.py", timeout=900)
    assert res.returncode == 0, output(res)[-3000:]


def test_a_swapped_out_slot_keeps_its_last_lines_in_the_store(testbed, swapped):
    host2 = testbed.host("host2")
    gone = testbed.ssh(host2, "docker ps -a --format '{{.Names}}' --filter "
                              + q(f"name=^{swapped['old']}$"))
    assert gone.stdout.strip() == "", "the old slot's container should be removed by the swap"
    deadline = time.time() + 60
    while True:
        lines = [ln for ln in make_logs("food", "since=30m") if ln[1] == "host2"
                 and ln[2] == swapped["old"]]
        last = [ln[3] for ln in lines[-5:]]
        if any("exiting 0" in m for m in last) or time.time() > deadline:
            break
        time.sleep(3)
    msgs = [ln[3] for ln in lines]
    assert [m for m in msgs if m.startswith(swapped["marker"])] == [
        f"{swapped['marker']} {i}" for i in range(3)]
    assert any("SIGTERM received, draining" in m for m in msgs), msgs[-5:]
    assert "exiting 0" in msgs[-1], msgs[-5:]  # its very last line, written as it stopped


def test_release_selects_the_containers_that_release_started(testbed, swapped):
    host2 = testbed.host("host2")
    emit(testbed, host2, swapped["new"], f"after-{swapped['marker']}", 1)
    time.sleep(3)
    lines = make_logs("food", "since=30m", f"release={swapped['release']}")
    # the new slot and the release's migration run, nothing of the old slot or other hosts
    assert {(ln[1], ln[2]) for ln in lines} == {("host2", swapped["new"]),
                                                 ("host2", "food-migrate")}
    assert any(ln[3] == f"after-{swapped['marker']} 0" for ln in lines)
    refused = pyinfra(REPO, "inventories/local.py", "tasks/logs.py", "--data", "service=food",
                      "--data", "release=nope")
    assert refused.returncode != 0 and "RELEASE=nope: not in the ledger" in output(refused)


def test_one_request_id_finds_the_access_line_and_the_service_line(testbed, deployed):
    host1 = testbed.host("host1")
    route = ENV.services["food"].routes[0]
    sent = f"rid-{uuid.uuid4().hex[:12]}"
    answered = []
    for header in ({"X-Request-Id": sent}, {}):
        conn = http.client.HTTPConnection(host1.address, 80, timeout=10)
        conn.request("GET", f"{route}/api/ping", headers={"Host": DOMAIN, **header})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        answered.append(resp.getheader("X-Request-Id"))
        conn.close()
    assert answered[0] == sent and answered[1] and answered[1] != sent  # made by the service
    for rid in answered:
        deadline = time.time() + 60
        while True:
            access = [ln for ln in make_logs("traefik", "since=10m", f"grep={rid}")
                      if ln[1] == "host1"]
            service = [ln for ln in make_logs("food", "since=10m", f"grep={rid}")
                       if ln[1] == "host1"]
            if (access and service) or time.time() > deadline:
                break
            time.sleep(3)
        assert len(access) == 1 and len(service) == 1, (rid, access, service)
        assert json.loads(service[0][3])["request_id"] == rid
        entry = json.loads(access[0][3])
        assert rid in (entry.get("request_X-Request-Id"), entry.get("downstream_X-Request-Id"))
        assert entry["RequestPath"].endswith("/api/ping")


def test_follow_prints_new_lines_as_they_arrive(testbed, deployed):
    host1 = testbed.host("host1")
    marker = f"follow-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), "inventories/local.py",
                             "tasks/logs.py", "--data", "service=chat", "--data", "since=1m",
                             "--data", f"grep={marker}", "--data", "follow=1"],
                            cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        time.sleep(6)  # it has printed what there was (nothing with the marker)
        emit(testbed, host1, live_container(testbed, host1, "chat"), marker, 2)
        seen, deadline = [], time.time() + 60
        while time.time() < deadline and len(seen) < 2:
            m = LINE.match(proc.stdout.readline().strip())
            if m and m.group(4).startswith(marker):
                seen.append(m.group(4))
        assert seen == [f"{marker} 0", f"{marker} 1"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_retention_job_deletes_days_older_than_configured_and_keeps_the_rest(
        testbed, deployed):
    days = ENV.settings["logs"]["retention_days"]
    host = monitoring(testbed)
    cron = testbed.ssh(host, f"cat {RETENTION_CRON}").stdout
    command = next(line for line in cron.splitlines() if " root " in line).split(" root ", 1)[1]
    d = f"{STORE_DIR}/zz-retention-test"
    testbed.ssh(host, f"mkdir -p {d} && touch -d '{days + 1} days ago' {d}/old.jsonl && "
                      f"touch -d '{days - 1} days ago' {d}/kept.jsonl")
    try:
        testbed.ssh(host, command)
        assert testbed.ssh(host, f"ls {d}").stdout.split() == ["kept.jsonl"]
    finally:
        testbed.ssh(host, f"rm -rf {d}")


def heartbeats(testbed: Testbed) -> dict[str, int]:
    """Run the monitoring host's metrics job now: host -> its newest heartbeat in the store."""
    mon = monitoring(testbed)
    testbed.ssh(mon, HEARTBEAT_METRICS_SCRIPT)
    text = testbed.ssh(mon, "cat /var/lib/node_exporter/textfile/superapp_logs.prom").stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^superapp_logs_heartbeat_timestamp_seconds\{shipper="([^"]+)"\} (\d+)$', text, re.M)}


def test_a_stopped_shipper_shows_as_its_hosts_heartbeat_stopping_then_catching_up(
        testbed, deployed):
    """Cron writes every host's heartbeat each minute; here the scripts also run at once. With
    host2's shipper stopped, host1's new heartbeat reaches the store and host2's does not;
    started again, host2's waiting line arrives: LogsNotShipped's metric, end to end."""
    hosts = {h.name: h for h in testbed.hosts}
    victim = hosts["host2"]
    start = int(time.time())
    testbed.ssh(victim, f"docker stop {SHIPPER_CONTAINER}")
    try:
        for h in hosts.values():
            testbed.ssh(h, HEARTBEAT_SCRIPT)
        deadline = time.time() + 60
        while (seen := heartbeats(testbed)).get("host1", 0) < start:
            assert time.time() < deadline, f"host1's heartbeat never arrived: {seen}"
            time.sleep(2)
        assert seen.get("host3", 0) >= start, seen
        assert seen.get("host2", 0) < start, seen  # written, but its shipper is stopped
    finally:
        testbed.ssh(victim, f"docker start {SHIPPER_CONTAINER}")
    deadline = time.time() + 90
    while (seen := heartbeats(testbed)).get("host2", 0) < start:
        assert time.time() < deadline, f"host2's waiting heartbeat never arrived: {seen}"
        time.sleep(2)
    print(f"heartbeats after the shipper came back: { {h: ts - start for h, ts in seen.items()} }")
    # and the live Prometheus sees every host fresh: LogsNotShipped's expression is empty
    base = prometheus(testbed)
    rules = {r["name"]: r for g in get_json(f"{base}/rules?type=alert")["data"]["groups"]
             for r in g["rules"]}
    expr = rules["LogsNotShipped"]["query"]
    assert all(f'shipper="{h}"' in expr for h in hosts)  # one absent() per host
    deadline = time.time() + 60
    while (result := query(base, expr)["data"]["result"]):
        assert time.time() < deadline, result
        time.sleep(3)
