"""YAML parsed together with the line of every key, so findings point at `file:line`.

Pure. Uses libyaml's composer when available (fast), else PyYAML's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from ops.yamlio import LOADER


@dataclass
class Located:
    """A parsed document plus `lines[(key, path...)] -> 1-based line` of each mapping key."""

    data: Any
    lines: dict[tuple, int]

    def line(self, *path: object) -> int:
        """Line of the deepest known prefix of `path` (0 when nothing is known)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 0


def load_located(text: str) -> Located:
    """Parse one YAML document; raises yaml.YAMLError on invalid YAML."""
    node = yaml.compose(text, Loader=LOADER)
    lines: dict[tuple, int] = {}
    if node is None:
        return Located(None, lines)
    data = build(node, (), lines)
    return Located(data, lines)


def build(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = scalar(key_node)
            sub = (*path, key)
            lines[sub] = key_node.start_mark.line + 1
            out[key] = build(value_node, sub, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(build(item, (*path, i), lines))
        return items
    return scalar(node)


def scalar(node: yaml.Node) -> Any:
    """A scalar with YAML's own type resolution (so `true` is True and `"true"` is 'true')."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    value = node.value  # what SafeLoader.construct_scalar returns for a scalar node (a new
    # loader per scalar to call it cost most of the audit's time); then resolve by tag
    tag = node.tag
    if tag.endswith(":bool"):
        return value.lower() in ("true", "yes", "on")
    if tag.endswith(":int"):
        try:
            return int(value, 0)
        except ValueError:
            return value
    if tag.endswith(":null"):
        return None
    if tag.endswith(":float"):
        try:
            return float(value)
        except ValueError:
            return value
    return value
