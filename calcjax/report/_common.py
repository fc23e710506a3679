"""Constants and small helpers every part of the report shares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from calcjax._fmt import fmt_error, fmt_ratio, fmt_time
from calcjax._fmt import missing as _missing
from calcjax._schema import (
    DTYPE_ORDER,
    METHOD_ORDER,
    PLOTS_DIR,
    PROBLEM_ORDER,
    SUITE_ORDER,
)
from calcjax.report._page import FEW_MARK, FEW_ROUNDS, REFERENCE_CELL

if TYPE_CHECKING:
    pass

#: The gradient every other one is measured against.
REFERENCE_METHOD = "ad-reverse"
#: Headline columns: autodiff, calcjax's FD on f as written (what any JAX function gets) and the
#: tutorial's loop; calcjax's FD with shared matrix products has a column of its own (HEADLINE_SHARED).
HEADLINE_METHODS = ("ad-reverse", "fd-central-blackbox", "numpy-loop")
#: The headline's column for FD with f's matrix products of x shared between points.
HEADLINE_SHARED = "fd-central"
#: A record's ``reference`` value -> the methods that *are* that reference (graded against themselves).
SELF_REFERENCE = {
    "complex-step": ("fd-complex",),
    "jax.grad-float64": ("ad-reverse",),
    "jax.grad": ("ad-reverse",),
}
#: calcjax FD gradient -> the peer FD gradients it is compared with, like with like.
FD_PEERS = {
    "fd-forward": ("scipy-approx-fprime",),
    "fd-central": ("numpy-loop", "jax-vmap-naive", "jax-lax-map", "scipy-differentiate", "numdifftools"),
}
#: calcjax FD gradient -> the same gradient with f evaluated as written (share_products=False).
FD_BLACK_BOX = {"fd-central": "fd-central-blackbox"}
#: From this n on, fd_scaling.md gives the ratio to the compute limit.
COMPUTE_LIMIT_MIN_N = 10_000
#: The tutorial's ``numerical_derivative(func, x, eps=1e-5)`` step and the method that uses it.
TUTORIAL_EPS = 1e-5
TUTORIAL_METHOD = "numpy-loop"
#: An error estimate is honest when the true error is at most this many times the estimate.
HONEST_FACTOR = 10.0


class ReportError(ValueError):
    """A run that cannot be reported: missing, corrupt or foreign raw JSON, unknown run."""


def _rank(value: Any, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value), "") if value in order else (len(order), str(value))


def _num(value: Any, default: float = -1.0) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _ordered(values: Iterable[Any], order: Sequence[str] = ()) -> list[Any]:
    return sorted({v for v in values if not _missing(v)}, key=lambda v: _rank(v, order))


def _numbers(values: Iterable[Any]) -> list[float]:
    return sorted({v for v in values if isinstance(v, int | float) and not _missing(v)})


def _index(records: Iterable[dict[str, Any]], keys: Sequence[str]) -> dict[tuple, dict[str, Any]]:
    """First record for each value of ``keys`` (records are in report order)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in records:
        out.setdefault(tuple(r.get(k) for k in keys), r)
    return out


def _error(r: dict[str, Any] | None) -> Any:
    return None if r is None else r.get("rel_error")


def _is_reference(r: dict[str, Any] | None) -> bool:
    """The record's method is the reference its error was measured against (its error is 0 by design)."""
    if r is None or _missing(r.get("reference")):
        return False
    ref, method = str(r["reference"]), r.get("method")
    return method == ref or method in SELF_REFERENCE.get(ref, ())


def _err(r: dict[str, Any] | None, column: str = "rel_error") -> str:
    """A record's error for a table: "reference" when it is graded against itself."""
    if _is_reference(r):
        return REFERENCE_CELL
    return fmt_error(None if r is None else r.get(column))


def _few(*records: dict[str, Any] | None) -> bool:
    """Some record's time comes from fewer than FEW_ROUNDS rounds."""
    return any(
        r is not None and _num((r.get("stats") or {}).get("rounds"), FEW_ROUNDS) < FEW_ROUNDS for r in records
    )


def _time(r: dict[str, Any] | None) -> str:
    """A record's time, marked when it is not a median of at least FEW_ROUNDS rounds."""
    if r is None:
        return "—"
    text = fmt_time(r["time"])
    return text + FEW_MARK if text != "—" and _few(r) else text


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """time(a) ÷ time(b), marked when either time is from too few rounds."""
    text = fmt_ratio(_div(a and a["time"], b and b["time"]))
    return text + FEW_MARK if text != "—" and _few(a, b) else text


def _div(a: Any, b: Any) -> float | None:
    if _missing(a) or _missing(b) or b == 0:
        return None
    return float(a) / float(b)


def _groups(
    records: Sequence[dict[str, Any]], keys: Sequence[str]
) -> list[tuple[Any, ...]]:  # (*values, records)
    orders = {"problem": PROBLEM_ORDER, "method": METHOD_ORDER, "dtype": DTYPE_ORDER, "suite": SUITE_ORDER}
    seen: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        seen.setdefault(tuple(r.get(k) for k in keys), []).append(r)

    def sort_key(key: tuple) -> tuple:
        return tuple(
            _rank(v, orders[k]) if k in orders else (0, _num(v, 0.0), str(v))
            for k, v in zip(keys, key, strict=True)
        )

    return [(*key, seen[key]) for key in sorted(seen, key=sort_key)]


def _err_column(records: Sequence[dict[str, Any]]) -> str:
    if records and all(not _missing(r.get("rel_error")) for r in records):
        return "rel_error"
    return "abs_error"


def _vcurve_label(r: dict[str, Any]) -> str:
    if r.get("scheme"):
        order = r.get("order")
        return f"{r['scheme']}" + (f" o{order}" if not _missing(order) else "")
    return str(r.get("method", "?"))


def _plot_name(kind: str, problem: Any) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(problem)).strip("-") or "all"
    return f"{kind}-{slug}.png"


def _plot_links(kind: str, title: str, problems: Iterable[Any], plots: frozenset[str]) -> str:
    """Markdown image links to the ``kind`` plots written for ``problems``."""
    return "\n".join(
        f"![{title}: {p}]({PLOTS_DIR}/{_plot_name(kind, p)})"
        for p in _ordered(problems, PROBLEM_ORDER)
        if _plot_name(kind, p) in plots
    )
