"""Plain-text tables for terminal output."""

from __future__ import annotations


def format_table(rows: list[list[str]], right: set[int] | None = None) -> str:
    """Rows of cells (first row: header) as aligned columns; ``right``: right-aligned columns."""
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
