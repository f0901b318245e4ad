"""Statistics and markdown tables of the benchmark reports.  Nothing here asserts timing:
benchmarks report, ``verdict`` words how a figure compares with its target."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def verdict(value: float | None, limit: float, unit: str = "", strict: bool = False) -> str:
    """``met`` or ``MISSED by x`` for an upper-bound target (``strict``: below it, not at it)."""
    if value is None:
        return "not measured"
    if value < limit or (value == limit and not strict):
        return "met"
    over = value - limit
    if unit == "x":
        return f"MISSED by {over:.2f}x ({value / limit * 100 - 100:.0f} % over)"
    return f"MISSED by {fmt(over)}{unit} ({value / limit * 100 - 100:.0f} % over)"


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
