"""Crash safety on the testbed, under load through Traefik: the deploy is stopped at every step
boundary of the swap (SIGKILL, Ctrl-C, the host's SSH dropped), then re-run; two partial
deploys at once; a deploy that waited on a stale plan; the lock's lease and heartbeat.

Every cell swaps one service (chat) on one host (host2) between two releases, with requests
running through host2's Traefik the whole time: across the matrix, 0 may fail. After each
cell's re-run: the host serves the cell's release, records it, holds no intent, no leftover
container, and the environment's lock is free.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import hvac
import pytest

from bench.load import Load, Target
from ops.catalog import load_environment
from ops.host.state import SLOT_INFO_PATH
from ops.rollout.lock import Holder, lease_expired

from .conftest import REPO, Testbed
from .release import output, pyinfra, release_copy
from .test_rollout import ledger, set_sshd, versions

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
SERVICE = "chat"
ROUTE = ENV.services[SERVICE].routes[0]
LOCK_PATH = ENV.vault_path("locks", "deploy")
LEASE = ENV.settings["deploy_lock_lease_seconds"]
KILL_STEPS = ("staged", "started", "healthy", "switched", "serving", "recorded", "stopped")
INT_STEPS = KILL_STEPS
SSH_STEPS = KILL_STEPS
TESTBED_PY = f"{REPO / '.venv/bin/python'} {REPO / 'testbed/testbed.py'}"


def vault(testbed: Testbed) -> hvac.Client:
    return hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)


def lock_holder(testbed: Testbed) -> Holder | None:
    try:
        answer = vault(testbed).secrets.kv.v2.read_secret_version(
            path=LOCK_PATH, mount_point="secret", raise_on_deleted_version=False)
    except hvac.exceptions.InvalidPath:
        return None
    return Holder.from_data((answer.get("data") or {}).get("data"))


def lock_live(testbed: Testbed) -> bool:
    """Whether some run holds the lock now (a dead run's counts until its lease ran out)."""
    holder = lock_holder(testbed)
    return holder is not None and not lease_expired(holder, datetime.now(UTC))


def wait_lock_free(testbed: Testbed) -> None:
    deadline = time.time() + LEASE + 15
    while lock_live(testbed) and time.time() < deadline:
        time.sleep(1)


def deploy(tree: Path, *extra: str, env: dict | None = None, timeout: float = 600):
    return pyinfra(tree, "-y", "inventories/local.py", "deploy.py", *extra, env=env,
                   timeout=timeout)


def break_prefix(text: str) -> str:
    match = re.search(r"--data break_lock=([0-9a-z]+)", text)
    assert match, f"no break command in:\n{text[-3000:]}"
    return match.group(1)


def rerun_breaking_the_dead_lock(tree: Path) -> str:
    """The re-run after a SIGKILL, within the dead run's lease: a plain re-run is refused, and
    the break command its message prints finishes the job (its output is returned)."""
    refused = deploy(tree, "--limit", "host2")
    assert refused.returncode != 0 and "deploy lock is held by" in output(refused)
    rerun = deploy(tree, "--limit", "host2", "--data",
                   f"break_lock={break_prefix(output(refused))}")
    assert rerun.returncode == 0, output(rerun)[-4000:]
    return output(rerun)


def host2_facts(testbed: Testbed) -> dict:
    """What host2 holds for chat: record, intents, containers, live route."""
    h = testbed.host("host2")

    def run(command: str) -> str:
        return testbed.ssh(h, command, check=False).stdout.strip()

    return {
        "record": json.loads(run("cat /var/lib/superapp/services/chat.json") or "{}"),
        "intents": run("ls /var/lib/superapp/services/ | grep '[.]next$'; true").split(),
        "containers": sorted(run("docker ps -a --format '{{.Names}}' "
                                 "--filter label=superapp.service=chat").split()),
        "route": run("grep '^# superapp-live-slot:' "
                     "/opt/superapp/traefik/dynamic/chat.yml").rsplit(" ", 1)[-1],
        # what Prometheus joins chat's metrics with (ops/render/slot_metrics.py)
        "slot_info": run(f"grep 'service=\"chat\"' {SLOT_INFO_PATH}"),
    }


def assert_settled(testbed: Testbed, tag: str) -> None:
    facts = host2_facts(testbed)
    slot = facts["record"]["slot"]
    assert versions(testbed, SERVICE)["host2"] == tag
    assert facts["record"]["image"].endswith(f":{tag}") and facts["route"] == slot
    assert facts["intents"] == [], facts
    assert facts["containers"] == [f"chat-{slot}"], facts  # no leftover of the other slot
    assert f'slot="{slot}",version="{tag}",' in facts["slot_info"], facts
    assert not lock_live(testbed)
    for entry in ledger(testbed, testbed.host("host2")):  # every line a whole JSON record
        assert entry.get("release") or entry.get("kind")


@pytest.fixture(scope="module")
def trees(testbed: Testbed, deployed, tmp_path_factory):
    """Two releases that differ only in chat's tag; host2 starts on the first. The fleet is
    put back on the repo's release when the module is done."""
    base = tmp_path_factory.mktemp("crash")
    out = {tag: release_copy(base / tag, {"image_tags": f'{{"chat": "{tag}"}}'})
           for tag in ("v2", "v3")}
    res = deploy(out["v2"], "--limit", "host2")
    assert res.returncode == 0, output(res)[-3000:]
    yield out
    wait_lock_free(testbed)  # a cell that failed may leave a dead run's lock
    res = pyinfra(REPO, "-y", "inventories/local.py", "deploy.py", timeout=900)
    assert res.returncode == 0, output(res)[-3000:]


@pytest.fixture(scope="module")
def load(testbed: Testbed, trees):
    """Requests to chat through host2's Traefik for the whole module."""
    target = Target(testbed.host("host2").address, DOMAIN, (f"{ROUTE}/api/ping",))
    with Load([target], rate=20, workers=2) as running:
        yield running


class Cells:
    """Alternates the target release cell after cell."""

    def __init__(self, trees: dict[str, Path]):
        self.trees, self.tag = trees, "v2"

    def next(self) -> tuple[str, Path]:
        self.tag = "v3" if self.tag == "v2" else "v2"
        return self.tag, self.trees[self.tag]


@pytest.fixture(scope="module")
def cells(trees) -> Cells:
    return Cells(trees)


def fault_env(step: str, how: str, command: str = "") -> dict:
    env = {"SUPERAPP_FAULT": f"after:{step}@host2", "SUPERAPP_FAULT_SIGNAL": how}
    if command:
        env["SUPERAPP_FAULT_EXEC"] = command
    return env


@pytest.mark.parametrize("step", KILL_STEPS)
def test_sigkill_at_each_step_then_a_rerun_finishes_the_job(testbed, cells, load, step):
    tag, tree = cells.next()
    killed = deploy(tree, "--limit", "host2", env=fault_env(step, "KILL"))
    assert killed.returncode == -signal.SIGKILL, output(killed)[-3000:]
    assert f"test fault: stopping the controller after {step}" in output(killed)
    assert lock_live(testbed)  # a dead run's lock stays, for its lease
    if step == "stopped":  # the swap was complete: nothing to do, and no lock needed for that
        rerun = deploy(tree, "--limit", "host2")
        assert rerun.returncode == 0 and "nothing to change on any host" in output(rerun)
        wait_lock_free(testbed)  # the dead run's lock frees itself
    else:
        rerun_breaking_the_dead_lock(tree)
    assert_settled(testbed, tag)


def test_sigkill_mid_canary_then_a_rerun_puts_the_shared_route_back_first(testbed, cells, load):
    """A controller killed while the canary shares traffic leaves a weighted route: the next
    run puts the live slot's route back, sees Traefik serve it, and only then removes the new
    slot (the module's load counts every request lost on the way: none may be)."""
    tag, tree = cells.next()
    killed = deploy(tree, "--limit", "host2", "--data", "canary_steps=10,100",
                    env=fault_env("canary-10", "KILL"))
    assert killed.returncode == -signal.SIGKILL, output(killed)[-3000:]
    shared = testbed.ssh(testbed.host("host2"), "grep '^# superapp-canary:' "
                         "/opt/superapp/traefik/dynamic/chat.yml").stdout.split()
    assert shared[-1] == "10", shared  # the route shares traffic, 10% to the new slot
    text = rerun_breaking_the_dead_lock(tree)
    assert "an interrupted canary left traffic shared: chat back to the live slot" in text
    assert text.index("interrupted canary") < text.index("removing what an interrupted run left")
    assert_settled(testbed, tag)


def test_ctrl_c_mid_canary_undoes_it(testbed, cells, load):
    tag, tree = cells.next()
    before = versions(testbed, SERVICE)["host2"]
    stopped = deploy(tree, "--limit", "host2", "--data", "canary_steps=10,100",
                     env=fault_env("canary-10", "INT"))
    text = output(stopped)
    assert "interrupted (Ctrl-C) while rolling host2: its changes were undone" in text, \
        text[-3000:]
    assert versions(testbed, SERVICE)["host2"] == before
    assert not lock_live(testbed)
    rerun = deploy(tree, "--limit", "host2")
    assert rerun.returncode == 0, output(rerun)[-4000:]
    assert_settled(testbed, tag)


@pytest.mark.parametrize("step", INT_STEPS)
def test_ctrl_c_at_each_step_then_a_rerun_finishes(testbed, cells, load, step):
    """Before `recorded` Ctrl-C undoes the swap; after it, traffic is already on the new
    release and the message says so. Either way the lock is released and a re-run finishes."""
    tag, tree = cells.next()
    before = versions(testbed, SERVICE)["host2"]
    stopped = deploy(tree, "--limit", "host2", env=fault_env(step, "INT"))
    text = output(stopped)
    assert stopped.returncode not in (0, -signal.SIGKILL), text[-3000:]
    if KILL_STEPS.index(step) < KILL_STEPS.index("recorded"):
        assert "interrupted (Ctrl-C) while rolling host2: its changes were undone" in text
        assert versions(testbed, SERVICE)["host2"] == before  # undone: the old release serves
    else:
        assert "traffic is on the new containers and recorded" in text
        assert versions(testbed, SERVICE)["host2"] == tag
    assert not lock_live(testbed)  # released on the way out
    rerun = deploy(tree, "--limit", "host2")
    assert rerun.returncode == 0, output(rerun)[-4000:]
    assert_settled(testbed, tag)


@pytest.mark.parametrize("step", SSH_STEPS)
def test_ssh_dropped_at_a_step_then_host_back_and_rerun(testbed, cells, load, step):
    tag, tree = cells.next()
    try:
        lost = deploy(tree, "--limit", "host2",
                      env=fault_env(step, "EXEC", f"{TESTBED_PY} sshd host2 stop"))
    finally:
        set_sshd("host2", "start")
    assert lost.returncode != 0, output(lost)[-3000:]
    assert "host2" in output(lost) and not lock_live(testbed)
    rerun = deploy(tree, "--limit", "host2")
    assert rerun.returncode == 0, output(rerun)[-4000:]
    assert_settled(testbed, tag)


SECRET_FILES = re.compile(r"^/etc/superapp/env/|/redis\.conf$|/users\.acl$|/load\.redis$|"
                          r"/alertmanager\.yml$|/pgpass$")


def test_a_run_killed_mid_upload_leaves_no_secret_readable_and_the_rerun_no_temp_file(
        testbed, cells, load):
    tag, tree = cells.next()
    killed = deploy(tree, "--limit", "host2", env=fault_env("uploading", "KILL"))
    assert killed.returncode == -signal.SIGKILL, output(killed)[-3000:]
    h = testbed.host("host2")
    staged = testbed.ssh(h, "find /etc/superapp /opt/superapp -path '*/.staging/*' -type f"
                         ).stdout.split()
    assert staged, "the run was stopped after its first upload: that file is staged"
    readable = testbed.ssh(h, "setpriv --reuid=65534 --regid=65534 --clear-groups find "
                              "/etc/superapp /opt/superapp -type f -readable 2>/dev/null; true"
                           ).stdout.split()
    leaked = [p for p in readable if SECRET_FILES.search(p) or "/.staging/" in p]
    assert not leaked, f"readable by nobody: {leaked}"
    rerun_breaking_the_dead_lock(tree)
    left = testbed.ssh(h, "find /etc/superapp /opt/superapp \\( -path '*/.staging/*' -o "
                          "-name '*.tmp-*' -o -name '*.prev' \\) -type f").stdout.split()
    assert left == []
    assert_settled(testbed, tag)


def test_no_request_failed_across_the_matrix(load):
    report = load.stop()
    assert report.total > 500, report.total
    assert not report.failed, report.failures_by_kind()


def start(tree: Path, *extra: str, yes: bool = True) -> subprocess.Popen:
    return subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), *(["-y"] if yes else []),
                             "inventories/local.py", "deploy.py", *extra], cwd=tree, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def test_two_partial_deploys_at_once_one_is_refused_by_the_lock(testbed, cells):
    """Both start together; each holds its lock for at least 20 s (a slow step), so whichever
    takes it first still holds it when the other asks, on another host."""
    tag, tree = cells.next()
    runs = [subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
                              "deploy.py", "--limit", host], cwd=tree, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env={**os.environ, **fault_env("healthy", "EXEC", "sleep 20")
                                  | {"SUPERAPP_FAULT": f"after:healthy@{host}"}})
            for host in ("host2", "host3")]
    outs = [p.communicate(timeout=600)[0] for p in runs]
    codes = [p.returncode for p in runs]
    assert sorted(codes)[0] == 0 and sorted(codes)[1] != 0, outs
    refused = outs[codes.index(sorted(codes)[1])]
    assert "deploy lock is held by" in refused and "break_lock=" in refused
    assert not lock_live(testbed)
    if codes[0] != 0:  # host3 won the race: host2 takes the cell's release now, so the cells
        rerun = deploy(tree, "--limit", "host2")  # after this one start from a known state
        assert rerun.returncode == 0, output(rerun)[-4000:]
    assert_settled(testbed, tag)


