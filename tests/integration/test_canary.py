"""The metric-gated canary on the testbed, under load through Traefik, judged by the testbed's
own Prometheus: a good release is promoted step by step with 0 failed requests; a release that
answers 5% of requests with 500 (`flaky`) or 5% in 3 s (`slow`) but stays healthy is stopped on
the first host and taken out, the other hosts untouched; too little traffic is not a pass.

payments, on every app host; the load runs on all three hosts' Traefik for the whole module
(host1, the canary, the heaviest: 40 requests/s, so a 10% step sees about 120 requests). The
fleet is put back on the repo's release at the end, with `--data canary=skip`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.load import Load, Target
from ops.catalog import load_environment

from .conftest import REPO, Testbed
from .release import output, pyinfra, release_copy
from .test_rollout import other_version, versions

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
SERVICE = "payments"
PATH = f"{ENV.services[SERVICE].routes[0]}/api/ping"
STEPS = "10,50,100"
FIRST_WEIGHT = 10


def deploy(tree: Path, *extra: str):
    return pyinfra(tree, "-y", "inventories/local.py", "deploy.py", *extra, timeout=900)


@pytest.fixture(scope="module")
def trees(testbed: Testbed, deployed, tmp_path_factory):
    base = tmp_path_factory.mktemp("canary")
    out = {tag: release_copy(base / tag, {"image_tags": f'{{"{SERVICE}": "{tag}"}}'})
           for tag in ("v2", "v3", "flaky", "slow")}
    # a release whose canary can never see enough traffic, and says so at once
    thin = dict(ENV.settings["canary"], min_requests=10**6, max_wait_seconds=0,
                interval_seconds=10)
    for tag in ("v2", "v3"):
        out[f"thin-{tag}"] = release_copy(base / f"thin-{tag}", {
            "image_tags": f'{{"{SERVICE}": "{tag}"}}', "canary": repr(thin)})
    yield out
    res = deploy(REPO, "--data", "canary=skip", "--data", f"canary_steps={STEPS}")
    assert res.returncode == 0, output(res)[-3000:]
    assert "canary at" not in output(res)  # skip: no canary, even with steps given


@pytest.fixture(scope="module")
def load(testbed: Testbed, trees):
    rates = {"host1": 40, "host2": 10, "host3": 10}
    loads = [Load([Target(h.address, DOMAIN, (PATH,))], rate=rates[h.name], workers=8)
             for h in testbed.hosts if "app" in h.roles]
    for running in loads:
        running.start()
    yield {h.name: running for h, running in zip(
        [h for h in testbed.hosts if "app" in h.roles], loads, strict=True)}
    for running in loads:
        running.stop()


def snapshot(testbed: Testbed, load: dict) -> dict:
    """Per host: requests and failures so far, and what payments runs."""
    return {"counts": {h: (r.report.total, len(r.report.failed)) for h, r in load.items()},
            "records": {h.name: testbed.ssh(h, "cat /var/lib/superapp/services/payments.json",
                                            check=False).stdout for h in testbed.hosts
                        if "app" in h.roles},
            "versions": versions(testbed, SERVICE)}


def failures_since(load: dict, before: dict, host: str) -> list:
    return load[host].report.failed[before["counts"][host][1]:]


def requests_since(load: dict, before: dict, host: str) -> int:
    return load[host].report.total - before["counts"][host][0]


def assert_stopped_on_host1(testbed: Testbed, load: dict, before: dict, res) -> str:
    """The run failed on host1's canary; host1 serves the release it had; host2 and host3 were
    not touched; the only failed requests are the new slot's own 500s, within its share."""
    text = output(res)
    assert res.returncode != 0, text[-3000:]
    assert "Rollout stopped at host1. Not touched: host2, host3." in text, text[-3000:]
    after = snapshot(testbed, load)
    assert after["versions"] == before["versions"], after["versions"]
    for host in ("host2", "host3"):
        assert after["records"][host] == before["records"][host]
        assert failures_since(load, before, host) == []
    route = testbed.ssh(testbed.host("host1"), "cat /opt/superapp/traefik/dynamic/payments.yml")
    assert "# superapp-canary:" not in route.stdout and "weighted:" not in route.stdout
    slots = testbed.ssh(testbed.host("host1"), "docker ps -a --format "
                        "'{{.Label \"superapp.slot\"}}' --filter "
                        "label=superapp.service=payments").stdout.split()
    assert slots and len(set(slots)) == 1, slots  # the new slot's containers are gone
    return text


def test_a_good_release_is_promoted_through_every_step_with_no_failed_request(
        testbed, trees, load):
    before = snapshot(testbed, load)
    tag = other_version(testbed, SERVICE)
    res = deploy(trees[tag], "--data", f"canary_steps={STEPS}")
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    for weight in (10, 50):
        assert re.search(rf"\[host1\]   payments: 5xx 0\.0% vs 0\.0% on the old slot, p99 \d+ ms "
                         rf"vs \d+ ms on the old slot at {weight}%", text), text[-4000:]
    assert "canary at" not in text.split("--> host2")[-1]  # one canary host
    assert set(versions(testbed, SERVICE).values()) == {tag}
    for host in load:
        assert failures_since(load, before, host) == [], host
    print(f"\ncanary {STEPS}: {sum(requests_since(load, before, h) for h in load)} requests, "
          "0 failed")


