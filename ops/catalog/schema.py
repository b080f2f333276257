"""A small declarative schema for catalog and group_data values.

Why not a library: the errors must carry the file and the key path in our own format
(`group_data/prod.py: hosts.0.roles.1: ...`), unknown keys must suggest the closest known key,
and every error of a file is collected before anything is raised. This module only checks and
normalises plain data; it never reads files and never knows what a service is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Errors = list[tuple[str, str]]  # (key path, message)


def join_path(path: str, key: object) -> str:
    """Append one key to a dotted key path (`hosts` + 0 -> `hosts.0`)."""
    return f"{path}.{key}" if path else str(key)


class Type:
    """Base class: `check` returns the normalised value and appends errors instead of raising."""

    description = "a value"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Type):
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    hint: str = ""

    @property
    def description(self) -> str:  # type: ignore[override]
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return self.hint or "a string"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            errors.append((path, f"must be {self.description}, got {type(value).__name__}"))
            return value
        bad_choice = self.choices and value not in self.choices
        if bad_choice or (self.pattern and not re.fullmatch(self.pattern, value)):
            errors.append((path, f"must be {self.description}, got {value!r}"))
        return value


@dataclass(frozen=True)
class Int(Type):
    min: int | None = None
    max: int | None = None

    description = "an integer"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append((path, f"must be an integer, got {type(value).__name__}"))
            return value
        if self.min is not None and value < self.min:
            errors.append((path, f"must be >= {self.min}, got {value}"))
        if self.max is not None and value > self.max:
            errors.append((path, f"must be <= {self.max}, got {value}"))
        return value


@dataclass(frozen=True)
class Number(Type):
    min: float | None = None
    max: float | None = None

    description = "a number"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append((path, f"must be a number, got {type(value).__name__}"))
            return value
        if self.min is not None and value < self.min:
            errors.append((path, f"must be >= {self.min}, got {value}"))
        if self.max is not None and value > self.max:
            errors.append((path, f"must be <= {self.max}, got {value}"))
        return float(value)


@dataclass(frozen=True)
class Bool(Type):
    description = "true or false"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, bool):
            errors.append((path, f"must be true or false, got {type(value).__name__}"))
        return value


@dataclass(frozen=True)
class Anything(Type):
    """Accepts any value; used where a later, more specific check takes over."""

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        return value


@dataclass(frozen=True)
class Optional(Type):
    inner: Type

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.inner.description} or None"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        return None if value is None else self.inner.check(value, path, errors)


@dataclass(frozen=True)
class ListOf(Type):
    item: Type
    min_len: int = 0

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"a list of {self.item.description}"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, list | tuple):
            errors.append((path, f"must be a list, got {type(value).__name__}"))
            return value
        if len(value) < self.min_len:
            errors.append((path, f"must have at least {self.min_len} item(s)"))
        return [self.item.check(v, join_path(path, i), errors) for i, v in enumerate(value)]


@dataclass(frozen=True)
class MapOf(Type):
    """A mapping with free keys (service names, env var names...)."""

    value: Type
    key: Str = Str()

    description = "a mapping"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, Mapping):
            errors.append((path, f"must be a mapping, got {type(value).__name__}"))
            return value
        out = {}
        for k, v in value.items():
            sub = join_path(path, k)
            self.key.check(k, sub, errors)
            out[k] = self.value.check(v, sub, errors)
        return out


@dataclass(frozen=True)
class Field:
    type: Type
    required: bool = True
    default: Any = None
    doc: str = ""


@dataclass(frozen=True)
class Record(Type):
    """A mapping with a fixed set of keys: unknown keys are errors with a suggestion."""

    fields: Mapping[str, Field] = field(default_factory=dict)

    description = "a mapping"

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, Mapping):
            errors.append((path, f"must be a mapping, got {type(value).__name__}"))
            return value
        out: dict[str, Any] = {}
        for key in value:
            if key not in self.fields:
                errors.append((path, unknown_key_message(key, self.fields)))
        for name, spec in self.fields.items():
            sub = join_path(path, name)
            if name in value:
                out[name] = spec.type.check(value[name], sub, errors)
            elif spec.required:
                errors.append((sub, "missing required key"))
            else:
                out[name] = spec.default
        return out


def unknown_key_message(key: object, known: Mapping[str, object]) -> str:
    """`unknown key 'alowed_origins' (did you mean 'allowed_origins'?)`."""
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"