def test_a_deploy_that_waited_never_acts_on_a_stale_plan(testbed, cells):
    tag, tree = cells.next()
    assert versions(testbed, SERVICE)["host2"] != tag  # this run plans a change
    waiting = start(tree, "--limit", "host2", yes=False)  # plans, then waits for Enter
    seen = ""
    deadline = time.time() + 300
    while "skip this step with -y" not in seen and time.time() < deadline:
        line = waiting.stdout.readline()
        if not line:
            break
        seen += line
    assert "skip this step with -y" in seen, seen[-3000:]
    other = deploy(tree, "--limit", "host2")  # someone else deploys meanwhile
    assert other.returncode == 0, output(other)[-3000:]
    out, _ = waiting.communicate("\n", timeout=300)
    assert waiting.returncode != 0
    assert "host2 changed since this run planned" in out and "nothing was changed" in out
    assert_settled(testbed, tag)


def test_a_live_holder_outlasting_its_lease_keeps_the_lock(testbed, cells):
    tag, tree = cells.next()
    env = fault_env("healthy", "EXEC", f"sleep {LEASE + 15}")  # a long step; the run lives
    slow = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
                             "deploy.py", "--limit", "host2"], cwd=tree, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    try:
        time.sleep(LEASE + 8)  # past the lease since the run took its lock
        holder = lock_holder(testbed)
        assert holder is not None
        beat = (datetime.now(UTC) - datetime.fromisoformat(holder.heartbeat)).total_seconds()
        # the other release is a change on host3 whatever it runs now, so this run needs the lock
        other = deploy(cells.trees["v3" if tag == "v2" else "v2"], "--limit", "host3")
        assert other.returncode != 0 and "deploy lock is held by" in output(other)
    except BaseException:
        slow.kill()  # a failed check must not leave a live run holding the next cell's lock
        raise
    out, _ = slow.communicate(timeout=600)
    assert slow.returncode == 0, out[-3000:]
    assert "stopped:" not in out  # it never lost its lock
    assert beat < LEASE, f"last heartbeat {beat:.0f} s old"
    assert_settled(testbed, tag)


def test_a_dead_runs_lock_frees_itself_after_the_lease_for_deploy_and_rollback(testbed, cells):
    tag, tree = cells.next()
    killed = deploy(tree, "--limit", "host2", env=fault_env("healthy", "KILL"))
    assert killed.returncode == -signal.SIGKILL
    died = time.time()
    rollback = pyinfra(REPO, "-y", "inventories/local.py", "tasks/rollback.py")
    text = output(rollback)
    assert rollback.returncode != 0 and "deploy lock is held by" in text, text[-3000:]
    assert "pyinfra -y inventories/local.py tasks/rollback.py --data break_lock=" in text
    time.sleep(max(0.0, LEASE + 2 - (time.time() - died)))
    rerun = deploy(tree, "--limit", "host2")  # no break needed: the lease ran out
    assert rerun.returncode == 0, output(rerun)[-4000:]
    assert "broke the" not in output(rerun)
    assert_settled(testbed, tag)


def test_a_broken_lock_is_recorded_in_the_ledger(testbed):
    entries = [e for e in ledger(testbed, testbed.host("host2")) if e.get("kind") == "lock-broken"]
    assert entries, "the matrix broke locks: each break is in the ledger"
    assert all(e["holder_token"] and e["holder"] and e["by"] for e in entries)

