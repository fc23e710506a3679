"""The report's second-derivative page: suites ``hessian``, ``hvp`` and ``hessian_vcurve``.

One table per suite, each record's time against the autodiff route of its kind
(``jax-hessian`` for Hessians and diagonals, forward-over-reverse for products),
and the second-difference V-curve with, per dtype, the best step, the automatic
step's error and where the error passes :data:`UNUSABLE`: the plain answer to
"where do float32 second differences stop being usable".
"""

from __future__ import annotations

from typing import Any

from calcjax._fmt import fmt_error, fmt_h, fmt_n, fmt_time
from calcjax._fmt import missing as _missing
from calcjax._schema import DTYPE_ORDER, PROBLEM_ORDER, SECOND_METHOD_ORDER
from calcjax.report._common import _err, _index, _ordered, _plot_links, _rank, _ratio, _time
from calcjax.report._load import Run
from calcjax.report._page import Table
from calcjax.report._registry import register_table

__all__ = ["AD_ROUTE", "UNUSABLE", "vcurve_summary"]

#: The autodiff method each kind's times are divided by.
AD_ROUTE = {"hessian": "jax-hessian", "diagonal": "jax-hessian", "hvp": "hvp-forward-over-reverse"}
#: A relative error above this (1 %) makes a Hessian unusable for a Newton step or a curvature estimate.
UNUSABLE = 1e-2


def _sorted(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        records,
        key=lambda r: (
            _rank(r.get("problem"), PROBLEM_ORDER),
            _rank(r.get("dtype"), DTYPE_ORDER),
            r.get("n") or 0,
            _rank(r.get("method"), SECOND_METHOD_ORDER),
        ),
    )


def _suite_table(run: Run, suite: str) -> Table:
    records = _sorted(run.select(suite))
    ad = _index(run.select("hessian") + run.select("hvp"), ("method", "problem", "n", "dtype"))
    rows = []
    for r in records:
        ref = ad.get((AD_ROUTE.get(r.get("kind"), ""), r.get("problem"), r.get("n"), r.get("dtype")))
        rows.append(
            [
                str(r.get("problem", "—")),
                str(r.get("dtype", "—")),
                fmt_n(r.get("n")),
                str(r.get("method", "—")),
                str(r.get("kind", "—")),
                _time(r),
                _ratio(r, ref),
                fmt_time(r.get("compile_s")),
                fmt_n(r.get("f_evals")),
                fmt_n(r.get("grad_evals")),
                _err(r),
            ]
        )
    header = [
        "problem",
        "dtype",
        "n",
        "method",
        "kind",
        "median",
        "÷ autodiff",
        "compile",
        "f-evals",
        "grad-evals",
        "rel. error",
    ]
    return Table.of(header, rows, "llrll" + "r" * 6)


def vcurve_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dtype: the best fixed step and its error, the automatic step's error, and the largest
    step at or below which every error exceeds :data:`UNUSABLE` (``None``: no such step)."""
    out: dict[str, dict[str, Any]] = {}
    for dtype in _ordered((r.get("dtype") for r in records), DTYPE_ORDER):
        of = [r for r in records if r.get("dtype") == dtype and not _missing(r.get("rel_error"))]
        fixed = sorted((r for r in of if not isinstance(r.get("h"), str)), key=lambda r: -float(r["h"]))
        auto = next((r["rel_error"] for r in of if r.get("h") == "auto"), None)
        best = min(fixed, key=lambda r: r["rel_error"], default=None)
        unusable = None
        for r in reversed(fixed):  # from the smallest step up
            if r["rel_error"] <= UNUSABLE:
                break
            unusable = r["h"]
        out[dtype] = {
            "best_h": None if best is None else best["h"],
            "best": None if best is None else best["rel_error"],
            "auto": auto,
            "unusable_below": unusable,
        }
    return out


def _vcurve(run: Run, plots: frozenset[str]) -> list[Any]:
    records = run.select("hessian_vcurve")
    dtypes = _ordered((r.get("dtype") for r in records), DTYPE_ORDER)
    by = _index(records, ("h", "dtype"))
    steps = sorted({r.get("h") for r in records if not isinstance(r.get("h"), str)}, reverse=True)
    rows = [[fmt_h(h), *(fmt_error((by.get((h, d)) or {}).get("rel_error")) for d in dtypes)] for h in steps]
    if any(("auto", d) in by for d in dtypes):
        rows.append(["auto", *(fmt_error((by.get(("auto", d)) or {}).get("rel_error")) for d in dtypes)])
    lines = []
    for dtype, s in vcurve_summary(records).items():
        text = f"- **{dtype}**: best relative error {fmt_error(s['best'])} at h = {fmt_h(s['best_h'])}"
        text += f"; automatic step {fmt_error(s['auto'])}"
        if s["best"] is not None and s["best"] > UNUSABLE:
            text += f"; **never usable** (every step errs by more than {UNUSABLE:.0%})"
        elif s["unusable_below"] is not None:
            text += f"; unusable (error > {UNUSABLE:.0%}) for h ≤ {fmt_h(s['unusable_below'])}"
        lines.append(text + ".")
    function = records[0].get("problem", "?") if records else "?"
    return [
        f"## Second differences against the step ({function}, central, four-point mixed stencil)",
        "Relative Frobenius error of `calcjax.hessian` against the analytic Hessian. Rounding grows "
        "like eps/h², truncation like h², so the best error is about √eps: ~1e-8 in float64 but "
        "~3e-4 in float32, and a step a decade too small costs two decades of accuracy.",
        "\n".join(lines),
        Table.of(["h", *dtypes], rows, "l" + "r" * len(dtypes)),
        *filter(None, [_plot_links("vcurve", "second-difference V-curve", [function], plots)]),
    ]


@register_table(
    "second_order.md",
    "Second derivatives",
    "Hessians, Hessian diagonals and Hessian-vector products: error against analytic Hessians, time "
    "against autodiff, and the second-difference V-curve in float32 and float64.",
)
def _second_order(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    if not (run.select("hessian") or run.select("hvp") or run.select("hessian_vcurve")):
        return None
    blocks: list[Any] = [
        "Every method of `calcjax.SECOND_ORDER_METHODS`, graded against independent references: "
        "analytic Hessians (quadratic, Rosenbrock, logistic regression) and complex steps of the "
        "MLP's hand-written NumPy gradient. Median time of one call, compiled and warmed up first; "
        "÷ autodiff divides by `jax.hessian` (Hessians, diagonals) or the forward-over-reverse "
        "product (HVPs) on the same problem, n and dtype."
    ]
    if run.select("hessian"):
        blocks += ["## Hessians and Hessian diagonals", _suite_table(run, "hessian")]
    if run.select("hvp"):
        blocks += ["## Hessian-vector products", _suite_table(run, "hvp")]
    if run.select("hessian_vcurve"):
        blocks += _vcurve(run, plots)
    return blocks
