"""The second-derivative page (calcjax/report/_second_order.py) from a synthetic run: Markdown and HTML."""

from __future__ import annotations

from calcjax import report
from calcjax.report._second_order import UNUSABLE, vcurve_summary
from tests.helpers import _record, make_raw, write_run

COMMON = {"device": "cpu", "backend": "cpu", "device_kind": "cpu", "device_count": 1, "compile_s": 0.1}


def _second(suite, method, kind, t, err, dtype="float64", **extra):
    fields = dict(COMMON, suite=suite, problem="rosenbrock", n=10, method=method, kind=kind, dtype=dtype)
    fields.update({"rel_error": err, "reference": "analytic", "f_evals": 0, "grad_evals": 0, **extra})
    return _record(f"test_{suite}[rosenbrock-10-{dtype}-{method}]", t, **fields)


#: float32 errors of a V-curve that is usable down to h = 1e-3; float64 usable down to 1e-6.
VCURVE = {
    "float32": {1e-1: 7e-4, 1e-2: 8e-4, 1e-3: 3e-2, 1e-4: 4.6, "auto": 4e-4},
    "float64": {1e-1: 7e-4, 1e-2: 7e-6, 1e-3: 7e-8, 1e-4: 1e-8, 1e-5: 1e-6, 1e-6: 2e-2, "auto": 2e-8},
}


def _raw():
    raw = make_raw()
    raw["benchmarks"] += [
        _second("hessian", "jax-hessian", "hessian", 2e-4, 1e-16),
        _second("hessian", "fd-hessian", "hessian", 5e-5, 4.6e-8, f_evals=201),
        _second("hvp", "hvp-forward-over-reverse", "hvp", 1e-5, 2e-16),
        _second("hvp", "fd-of-grad", "hvp", 3e-5, 1.2e-11, grad_evals=2),
    ]
    for dtype, errors in VCURVE.items():
        for h, err in errors.items():
            raw["benchmarks"].append(
                _record(
                    f"test_hessian_vcurve[sin-exp-{dtype}-{h}]",
                    1e-5,
                    **dict(COMMON, suite="hessian_vcurve", problem="sin-exp", n=2, method="fd-hessian"),
                    kind="hessian",
                    dtype=dtype,
                    h=h,
                    rel_error=err,
                    reference="analytic",
                )
            )
    return raw


def test_second_order_page_renders_in_markdown_and_html(tmp_path):
    run_dir = report.build_reports(write_run(tmp_path, "second", _raw()), plots=False)
    md = (run_dir / "second_order.md").read_text()
    assert md.startswith("_Run `second`")
    assert "# Second derivatives" in md
    # fd-hessian's time over jax-hessian's: 5e-5 / 2e-4; fd-of-grad over forward-over-reverse: 3x.
    assert "| rosenbrock | float64 | 10 | fd-hessian | hessian | 50.0 µs | 0.25× |" in md
    assert "| rosenbrock | float64 | 10 | fd-of-grad | hvp | 30.0 µs | 3.00× |" in md
    assert "| 4.6e-08 |" in md
    assert "- **float32**: best relative error 7.0e-04 at h = 1e-01; automatic step 4.0e-04; " in md
    assert "unusable (error > 1%) for h ≤ 1e-03." in md
    assert "| auto | 4.0e-04 | 2.0e-08 |" in md
    html = (run_dir / "index.html").read_text()
    assert "Second derivatives" in html
    assert "fd-of-grad" in html


def test_second_difference_vcurve_is_plotted(tmp_path):
    run_dir = report.build_reports(write_run(tmp_path, "second-plots", _raw()))
    assert (run_dir / "plots" / "vcurve-sin-exp.png").read_bytes().startswith(b"\x89PNG")
    assert "](plots/vcurve-sin-exp.png)" in (run_dir / "second_order.md").read_text()


def test_vcurve_summary_finds_where_errors_stay_above_the_limit():
    records = [
        {"dtype": d, "h": h, "rel_error": e} for d, errors in VCURVE.items() for h, e in errors.items()
    ]
    got = vcurve_summary(records)
    assert got["float32"] == {"best_h": 1e-1, "best": 7e-4, "auto": 4e-4, "unusable_below": 1e-3}
    assert got["float64"]["unusable_below"] == 1e-6
    assert got["float64"]["best_h"] == 1e-4
    # A dtype whose every step errs by more than the limit is unusable from the largest step down.
    never = [{"dtype": "float32", "h": h, "rel_error": 10 * UNUSABLE} for h in (1e-1, 1e-2)]
    assert vcurve_summary(never)["float32"]["unusable_below"] == 1e-1


def test_runs_without_second_order_records_write_no_page(tmp_path):
    run_dir = report.build_reports(write_run(tmp_path, "first-only", make_raw()), plots=False)
    assert not (run_dir / "second_order.md").exists()


def test_second_method_order_is_the_registry():
    from calcjax._schema import SECOND_METHOD_ORDER
    from calcjax._second_order import SECOND_ORDER_METHODS

    assert len(set(SECOND_METHOD_ORDER)) == len(SECOND_METHOD_ORDER)
    assert set(SECOND_METHOD_ORDER) == set(SECOND_ORDER_METHODS)
