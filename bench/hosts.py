"""How the bench reaches a testbed host: one SSH argv, from `make testbed-status`'s JSON."""

from __future__ import annotations


def ssh_argv(status: dict, host: dict, command: str) -> list[str]:
    return ["ssh", "-i", status["ssh_key"], "-o",
            f"UserKnownHostsFile={status['ssh_known_hosts']}", "-o", "BatchMode=yes",
            f"{status['ssh_user']}@{host['address']}", command]
