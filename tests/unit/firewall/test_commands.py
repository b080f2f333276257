"""ops/firewall/commands.py, run for real: scratch network namespaces (`safw-test-*`), a veth
pair to the root namespace playing the controller, nft inside. Everything is removed after."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ops.catalog import load_environment
from ops.catalog.model import Host
from ops.firewall import (
    apply_command,
    confirm_command,
    render_ruleset,
    save_command,
)
from ops.host.commands import sh

TABLE = "superapp"
SECONDS = 2
PORT = 2222  # the "SSH" port of the scratch host: the controller's new connection goes there

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@dataclass
class Ns:
    name: str
    controller: str  # the root namespace's end of the veth
    address: str  # the scratch host's address
    state: Path

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, timeout=30, check=check)

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], check=check)

    def table(self) -> str | None:
        done = self.run(["nft", "list", "table", "inet", TABLE], check=False)
        return done.stdout if done.returncode == 0 else None

    def reachable(self) -> bool:
        """The controller's NEW connection to the host's SSH port."""
        try:
            with socket.create_connection((self.address, PORT), timeout=0.5):
                return True
        except OSError:
            return False


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def kill_timer(state: Path) -> None:
    """os.killpg, never /usr/bin/kill: procps-ng 4.0.2 (Debian 12) runs `kill -TERM -<pgid>`
    as kill(-1, SIGTERM), every process of the user (seen with strace); the scripts on the hosts
    use the shell's builtin kill, which does not."""
    for name in ("pending", "reverting", "confirmed"):
        pid = state / name
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid.read_text().strip()), signal.SIGTERM)


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Ns]:
    tag = secrets.token_hex(2)
    net = 10 + int(tag, 16) % 200
    name, host_if, ns_if = f"safw-test-{tag}", f"safw-test-{tag}r", f"safw-test-{tag}n"
    space = Ns(name, f"10.254.{net}.1", f"10.254.{net}.2", tmp_path / "state")
    listener = None
    ip("netns", "add", name)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", name)
        ip("addr", "add", f"{space.controller}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        space.run(["ip", "addr", "add", f"{space.address}/30", "dev", ns_if])
        space.run(["ip", "link", "set", ns_if, "up"])
        space.run(["ip", "link", "set", "lo", "up"])
        listener = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-m", "http.server", str(PORT),
             "--bind", space.address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        for _ in range(100):
            if space.reachable():
                break
            time.sleep(0.05)
        assert space.reachable(), "the scratch listener did not start"
        yield space
    finally:
        kill_timer(space.state)
        if listener:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def ruleset(space: Ns, admin: str) -> str:
    """The real renderer, for a one-host environment at the scratch address; SSH on PORT."""
    env = load_environment("local")
    host = Host("scratch", space.address, ("app", "db", "monitoring"), space.address)
    env = replace(env, hosts=(host,), settings={**env.settings, "ssh_port": PORT})
    return render_ruleset(env, host, [admin])


def write(space: Ns, text: str, name: str = "new.nft") -> str:
    path = space.state.parent / name
    path.write_text(text)
    return str(path)


def apply(space: Ns, path: str) -> subprocess.CompletedProcess[str]:
    argv = apply_command(path, SECONDS, str(space.state), TABLE)
    return space.sh(sh(*argv), check=False)


def confirm(space: Ns) -> subprocess.CompletedProcess[str]:
    return space.sh(sh(*confirm_command(str(space.state))), check=False)


def wait_out_the_timer() -> None:
    time.sleep(SECONDS + 1.5)


def test_builders_exact_argv() -> None:
    argv = apply_command("/etc/superapp/firewall/ruleset.nft", 45)
    assert argv[0:2] == ["sh", "-c"]
    assert argv[3:] == ["firewall-apply", "/var/lib/superapp/firewall",
                        "/etc/superapp/firewall/ruleset.nft", "45", "superapp"]
    assert confirm_command()[3:] == ["firewall-confirm", "/var/lib/superapp/firewall"]
    with pytest.raises(ValueError, match="seconds"):
        apply_command("/x", 0)


def test_apply_and_confirm_keeps_the_new_rules(ns: Ns) -> None:
    done = apply(ns, write(ns, ruleset(ns, ns.controller)))
    assert done.returncode == 0, done.stderr
    applied = ns.table()
    assert applied and "policy drop" in applied
    assert ns.reachable()  # the controller's new connection gets through...
    assert confirm(ns).returncode == 0  # ...so it confirms
    wait_out_the_timer()
    assert ns.table() == applied
    assert not (ns.state / "reverted").exists()
    assert (ns.state / "saved.nft").stat().st_mode & 0o777 == 0o600
    assert ns.state.stat().st_mode & 0o777 == 0o700


def test_without_confirm_the_previous_table_comes_back_exactly(ns: Ns) -> None:
    ns.run(["nft", "-f", write(ns, ruleset(ns, "192.0.2.7"), "old.nft")])
    before = ns.table()
    assert before and "192.0.2.7" in before
    assert apply(ns, write(ns, ruleset(ns, ns.controller))).returncode == 0
    assert ns.table() != before
    wait_out_the_timer()
    assert ns.table() == before
    assert (ns.state / "reverted").exists()
    assert confirm(ns).returncode == 1  # too late: nothing to confirm


def test_without_confirm_and_no_previous_table_the_table_is_gone(ns: Ns) -> None:
    assert ns.table() is None
    assert apply(ns, write(ns, ruleset(ns, ns.controller))).returncode == 0
    assert ns.table() is not None
    wait_out_the_timer()
    assert ns.table() is None


def test_a_ruleset_nft_refuses_is_never_applied(ns: Ns) -> None:
    broken = ruleset(ns, ns.controller).replace(f"tcp dport {PORT}", "tcp dport 99999")
    done = apply(ns, write(ns, broken))
    assert done.returncode == 3 and "nothing applied" in done.stderr
    assert ns.table() is None
    assert not (ns.state / "pending").exists() and not (ns.state / "saved.nft").exists()


def test_a_ruleset_locking_the_controller_out_is_reverted(ns: Ns) -> None:
    done = apply(ns, write(ns, ruleset(ns, "192.0.2.7")))  # SSH only from someone else
    assert done.returncode == 0, done.stderr
    assert not ns.reachable()  # the new connection fails: the controller does not confirm
    wait_out_the_timer()
    assert ns.table() is None
    assert ns.reachable()


def test_a_second_apply_waits_for_the_first_to_be_confirmed(ns: Ns) -> None:
    path = write(ns, ruleset(ns, ns.controller))
    assert apply(ns, path).returncode == 0
    second = apply(ns, path)
    assert second.returncode == 4, second.stderr
    assert confirm(ns).returncode == 0
    assert apply(ns, path).returncode == 0
    assert confirm(ns).returncode == 0


def test_save_command_records_the_table_or_its_absence(ns: Ns) -> None:
    save = sh(*save_command(str(ns.state), TABLE))
    ns.sh(save)
    absent = (ns.state / "saved.nft").read_text()
    assert absent == f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    ns.run(["nft", "-f", write(ns, ruleset(ns, ns.controller))])
    ns.sh(save)
    assert (ns.state / "saved.nft").read_text() == absent + ns.table()


# Docker's publish, played in three namespaces: the controller (root) -> the host (`ns`,
# forwarding) -> a "container" namespace behind a second veth; the host DNATs :80 to the
# container's :8000 and an `ip filter` FORWARD chain accepts DNATed traffic, as Docker's does.
LISTENER = ("import http.server, sys\n"
            "server = http.server.HTTPServer((sys.argv[1], 8000), "
            "http.server.BaseHTTPRequestHandler)\n"
            "print('ready', flush=True)\n"
            "server.serve_forever()\n")
DOCKER_LIKE = """
table ip safw_nat {
  chain prerouting { type nat hook prerouting priority dstnat; tcp dport 80 dnat to %s:8000; }
}
table ip safw_filter {
  chain FORWARD { type filter hook forward priority filter; policy drop;
    ct state established,related accept; ct status dnat accept; }
}
"""


@pytest.fixture
def container(ns: Ns) -> Iterator[str]:
    tag = ns.name.removeprefix("safw-test-")
    name, host_if, c_if = f"safw-test-{tag}c", f"safw-test-{tag}x", f"safw-test-{tag}y"
    net = ns.address.split(".")[2]
    gateway, address = f"10.253.{net}.1", f"10.253.{net}.2"
    listener = None
    ip("netns", "add", name)
    try:
        ns.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", c_if])
        ns.run(["ip", "link", "set", c_if, "netns", name])
        ns.run(["ip", "addr", "add", f"{gateway}/30", "dev", host_if])
        ns.run(["ip", "link", "set", host_if, "up"])
        ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for argv in (["ip", "addr", "add", f"{address}/30", "dev", c_if],
                     ["ip", "link", "set", c_if, "up"], ["ip", "link", "set", "lo", "up"],
                     ["ip", "route", "add", "default", "via", gateway]):
            subprocess.run(["ip", "netns", "exec", name, *argv], check=True, timeout=30)
        listener = subprocess.Popen(  # says "ready" once it listens: no race with the checks
            ["ip", "netns", "exec", name, sys.executable, "-c", LISTENER, address],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True)
        ready, _, _ = select.select([listener.stdout], [], [], 60)
        assert ready and listener.stdout.readline().strip() == "ready", "no listener"
        ns.run(["nft", "-f", write(ns, DOCKER_LIKE % address, "docker.nft")])
        yield address
    finally:
        if listener:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def published_reachable(ns: Ns) -> bool:
    """The listener is up (the fixture waited for it): a connection either completes or its
    SYN is dropped. The timeout is generous because make test runs this on a busy machine."""
    try:
        with socket.create_connection((ns.address, 80), timeout=3):
            return True
    except OSError:
        return False


def proxies_ruleset(ns: Ns, proxies: list[str]) -> str:
    env = load_environment("local")
    host = Host("scratch", ns.address, ("app", "monitoring"), ns.address)
    env = replace(env, hosts=(host,), settings={**env.settings, "upstream_proxies": proxies})
    return render_ruleset(env, host, [ns.controller])


def test_the_forward_chain_drops_a_published_port_docker_accepts(ns: Ns, container: str) -> None:
    assert published_reachable(ns)  # Docker-like accept: open without our table
    ns.run(["nft", "-f", write(ns, proxies_ruleset(ns, ["192.0.2.9"]))])
    assert not published_reachable(ns)  # not an upstream proxy: our forward chain drops it
    ns.run(["nft", "-f", write(ns, proxies_ruleset(ns, [ns.controller]))])
    assert published_reachable(ns)  # an upstream proxy: through
