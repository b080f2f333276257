"""The testbed is what the issue promises: separate SSH hosts with their own Docker engines,
a registry every host can pull from, and a KV v2 Vault API on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from .conftest import REPO, Testbed, q, read_testbed_status

pytestmark = pytest.mark.integration


def test_status_json_has_the_promised_keys(testbed: Testbed) -> None:
    status = testbed.status
    for key in ("hosts", "ssh_user", "ssh_key", "vault_addr", "vault_token", "registry"):
        assert key in status, key
    assert len(status["hosts"]) >= 3
    for h in status["hosts"]:
        assert set(h) >= {"name", "address", "roles"}
        assert h["ssh_running"] and h["docker_running"]
    assert status["vault_running"] and status["registry_running"]
    assert status["vault_addr"].startswith("http://127.0.0.1:")
    roles = {r for h in status["hosts"] for r in h["roles"]}
    assert {"app", "db", "monitoring"} <= roles


def test_each_host_answers_ssh_and_has_its_own_docker(testbed: Testbed) -> None:
    roots = {}
    for host in testbed.hosts:
        out = testbed.ssh(host, "hostname; docker info --format '{{.DockerRootDir}} {{.ID}}'")
        name, info = out.stdout.strip().splitlines()
        assert name == host.name
        roots[host.name] = info
    # same path inside each host, but each engine is a different daemon
    assert len({info.split()[1] for info in roots.values()}) == len(testbed.hosts)


def test_files_and_containers_are_private_to_a_host(testbed: Testbed) -> None:
    h1, h2 = testbed.hosts[0], testbed.hosts[1]
    marker = f"isolation-{uuid.uuid4().hex}"
    for d in ("/opt/superapp", "/etc/superapp", "/var/lib/superapp", "/var/backups/superapp",
              "/etc/cron.d", "/var/run"):
        path = f"{d}/{marker}"
        testbed.ssh(h1, q("touch", path))
        try:
            assert testbed.ssh(h1, q("test", "-e", path), check=False).returncode == 0
            assert testbed.ssh(h2, q("test", "-e", path), check=False).returncode == 1, path
            assert not os.path.exists(path), f"{path} leaked onto the controller"
        finally:
            testbed.ssh(h1, q("rm", "-f", path))
    image = f"{testbed.registry}/superapp/redis:7.0.15"
    testbed.ssh(h1, f"docker pull -q {image} >/dev/null && docker create --name {marker} {image}")
    try:
        assert testbed.ssh(h2, q("docker", "inspect", marker), check=False).returncode != 0
    finally:
        testbed.ssh(h1, q("docker", "rm", "-f", marker))


def test_every_host_pulls_and_runs_the_standin_image(testbed: Testbed) -> None:
    image = f"{testbed.registry}/superapp/standin:v1"
    name = f"standin-{uuid.uuid4().hex[:8]}"
    for host in testbed.hosts:
        testbed.ssh(host, f"docker pull -q {image} >/dev/null && docker run -d --name {name} "
                          f"-p 18000:8000 -e SERVICE_NAME=probe -e APP_ENV=local {image}")
        try:
            # asked from the host itself: once deployed, its firewall drops a port the catalog
            # does not know (18000) from anywhere else, the controller included
            out = testbed.ssh(host, "for i in $(seq 50); do curl -sf --max-time 2 "
                                    "http://127.0.0.1:18000/health && exit 0; sleep 0.2; done; "
                                    "exit 1", check=False).stdout
            body = json.loads(out) if out.strip() else {}
            assert body == {**body, "status": "ok", "service": "probe", "version": "v1"}, out
        finally:
            testbed.ssh(host, q("docker", "rm", "-f", name))


def test_vault_answers_on_loopback_with_kv_v2(testbed: Testbed) -> None:
    import hvac

    client = hvac.Client(url=testbed.vault_addr, token=testbed.vault_token)
    assert client.is_authenticated()
    path = f"testbed-check/{uuid.uuid4().hex}"
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path=path, secret={"k": "v1"}, mount_point="secret")
    kv.create_or_update_secret(path=path, secret={"k": "v2"}, mount_point="secret")
    read = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                    raise_on_deleted_version=True)
    assert read["data"]["data"] == {"k": "v2"} and read["data"]["metadata"]["version"] == 2
    client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
    assert "approle/" in client.sys.list_auth_methods()["data"]


def test_testbed_up_twice_is_harmless(testbed: Testbed) -> None:
    res = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "testbed/testbed.py"), "up"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already up" in res.stdout
    after = read_testbed_status()
    assert after["running"] and after["vault_token"] == testbed.vault_token


def test_a_tunnel_is_renewed_after_its_hosts_sshd_restarts(testbed: Testbed, deployed) -> None:
    """`Testbed.forward` (how tests reach the db host's Redis through an app host, past the
    firewall) outlives a test that stops that app host's sshd, which ends its sessions."""
    import socket

    from .test_rollout import set_sshd

    db = next(h for h in testbed.hosts if "db" in h.roles)
    via = testbed.host("host2")
    first = testbed.forward(via, db.address, 6379)
    socket.create_connection(first, 5).close()
    set_sshd("host2", "stop")
    set_sshd("host2", "start")
    again = testbed.forward(via, db.address, 6379)
    with socket.create_connection(again, 5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64).startswith((b"+PONG", b"-NOAUTH")), again
