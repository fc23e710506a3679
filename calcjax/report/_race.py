"""The descent race's table: f-evaluations and wall time each method needs to reach a loss target.

Suite ``descent-race`` (``bench/test_descent.py``): the randomized estimators (``zo-spsa``,
``zo-gaussian``, ``zo-gaussian-k10``, ``fwd-gradient``) against ``ad-reverse`` and ``fd-central``
in ``calcjax.gradient_descent``, every method tuned the same way (one learning-rate grid). Each
record holds its loss history (``losses`` at ``loss_steps``), the f-evaluations a step costs
(``evals_per_step``) and the median wall time of the whole run (``time``); :func:`race_axes` turns
them into the cost axes that this table and the plot (:mod:`calcjax.report._plots`) share.
"""

from __future__ import annotations

import math
from typing import Any

from calcjax._fmt import fmt_error, fmt_n, fmt_time
from calcjax._fmt import missing as _missing
from calcjax.report._common import _few, _groups, _num, _plot_links
from calcjax.report._load import Run
from calcjax.report._page import FEW_MARK, Table
from calcjax.report._registry import register_table
from calcjax.report._tables import BARE_LOOP  # noqa: F401  (the suite tables first: this one shows after them)

__all__ = ["RACE_SUITE", "TARGET_SHARE", "race_axes", "race_target", "reached"]

RACE_SUITE = "descent-race"
#: The loss target of a problem, n and dtype: this share of the largest loss decrease any method
#: made in the run, ``f0 - TARGET_SHARE * (f0 - best final loss)``.
TARGET_SHARE = 0.9
#: What a method that never got to the target shows.
NOT_REACHED = "not reached in the budget"


def race_axes(r: dict[str, Any]) -> dict[str, list[float]] | None:
    """A race record's history on its cost axes, or ``None`` without one.

    Returns ``{"loss", "step", "evals", "time"}``, one entry per recorded loss: the step,
    the f-evaluations spent to get there (``evals_per_step`` per step plus one per loss
    recorded so far, this one included) and the wall time (the run's median time spread
    evenly over its steps).
    """
    losses, steps = r.get("losses"), r.get("loss_steps")
    if not (isinstance(losses, list) and isinstance(steps, list) and losses and len(losses) == len(steps)):
        return None
    total = _num(r.get("steps"), 0.0)
    per_step = _num(r.get("evals_per_step"), 0.0)
    run_time = _num(r.get("time"), math.nan)
    return {
        "loss": [float(v) if isinstance(v, int | float) else math.nan for v in losses],
        "step": [float(k) for k in steps],
        "evals": [k * per_step + j + 1 for j, k in enumerate(steps)],
        "time": [run_time * k / total if total > 0 else math.nan for k in steps],
    }


def _diverged(r: dict[str, Any]) -> bool:
    return _num(r.get("stopped_at"), -1.0) >= 0


def race_target(records: list[dict[str, Any]]) -> float | None:
    """The loss target of one problem, n and dtype (see :data:`TARGET_SHARE`), or ``None``."""
    starts = [a["loss"][0] for r in records if (a := race_axes(r)) and math.isfinite(a["loss"][0])]
    finals = [
        _num(r.get("final_loss"), math.nan)
        for r in records
        if not _diverged(r) and math.isfinite(_num(r.get("final_loss"), math.nan))
    ]
    if not starts or not finals:
        return None
    f0, best = starts[0], min(finals)
    return f0 - TARGET_SHARE * (f0 - best)


def reached(r: dict[str, Any], target: float) -> tuple[float, float] | None:
    """(f-evaluations, seconds) at the first recorded loss at or below ``target``, or ``None``."""
    axes = race_axes(r)
    if axes is None:
        return None
    for loss, evals, seconds in zip(axes["loss"], axes["evals"], axes["time"], strict=True):
        if math.isfinite(loss) and loss <= target:
            return evals, seconds
    return None


@register_table(
    "descent_race.md",
    "Descent race: randomized estimators against AD and FD",
    "f-evaluations and wall time each gradient method needs to reach a loss target in gradient descent.",
)
def _race(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    recs = run.select(RACE_SUITE)
    if not recs:
        return None
    rows = []
    for problem, n, dtype, of in _groups(recs, ("problem", "n", "dtype")):
        target = race_target(of)
        for method, by_method in _groups(of, ("method",)):
            r = by_method[-1]
            got = None if target is None else reached(r, target)
            few = FEW_MARK if _few(r) else ""
            curvature = _num(r.get("curvature"), 0.0)
            lr = _num(r.get("lr"), math.nan)
            scale = f"{lr * curvature:.0e}" if curvature > 0 and math.isfinite(lr) else "—"
            if _diverged(r):
                final = f"diverged at step {fmt_n(r['stopped_at'])}"
            else:
                final = fmt_error(r.get("final_loss"))
            rows.append(
                [
                    str(problem),
                    fmt_n(n),
                    str(dtype),
                    str(method),
                    fmt_error(target) if target is not None else "—",
                    fmt_n(round(got[0])) if got else NOT_REACHED,
                    fmt_time(got[1]) + few if got else NOT_REACHED,
                    final,
                    fmt_n(r.get("steps")),
                    fmt_n(r.get("f_evals")),
                    fmt_time(r.get("time")) + few if not _missing(r.get("time")) else "—",
                    scale,
                ]
            )
    header = [
        "problem",
        "n",
        "dtype",
        "method",
        "loss target",
        "f-evals to target",
        "time to target",
        "final loss",
        "steps",
        "f-evals in budget",
        "time of the run",
        "lr × L",
    ]
    caption = (
        "Every method descends from the same x0 with a constant step chosen the same way: L is the "
        "largest Hessian eigenvalue at x0, every method runs lr = 1/L, 0.1/L, ... down to about "
        "1/(n L) and keeps the lr with the lowest final loss (the 'lr × L' column; a run that diverges "
        "loses). Budget: every method gets the same f-evaluations, those of 100 central-difference "
        "gradients (2n × 100), in at most 10,000 steps (the 'steps' column): `fd-central` runs 100 "
        "steps, `ad-reverse` and the estimators (`zo-spsa`, `zo-gaussian`, `zo-gaussian-k10`, "
        "`fwd-gradient`, keyed by `jax.random.key(0)`), whose steps cost one or a few evaluations, "
        f"up to 10,000. Loss target: {TARGET_SHARE:.0%} of the largest loss decrease any method made on that "
        "problem and n in this run. f-evaluations: the registry's count per step (an AD pass, a VJP "
        "or a JVP, counts as one) plus one per recorded loss. Time to target: the run's median wall "
        "time (compile apart) spread evenly over its steps, up to the first recorded loss at or below "
        "the target. The loss is recorded about 100 times a run (every steps/100 steps), so a method "
        "that gets there within its first recorded interval is charged the whole interval. "
        f"'{NOT_REACHED}': no recorded loss got there."
    )
    table = Table.of(header, rows, "lrll" + "r" * (len(header) - 4))
    links = _plot_links("descent-race", "descent race", (r.get("problem") for r in recs), plots)
    return [caption, table, links] if links else [caption, table]
