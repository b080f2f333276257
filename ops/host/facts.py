"""The pyinfra facts behind `ops.host.state` and `ops.host.reads`: each runs ONE command.

Only glue: the command text and its parsing are the pure functions they call, so a fact
behaves exactly as the recorded-output tests of those functions say.
"""

from __future__ import annotations

from pyinfra.api import FactBase

from ops.host.reads import (
    ContainerDetail,
    container_details_command,
    container_logs_command,
    file_contents_command,
    parse_container_details,
    parse_container_logs,
    parse_file_contents,
)
from ops.host.state import STATE_SCRIPT, HostState, parse_host_state


class SuperappHostState(FactBase):
    """The whole deploy-relevant state of a host, in one command (see ops.host.state)."""

    def command(self) -> str:
        return STATE_SCRIPT

    def process(self, output: list[str]) -> HostState:
        return parse_host_state(output)


class FileContents(FactBase):
    """Current text of non-secret files on the host (dry run only)."""

    def command(self, paths: tuple[str, ...], secret_paths: tuple[str, ...] = ()) -> str:
        return file_contents_command(paths, secret_paths)

    def process(self, output: list[str]) -> dict[str, str | None]:
        return parse_file_contents(output)


class ContainerDetails(FactBase):
    """Every container's state, times, health and image, in one command."""

    def command(self) -> str:
        return container_details_command()

    def process(self, output: list[str]) -> dict[str, ContainerDetail]:
        return parse_container_details(output)


class ContainerLogs(FactBase):
    """The last log lines of the named containers."""

    def command(self, containers: tuple[str, ...], lines: int = 30) -> str:
        return container_logs_command(containers, lines)

    def process(self, output: list[str]) -> dict[str, list[str]]:
        return parse_container_logs(output)
