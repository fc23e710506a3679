"""Formatting for tables and messages, defined once: times, ratios, bytes, errors, n, h, Markdown tables.

Standard library only, so the report, the commands and the benchmark suite can
all use it without JAX.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["fmt_bytes", "fmt_error", "fmt_h", "fmt_n", "fmt_ratio", "fmt_time", "md_table", "missing"]


def missing(value: Any) -> bool:
    """``None`` or NaN: shown as a dash."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_time(seconds: Any) -> str:
    """Seconds in the unit that reads best, three significant digits.

    >>> fmt_time(0.0012345), fmt_time(2.5e-7), fmt_time(0.99996e-3), fmt_time(12.0)
    ('1.23 ms', '250 ns', '1.00 ms', '12.0 s')
    """
    if missing(seconds) or math.isinf(seconds):
        return "—"
    s = float(seconds)
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if s >= scale * (1 - 5e-4) or unit == "ns":
            return f"{_sig3(s / scale)} {unit}"
    raise AssertionError("unreachable")


def _sig3(v: float) -> str:
    if v >= 99.95:
        return f"{v:.0f}"
    if v >= 9.995:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(ratio: Any) -> str:
    """A ratio as ``"12.3×"``: three significant digits, thousands separated.

    >>> fmt_ratio(1234.5), fmt_ratio(2.0), fmt_ratio(0.2), fmt_ratio(0.031)
    ('1,234×', '2.00×', '0.20×', '0.031×')
    """
    if missing(ratio) or math.isinf(ratio):
        return "—"
    if ratio >= 99.95:
        return f"{ratio:,.0f}×"
    if ratio >= 1:
        return f"{_sig3(ratio)}×"
    return f"{ratio:#.2g}×"


def fmt_error(err: Any) -> str:
    """An error in scientific notation, two significant digits: ``"2.1e-10"``."""
    if missing(err):
        return "—"
    return "0" if err == 0 else f"{float(err):.1e}"


def fmt_bytes(n: Any) -> str:
    """Bytes in binary units: ``"12.3 MiB"``."""
    if missing(n):
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 999.5 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{_sig3(value)} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_n(n: Any) -> str:
    return "—" if missing(n) else f"{int(n):,}"


def fmt_h(h: Any) -> str:
    if missing(h):
        return "—"
    return h if isinstance(h, str) else f"{float(h):.0e}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown pipe table; ``align`` has one ``l``/``r`` per column."""
    align = align or "l" * len(header)
    esc = lambda cell: str(cell).replace("|", "\\|")
    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
