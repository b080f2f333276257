"""ops.host.known_hosts: which host has no pinned key, read from a real known_hosts file."""

from __future__ import annotations

import subprocess

from ops.host.known_hosts import explain_unreachable, unpinned


def host_key(tmp_path, name: str) -> str:
    """A real public host key, as `ssh-keyscan` would print it (type and base64)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
                   check=True)
    kind, blob = (tmp_path / f"{name}.pub").read_text().split()[:2]
    return f"{kind} {blob}"


def test_names_the_hosts_without_a_pinned_key(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"10.0.0.1 {host_key(tmp_path, 'a')}\n"
                     f"[10.0.0.3]:2222 {host_key(tmp_path, 'c')}\n")
    hosts = [("app-1", "10.0.0.1"), ("app-2", "10.0.0.2"), ("app-3", "10.0.0.3")]
    assert unpinned(str(known), hosts) == [
        f"app-2 (10.0.0.2): no host key pinned in {known}; add the key verified out of band, "
        "then re-run",
        f"app-3 (10.0.0.3): no host key pinned in {known}; add the key verified out of band, "
        "then re-run"]
    assert [line.split()[0] for line in unpinned(str(known), hosts, port=2222)] == [
        "app-1", "app-2"]


def test_hashed_entries_count(tmp_path):
    """`ssh-keyscan -H` and HashKnownHosts write hashed names: still pinned."""
    known = tmp_path / "known_hosts"
    known.write_text(f"10.0.0.1 {host_key(tmp_path, 'a')}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "10.0.0.1" not in known.read_text()
    assert unpinned(str(known), [("app-1", "10.0.0.1")]) == []


def test_missing_file_and_hint(tmp_path):
    missing = str(tmp_path / "nowhere")
    assert unpinned(missing, [("app-1", "10.0.0.1")]) == [
        f"{missing} does not exist: it must hold the SSH host key of every host (collect them "
        "out of band, e.g. from the provisioning system or the console, never by a first "
        "connection)"]
    known = tmp_path / "known_hosts"
    known.write_text(f"10.0.0.1 {host_key(tmp_path, 'a')}\n")
    assert "verify the new key out of band" in explain_unreachable(str(known),
                                                                  [("app-1", "10.0.0.1")])
    assert explain_unreachable(None, [("app-1", "10.0.0.1")]) == ""
