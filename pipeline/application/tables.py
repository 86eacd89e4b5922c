"""Plain-text tables, as ``pipeline hashlist stats`` and the benchmarks print them.

Owns the layout only (aligned columns, numbers with thousands separators, floats to about three
significant figures); what goes in the rows is the caller's. Pure: returns text, never prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as an aligned plain-text table (floats to 3 significant figures where large)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):  # a measurement that was skipped
                return "-"
            if abs(value) >= 100:
                return f"{value:,.0f}"
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return "-" if value is None else str(value)

    text = [[str(c) for c in columns], *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in text]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
