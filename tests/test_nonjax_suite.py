"""The nonjax suite's pieces without running it: problems, batched twins, cases, and its report table."""

from __future__ import annotations

import numpy as np
import pytest

from calcjax._bench import cases
from calcjax._bench import nonjax as nj
from calcjax._problems import NUMPY_BATCH, PROBLEMS, numpy_batch
from calcjax._schema import SUITES
from calcjax.cli import main
from calcjax.report import _nonjax
from tests.helpers import _record, make_raw, write_run


@pytest.mark.parametrize("name", sorted(NUMPY_BATCH))
def test_batched_twin_equals_the_twin_row_by_row(name):
    inst = PROBLEMS[name].instance(30, "float64")
    batch = numpy_batch(inst)
    xs = inst.x0_np + 0.1 * np.random.default_rng(0).standard_normal((5, inst.n))
    np.testing.assert_allclose(batch(xs), [inst.f_np(x) for x in xs], rtol=1e-13)


def test_no_batched_twin_is_a_clear_error():
    with pytest.raises(ValueError, match="problem 'square' has no batched NumPy twin"):
        numpy_batch(PROBLEMS["square"].instance(None, "float64"))


@pytest.mark.parametrize("name", ["sleep-5ms", "compute-5ms"])
def test_black_box_references_are_the_gradient(name):
    """The analytic gradients against central differences of the losses (independent of calcjax)."""
    p = nj.nonjax_problem(name, 3)
    h = 1e-6
    fd = [(p.f(p.x0 + h * e) - p.f(p.x0 - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(fd, p.grad, rtol=1e-7)


def test_ode_reference_is_the_gradient_and_costs_a_millisecond():
    import time

    p = nj.nonjax_problem("ode-fit", 6)
    h = 1e-6 * np.abs(p.x0)
    fd = [(p.f(p.x0 + hi * e) - p.f(p.x0 - hi * e)) / (2 * hi) for hi, e in zip(h, np.eye(6), strict=True)]
    assert np.linalg.norm(np.subtract(fd, p.grad)) <= 1e-6 * np.linalg.norm(p.grad)
    start = time.perf_counter()
    p.f(p.x0)
    assert time.perf_counter() - start >= 1e-3  # a realistic black box: at least 1 ms per call


def test_losses_pickle_for_worker_processes():
    import pickle

    for name in nj.BLACK_BOXES:
        p = nj.nonjax_problem(name, 4)
        assert pickle.loads(pickle.dumps(p.f))(p.x0) == p.f(p.x0)


def test_cases_name_known_problems_and_methods():
    class S:
        class profile:
            name = "full"

    names, full, _ = cases.TABLES["nonjax"](S)
    assert names == ("problem", "n", "method")
    assert "nonjax" in SUITES
    for problem, _n, method in [*full, *cases.NONJAX_DEFAULT, *cases.NONJAX_CI]:
        assert problem in nj.TWINS + nj.BLACK_BOXES
        assert method in nj.METHODS
    assert set(cases.NONJAX_DEFAULT) <= set(full) | {c for c in cases.NONJAX_DEFAULT if c[1] == 200}
    # The report's display orders name the suite's problems and methods.
    assert _nonjax.NONJAX_PROBLEM_ORDER == nj.TWINS + nj.BLACK_BOXES
    assert _nonjax.NONJAX_METHOD_ORDER == tuple(nj.METHODS)


def _nonjax_records() -> list[dict]:
    common = {"device": "cpu", "backend": "cpu", "device_kind": "cpu", "device_count": 1, "dtype": "float64"}
    times = {"calcjax-serial": 0.05, "calcjax-vectorized": 0.01, "tutorial-loop": 0.06, "jax-grad": 1e-4}
    out = []
    for method, t in times.items():
        out.append(
            _record(
                f"test_nonjax[logistic-n200-{method}]",
                t,
                suite="nonjax",
                problem="logistic",
                n=200,
                method=method,
                rel_error=1e-9,
                reference="analytic",
                f_evals=400,
                f_call_s=1e-4,
                workers=1,
                **common,
            )
        )
    for method, t, startup in (("calcjax-serial", 0.08, None), ("calcjax-workers2", 0.045, 2.5)):
        out.append(
            _record(
                f"test_nonjax[sleep-5ms-n8-{method}]",
                t,
                suite="nonjax",
                problem="sleep-5ms",
                n=8,
                method=method,
                rel_error=2e-11,
                reference="analytic",
                f_evals=16,
                startup_s=startup,
                f_call_s=5e-3,
                workers=2 if startup else 1,
                **common,
            )
        )
    return out


def test_the_table_renders_in_markdown_and_html(tmp_path):
    raw = make_raw()
    raw["benchmarks"] += _nonjax_records()
    run = write_run(tmp_path / "results", "20261130T100000Z-cpu-default", raw)
    assert main(["report", str(run), "--no-plots"]) == 0
    text = (run / "nonjax.md").read_text()
    assert "## logistic, n = 200" in text
    assert "| `calcjax-vectorized` |" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| `calcjax-vectorized`"))
    assert "| 6.00× | 5.00× |" in line  # 0.06 s loop / 0.01 s vectorized; 0.05 s serial / 0.01 s
    line = next(ln for ln in text.splitlines() if ln.startswith("| `calcjax-workers2`"))
    assert "| 1.78× |" in line  # 0.08 s serial / 0.045 s workers
    assert "2.50 s" in line  # start-up apart
    html = (run / "index.html").read_text()
    assert "Functions JAX cannot trace" in html
    assert "calcjax-workers2" in html


def test_headline_ratios():
    records = [dict(r["extra_info"], time=r["stats"]["median"]) for r in _nonjax_records()]
    ratios = _nonjax.nonjax_ratios(records)
    assert ratios[("logistic", 200, "vectorized/loop")] == pytest.approx(0.01 / 0.06)
    assert ratios[("sleep-5ms", 8, "workers/serial")] == pytest.approx(0.045 / 0.08)
    assert ("sleep-5ms", 8, "dask/serial") not in ratios


def test_the_headline_gains_a_line_for_functions_jax_cannot_trace():
    from types import SimpleNamespace

    from calcjax.report._nonjax import headline_line

    times = {("logistic", 200): {"calcjax-serial": 0.02, "calcjax-vectorized": 0.004, "tutorial-loop": 0.025}}
    times[("sleep-5ms", 8)] = {"calcjax-serial": 0.09, "calcjax-workers2": 0.045}
    recs = [
        {"suite": "nonjax", "problem": p, "n": n, "method": m, "time": t}
        for (p, n), by in times.items()
        for m, t in by.items()
    ]
    line = headline_line(SimpleNamespace(select=lambda suite: recs if suite == "nonjax" else []))
    assert "serial 1.25× the tutorial loop's speed on logistic (n = 200)" in line
    assert "`vectorized=True` 6.25× on logistic" in line
    assert "`workers=2` 2.00× serial on a sleep-5ms loss" in line
    assert headline_line(SimpleNamespace(select=lambda suite: [])) is None


def test_the_plot_has_a_panel_per_problem_with_each_methods_time_and_is_linked(tmp_path):
    from calcjax.report._plots import _Panel

    records = [dict(r["extra_info"], time=r["stats"]["median"]) for r in _nonjax_records()]
    panels = _nonjax.nonjax_panels(records, _Panel)
    assert [p.title for p in panels] == ["logistic, n = 200", "sleep-5ms, n = 8"]
    assert [t for _, t in panels[0].xticks] == [
        "calcjax-serial",
        "calcjax-vectorized",
        "tutorial-loop",
        "jax-grad",
    ]
    assert panels[0].bars[0][1] == [0.05, 0.01, 0.06, 1e-4]
    assert panels[1].bars[0][1] == [0.08, 0.045]
    raw = make_raw()
    raw["benchmarks"] += _nonjax_records()
    run = write_run(tmp_path / "results", "20261130T100000Z-cpu-default", raw)
    assert main(["report", str(run)]) == 0
    assert (run / "plots" / _nonjax.NONJAX_PLOT).stat().st_size > 1000
    assert f"](plots/{_nonjax.NONJAX_PLOT})" in (run / "nonjax.md").read_text()
    from calcjax.report._html import plot_caption

    caption = "Functions JAX cannot trace: median time of one gradient per method"
    assert plot_caption(_nonjax.NONJAX_PLOT) == caption
    assert 'alt="Functions JAX cannot trace' in (run / "index.html").read_text()
