"""Fixtures for tests against the local testbed (`make testbed-up`; `make test` brings it up).

The testbed must be running: a missing testbed is a failure with a clear message, never a skip.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    roles: list[str]


class Testbed:
    """What `make testbed-status` reports, plus a way to run commands on a host over SSH."""

    __test__ = False

    def __init__(self, status: dict):
        self.status = status
        self.hosts = [Host(h["name"], h["address"], h["roles"]) for h in status["hosts"]]
        self.registry: str = status["registry"]
        self.vault_addr: str = status["vault_addr"]
        self.vault_token: str = status["vault_token"]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def forward(self, via: Host, address: str, port: int) -> tuple[str, int]:
        """A local port that reaches `address:port` from `via` (an SSH tunnel, kept for the
        session): the host firewall opens the data ports to app hosts only, not to the
        controller the tests run on."""
        tunnels = self.__dict__.setdefault("_tunnels", {})
        key = (via.name, address, port)
        if key in tunnels and not self._tunnel_alive(*tunnels[key]):
            # a test that stops `via`'s sshd ends its sessions, this tunnel with them: renew it
            proc, _ = tunnels.pop(key)
            proc.kill()
            proc.wait(timeout=10)
        if key not in tunnels:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                local = s.getsockname()[1]
            proc = subprocess.Popen(
                [*self.ssh_argv(via, "")[:-2], "-N", "-o", "ExitOnForwardFailure=yes",
                 "-L", f"127.0.0.1:{local}:{address}:{port}", f"{self.status['ssh_user']}@"
                 f"{via.address}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", local), 1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        proc.kill()
                        raise AssertionError(f"no tunnel to {address}:{port} via {via.name}: "
                                             f"{proc.communicate()[1]}") from None
                    time.sleep(0.1)
            tunnels[key] = (proc, local)
        return "127.0.0.1", tunnels[key][1]

    @staticmethod
    def _tunnel_alive(proc: subprocess.Popen, local: int) -> bool:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", local), 2).close()
        except OSError:
            return False
        return True

    def close(self) -> None:
        for proc, _ in self.__dict__.pop("_tunnels", {}).values():
            proc.terminate()
            proc.wait(timeout=10)

    def ssh_argv(self, host: Host, command: str) -> list[str]:
        return ["ssh", "-i", self.status["ssh_key"],
                "-o", f"UserKnownHostsFile={self.status['ssh_known_hosts']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", f"{self.status['ssh_user']}@{host.address}", command]

    def ssh(self, host: Host, command: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run(self.ssh_argv(host, command), capture_output=True, text=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{host.name}: `{command}` exited {res.returncode}:\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res


# Modules that leave the fleet on another release than the repo's run last: the modules
# after them would otherwise start with a full redeploy of all 17 services (about 2.5 min in
# make test), and test_rotation's rotations refuse a fleet that is not on the repo's release.
RUN_LAST = ("test_rollout.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name in RUN_LAST)  # stable: file order otherwise


def read_testbed_status() -> dict:
    res = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "testbed/testbed.py"),
                          "status"], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    status = read_testbed_status()
    if not status["running"]:
        pytest.fail("the testbed is not running: run `make testbed-up` (make test does it)\n"
                    + json.dumps({k: v for k, v in status.items() if k != "vault_token"}))
    testbed = Testbed(status)
    yield testbed
    testbed.close()


def q(*args: str) -> str:
    return shlex.join(args)


@pytest.fixture(scope="session")
def deployed(testbed: Testbed) -> subprocess.CompletedProcess:
    """The repo's release deployed to the testbed (once per session; a no-op if it already is).

    Tests that need running services depend on this rather than on file order.
    """
    res = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
                          "deploy.py"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    return res
