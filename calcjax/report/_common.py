"""Constants and small helpers every part of the report shares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from calcjax._fmt import missing as _missing
from calcjax._schema import (
    DTYPE_ORDER,
    METHOD_ORDER,
    PLOTS_DIR,
    PROBLEM_ORDER,
    SUITE_ORDER,
)

if TYPE_CHECKING:
    from calcjax.report._load import Run

#: The gradient every other one is measured against.
REFERENCE_METHOD = "ad-reverse"
#: Headline columns: autodiff, calcjax's FD and the tutorial's loop.
HEADLINE_METHODS = ("ad-reverse", "fd-central", "numpy-loop")
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


def _page(run: Run, title: str, sections: Sequence[str]) -> str:
    body = "\n\n".join(s.strip("\n") for s in sections if s)
    return f"{run.provenance()}\n\n# {title}\n\n{body}\n"


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
