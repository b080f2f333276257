"""What the operator reads at the end of a task: one way to lay out a table.

Every table (rollout summary, status, drift, restore drill) pads each column but the last to
its widest cell, two spaces apart, with no trailing blanks, so they all read alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def format_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    table = [tuple(head), *(tuple(r) for r in rows)]
    if any(len(r) != len(head) for r in table):
        raise ValueError("every row of a table has one cell per column")
    widths = [max(len(r[i]) for r in table) for i in range(len(head) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)),
                                r[-1]]).rstrip() for r in table)
