"""The descent race's table and plot (calcjax/report/_race.py) from a synthetic run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from calcjax import report
from calcjax.report._race import NOT_REACHED, race_axes, race_target, reached
from tests.helpers import _record, make_raw, write_run

T_RUN = 0.4  # seconds, median of a whole run


def _race_record(method, losses, *, steps, loss_every, evals_per_step, stopped_at=-1):
    loss_steps = [min(j * loss_every, steps) for j in range(len(losses))]
    return _record(
        f"test_descent_race[quadratic-n1000-float64-{method}]",
        T_RUN,
        suite="descent-race",
        problem="quadratic",
        n=1000,
        method=method,
        dtype="float64",
        lr=1e-3,
        curvature=1e3,
        steps=steps,
        losses=losses,
        loss_steps=loss_steps,
        final_loss=losses[-1],
        stopped_at=stopped_at,
        evals_per_step=evals_per_step,
        f_evals=steps * evals_per_step + len(losses),
    )


RECORDS = [
    # start 100, best final 10: target 100 - 0.9 * 90 = 19
    _race_record("ad-reverse", [100.0, 50.0, 18.0, 10.0], steps=3, loss_every=1, evals_per_step=1),
    _race_record("zo-spsa", [100.0, 80.0, 60.0, 40.0], steps=300, loss_every=100, evals_per_step=2),
    _race_record(
        "fwd-gradient",
        [100.0, 1e30, math.inf, math.inf],
        steps=300,
        loss_every=100,
        evals_per_step=1,
        stopped_at=200,
    ),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = make_raw()
    raw["benchmarks"] = RECORDS
    return report.build_reports(write_run(tmp_path_factory.mktemp("results"), "2026-11-30-race", raw))


def test_axes_target_and_reach_by_hand():
    ad, spsa, fwd = (r["extra_info"] | {"time": T_RUN} for r in RECORDS)
    axes = race_axes(spsa)
    assert axes["step"] == [0, 100, 200, 300]
    assert axes["evals"] == [1, 202, 403, 604]  # 2 per step plus one per recorded loss
    assert axes["time"] == pytest.approx([0, T_RUN / 3, 2 * T_RUN / 3, T_RUN])
    target = race_target([ad, spsa, fwd])
    assert target == pytest.approx(19.0)  # the diverged run's last finite loss plays no part
    assert reached(ad, target) == (5, pytest.approx(2 * T_RUN / 3))  # step 2: 2 steps + 3 losses
    assert reached(spsa, target) is None
    assert reached(fwd, target) is None


def test_table_renders_with_not_reached_and_diverged(built):
    md = (built / "descent_race.md").read_text()
    rows = {line.split("|")[4].strip(): line for line in md.splitlines() if "| quadratic |" in line}
    assert set(rows) == {"ad-reverse", "zo-spsa", "fwd-gradient"}
    cells = [c.strip() for c in rows["ad-reverse"].split("|")]
    assert cells[5:8] == ["1.9e+01", "5", "267 ms"]  # target, f-evals and time to it
    assert rows["zo-spsa"].count(NOT_REACHED) == 2
    assert "diverged at step 200" in rows["fwd-gradient"]
    assert NOT_REACHED in rows["fwd-gradient"]
    html = (built / "index.html").read_text()
    assert "Descent race" in html
    assert NOT_REACHED in html
    assert "diverged at step 200" in html
    assert (built / "plots" / "descent-race-quadratic.png").stat().st_size > 0
    assert "plots/descent-race-quadratic.png" in md


def test_plot_has_every_method_on_each_cost_axis():
    from calcjax.report._load import Run
    from calcjax.report._plots import _plot_specs

    run = Run("synthetic", Path("."), {}, tuple(r["extra_info"] | {"time": T_RUN} for r in RECORDS))
    panels = _plot_specs(run)["descent-race-quadratic.png"]
    assert [p.xlabel.split(" ")[0] for p in panels] == ["step", "f-evaluations", "wall"]
    for panel in panels:
        assert panel.xlog
        assert panel.ylog
        assert [line.label.split(",")[0] for line in panel.lines] == ["ad-reverse", "zo-spsa", "fwd-gradient"]
        assert all(x > 0 for line in panel.lines for x in line.xs)  # the start is visible on a log axis
