"""Elastic tabstops with the semantics of Go's text/tabwriter, which kubectl and cilium-dbg print through.

Text is split into lines and each line into cells at tab characters. A cell is *tab-terminated* when a
tab follows it; the last cell of a line is not, and is printed as is. A column block is a run of
consecutive lines that all have a tab-terminated cell in that column; every cell in the block is padded
with spaces to ``max(minwidth, widest cell + padding)``. A line without that column ends the block, so
lines with fewer cells (or plain text lines) split a table into independently aligned parts, exactly
as Go does. Alignment is left; only spaces are used.

kubectl: ``minwidth=6, padding=3`` (cli-runtime's GetNewTabWriter). cilium-dbg: ``minwidth=5, padding=3``
for lists, ``minwidth=2, padding=3`` for status, ``minwidth=0, padding=3`` for nested tables.
"""

from __future__ import annotations


def _assign_widths(
    cells: list[list[str]], widths: list[int], line0: int, line1: int,
    minwidth: int, padding: int, out: list[list[int]],
) -> None:
    """Record for each line in [line0, line1) the column widths in force when it is written."""
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(cells[this]) - 1:
            this += 1
            continue
        for i in range(line0, this):  # lines before the block only know the outer columns
            out[i] = widths
        line0 = this
        width = minwidth
        while this < line1 and column < len(cells[this]) - 1:
            width = max(width, len(cells[this][column]) + padding)
            this += 1
        _assign_widths(cells, [*widths, width], line0, this, minwidth, padding, out)
        line0 = this
    for i in range(line0, line1):
        out[i] = widths


def tabwrite(text: str, minwidth: int, padding: int) -> str:
    """Align ``text`` (tab-separated cells, newline-separated lines) the way Go's tabwriter would."""
    lines = text.split("\n")
    cells = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[] for _ in lines]
    _assign_widths(cells, [], 0, len(lines), minwidth, padding, widths)
    rendered = []
    for line_cells, line_widths in zip(cells, widths, strict=True):
        parts = [
            cell.ljust(line_widths[j]) if j < len(line_widths) else cell
            for j, cell in enumerate(line_cells)
        ]
        rendered.append("".join(parts))
    return "\n".join(rendered)


def _one_line(cell: str) -> str:
    """kubectl cuts a cell at its first newline, carriage return or form feed and appends ``...``."""
    cut = min((i for i in (cell.find(c) for c in "\n\r\f") if i >= 0), default=-1)
    return cell if cut < 0 else cell[:cut] + "..."


def kubectl_table(rows: list[list[str]]) -> str:
    """Rows of cells (header first) aligned like kubectl: 3 spaces between columns, last column unpadded."""
    return tabwrite("\n".join("\t".join(_one_line(c) for c in row) for row in rows), minwidth=6, padding=3)