def hold(testbed: Testbed, load: dict, tree: Path, tag: str, before: dict) -> None:
    """Deploy `tag` with `--data canary=hold` at 50%: held on host1, shown by status."""
    res = deploy(tree, "--data", "canary=hold", "--data", "canary_steps=50,100")
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    assert "host1: the canary is held at 50% as asked (--data canary=hold)" in text, text[-3000:]
    assert "Not touched yet: host2, host3." in text
    held = snapshot(testbed, load)
    assert held["records"] == before["records"]  # the release the fleet had
    assert held["versions"]["host1"] in (before["versions"]["host1"], tag)  # shared
    assert [held["versions"][h] for h in ("host2", "host3")] == [
        before["versions"][h] for h in ("host2", "host3")]
    route = testbed.ssh(testbed.host("host1"), "cat /opt/superapp/traefik/dynamic/payments.yml")
    assert re.search(r"# superapp-canary: [ab] 50\n", route.stdout), route.stdout
    status = output(pyinfra(REPO, "inventories/local.py", "tasks/status.py", timeout=300))
    assert "--> host1 payments: canary held at 50% (" + tag in status, status[-3000:]


def test_a_held_canary_is_continued_by_the_same_deploy_and_a_rollback_would_put_it_back(
        testbed, trees, load):
    before = snapshot(testbed, load)
    tag = other_version(testbed, SERVICE)
    hold(testbed, load, trees[tag], tag, before)
    # what a rollback would do, without doing it (the undo itself is the interrupted canary's,
    # test_crash.py): back to the recorded release, host1 the only host to change
    res = pyinfra(REPO, "inventories/local.py", "tasks/rollback.py", "--dry", timeout=900)
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    assert f"host1 holds a canary of payments {tag} at 50%" in text, text[-3000:]
    assert "1 of 3 host(s) would change, in this order: host1" in text, text[-3000:]
    assert snapshot(testbed, load)["records"] == before["records"]

    res = deploy(trees[tag])  # no canary settings: the testbed's own have no steps
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    assert "[host1] continuing the canary held at 50%: payments" in text, text[-3000:]
    assert "canary at" not in text and "running migrations" not in text  # the hold's stand
    assert set(versions(testbed, SERVICE).values()) == {tag}
    assert "superapp-canary" not in testbed.ssh(
        testbed.host("host1"), "cat /opt/superapp/traefik/dynamic/payments.yml").stdout
    for host in load:
        assert failures_since(load, before, host) == [], host
    print(f"\nhold, rollback --dry, continue: "
          f"{sum(requests_since(load, before, h) for h in load)} requests, 0 failed")


def test_a_release_with_5_percent_of_500s_is_stopped_at_the_first_step(testbed, trees, load):
    before = snapshot(testbed, load)
    res = deploy(trees["flaky"], "--data", f"canary_steps={STEPS}")
    text = assert_stopped_on_host1(testbed, load, before, res)
    m = re.search(r"host1: the canary failed: payments: 5xx (\d+\.\d)% vs 0\.0% on the old slot "
                  rf"at {FIRST_WEIGHT}%", text)
    assert m, text[-3000:]
    assert float(m.group(1)) > 1.0
    failed = failures_since(load, before, "host1")
    sent = requests_since(load, before, "host1")
    assert all(r.status == 500 for r in failed), [(r.status, r.error) for r in failed]
    # Only the canary's share can have failed: at most its weight of what host1 was sent.
    assert len(failed) <= FIRST_WEIGHT / 100 * sent
    print(f"\nflaky: {len(failed)} of {sent} requests to host1 failed (all 500 from the new "
          f"slot, bound {FIRST_WEIGHT / 100 * sent:.0f}); stopped at {FIRST_WEIGHT}%")


def test_a_release_with_a_slow_tail_is_stopped_on_latency(testbed, trees, load):
    before = snapshot(testbed, load)
    res = deploy(trees["slow"], "--data", f"canary_steps={STEPS}")
    text = assert_stopped_on_host1(testbed, load, before, res)
    assert re.search(r"host1: the canary failed: payments: p99 \d+ ms vs \d+ ms on the old slot "
                     r"at \d+% \(limit 1000 ms\)", text), text[-3000:]
    assert failures_since(load, before, "host1") == []  # slow, never failed


def test_too_little_traffic_to_judge_stops_the_run_and_says_how_to_go_on(testbed, trees, load):
    before = snapshot(testbed, load)
    tag = other_version(testbed, SERVICE)
    res = deploy(trees[f"thin-{tag}"], "--data", f"canary_steps={STEPS}")
    text = assert_stopped_on_host1(testbed, load, before, res)
    assert "host1: too little traffic to judge the canary after 10s: payments:" in text
    assert "Re-run with `--data canary=skip`" in text
    for host in load:
        assert failures_since(load, before, host) == [], host


def test_a_bad_canary_setting_is_refused_before_any_host_changes(testbed, trees, load):
    before = snapshot(testbed, load)
    tag = other_version(testbed, SERVICE)
    res = deploy(trees[tag], "--data", "canary=later")
    assert res.returncode != 0
    assert "--data canary='later': expected one of run, skip, hold" in output(res)
    assert snapshot(testbed, load)["records"] == before["records"]
