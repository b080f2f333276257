"""ops.console.format_table: the one table layout of every report."""

from __future__ import annotations

import pytest

from ops.console import format_table


def test_columns_are_padded_to_their_widest_cell_but_the_last() -> None:
    table = format_table(("host", "result", "why"),
                         [("host1", "changed", "new image"), ("h2", "-", "")])
    assert table.splitlines() == [
        "host   result   why",
        "host1  changed  new image",
        "h2     -",  # no trailing blanks, even for an empty last cell
    ]


def test_a_row_with_the_wrong_number_of_cells_is_a_bug() -> None:
    with pytest.raises(ValueError, match="one cell per column"):
        format_table(("a", "b"), [("only one",)])
