"""Where secret values come from while rendering, and how they are written to env files.

`render_host` asks a `SecretValues` for each `SecretRef`; `make render` passes
`PlaceholderSecrets` (no Vault), the deploy passes the Vault-backed source. Values are written
only into files marked `secret=True`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from ops.catalog.model import Environment, SecretRef


class SecretValues(Protocol):
    def get(self, ref: SecretRef) -> str | None:
        """The value, or None when an optional secret is absent. Raise if a required one is."""


class PlaceholderSecrets:
    """Clearly marked stand-ins, shaped so each tool still accepts the file (a URL stays a URL).

    `<vault:superapp/prod/payments#JWT_SECRET>` for most kinds.
    """

    def get(self, ref: SecretRef) -> str | None:
        slug = f"{ref.path}/{ref.key}".replace("/", ".").replace("_", "-").lower()
        if ref.kind == "url":
            return f"https://vault-placeholder.invalid/{ref.path}/{ref.key}"
        if ref.kind == "email":
            return f"{slug}@vault-placeholder.invalid"
        if ref.kind == "hostport":
            return "vault-placeholder.invalid:587"
        return f"<vault:{ref}>"


class MappingSecrets:
    """Secrets from a plain mapping `{"path#KEY": value}` (tests, and fetched Vault data)."""

    def __init__(self, values: Mapping[str, str]):
        self._values = dict(values)

    def get(self, ref: SecretRef) -> str | None:
        if str(ref) in self._values:
            return self._values[str(ref)]
        if ref.optional:
            return None
        raise KeyError(f"missing secret {ref}")  # names the location, never a value


ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Inside '...' compose takes every character literally except these (tested against compose v2.40).
NOT_LITERAL_IN_SINGLE_QUOTES = re.compile(r"['\\\x00-\x1f\x7f]")
DOUBLE_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r"}


def env_file_line(key: str, value: str) -> str:
    r"""One `KEY=value` line that docker compose (compose-go dotenv) reads back as exactly `value`.

    Plain values go in single quotes (everything literal: `$`, `#`, `"`, spaces, `=`, unicode).
    A value with a single quote, a backslash or a control character goes in double quotes, where
    `\\`, `\"`, `\$`, `\n` and `\r` are the only escapes written (so no `${X}` is expanded).
    A NUL byte cannot be in any process environment: refused, naming the key only.
    tests/unit/test_env_file.py checks random values round-trip through the real compose.
    """
    if not ENV_KEY.fullmatch(key):
        raise ValueError(f"env file key {key!r} is not a variable name")
    if "\x00" in value:
        raise ValueError(f"secret {key} contains a NUL byte; no environment can hold it")
    if not NOT_LITERAL_IN_SINGLE_QUOTES.search(value):
        return f"{key}='{value}'"
    escaped = "".join(DOUBLE_QUOTE_ESCAPES.get(ch, ch) for ch in value)
    return f'{key}="{escaped}"'


def env_file_content(header: str, values: Mapping[str, str]) -> str:
    lines = [f"# {header}", "# Written by the deploy from Vault. Secret: mode 0600, never commit."]
    lines += [env_file_line(k, v) for k, v in values.items()]
    return "\n".join(lines) + "\n"


def untracked_services(environment: Environment, secrets: SecretValues) -> list[str]:
    """Prod services meant to report to Sentry whose DSN Vault does not hold (a warning, not
    a refusal: a missing tracker must not block a fix from shipping)."""
    if environment.name != "prod":
        return []
    return [name for name, s in environment.services.items() if s.error_tracking == "sentry"
            and not secrets.get(environment.sentry_dsn_ref(s))]
