"""Pure rendering: catalog + environment + secret values in, files for each host out.

Never connects to a host, never reads Vault, never runs a subprocess (validation with the real
tools lives in `ops.validate`). Public API:

- `render_host(environment, host_name, secrets, slots=None) -> list[RenderedFile]`
- `render_environment(environment, secrets, slots=None) -> dict[host, list[RenderedFile]]`
- `service_content_hash(environment, service_name, host_name, secrets) -> "sha256:..."`
- `render_rule_tests(environment) -> dict[test file, str]` (promtool tests of the rule files)
- `PlaceholderSecrets`, `MappingSecrets`, `SecretValues`, `RenderedFile`, `host_directories`
"""

from __future__ import annotations

from ops.catalog.model import Environment
from ops.render import compose
from ops.render.files import RenderedFile
from ops.render.host import DEFAULT_SLOT, host_directories, render_environment, render_host
from ops.render.prometheus import render_rule_tests
from ops.render.secrets import MappingSecrets, PlaceholderSecrets, SecretValues


def service_content_hash(environment: Environment, service_name: str, host_name: str,
                         secrets: SecretValues) -> str:
    """Slot-independent hash of a service on a host. The rollout records it in the service's
    record after a swap (`/var/lib/superapp/services/<service>.json`) and compares the next
    render's hash with that record to tell whether the service changed."""
    return compose.service_content_hash(environment, environment.services[service_name],
                                        environment.host(host_name), secrets)


__all__ = [
    "DEFAULT_SLOT", "MappingSecrets", "PlaceholderSecrets", "RenderedFile", "SecretValues",
    "host_directories", "render_environment", "render_host", "render_rule_tests",
    "service_content_hash",
]
