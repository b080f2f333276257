"""Pinned SSH host keys: why a host could not be reached, told before anything was sent.

Prod and staging name a known_hosts file in group_data (`ssh_known_hosts_file`) and pyinfra
connects with `ssh_strict_host_key_checking = "yes"`: an unknown key is refused (pyinfra's
default, `accept-new`, would trust it on first use and then push every secret to it), and a
changed key is refused by paramiko before authentication. pyinfra only says "could not
connect"; this names the host, the file and what the operator does next. Reads the file only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from paramiko.hostkeys import HostKeys


def lookup_name(address: str, port: int = 22) -> str:
    """How OpenSSH and paramiko index a host in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


def unpinned(known_hosts_file: str, hosts: Iterable[tuple[str, str]], port: int = 22
             ) -> list[str]:
    """One line per (name, address) host that the file gives no key for (or the file itself)."""
    path = Path(known_hosts_file)
    if not path.is_file():
        return [f"{known_hosts_file} does not exist: it must hold the SSH host key of every "
                "host (collect them out of band, e.g. from the provisioning system or the "
                "console, never by a first connection)"]
    keys = HostKeys()
    try:
        keys.load(str(path))
    except (OSError, ValueError) as e:
        return [f"{known_hosts_file} is not a readable known_hosts file: {e}"]
    return [f"{name} ({address}): no host key pinned in {known_hosts_file}; add the key "
            "verified out of band, then re-run"
            for name, address in hosts if keys.lookup(lookup_name(address, port)) is None]


def explain_unreachable(known_hosts_file: str | None, hosts: Iterable[tuple[str, str]],
                        port: int = 22) -> str:
    """The refusal's hint for hosts pyinfra could not connect to."""
    hosts = list(hosts)
    if not known_hosts_file:
        return ""
    missing = unpinned(known_hosts_file, hosts, port)
    if missing:
        return "\n" + "\n".join(f"  {line}" for line in missing)
    return (f"\n  host keys are pinned in {known_hosts_file}: if pyinfra says the key does not "
            "match, the host was reinstalled or someone is in the middle; verify the new key "
            "out of band (console), replace its line in that file, then re-run")
