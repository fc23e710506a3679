"""calcjax.compare: every method on your function, its table and its recommendation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import calcjax
from calcjax import _compare
from calcjax._methods import GradientMethod
from calcjax._timing import time_call
from tests.complex_cases import CPU, X0, A, Y, logistic_grad, logistic_log1p, logistic_logaddexp

FAST = ["fd-central", "fd-complex", "ad-reverse", "numpy-loop"]


_FAST_TIME_CALL = functools.partial(time_call, min_time=0.0, min_repeats=1)


@pytest.fixture(autouse=True)
def _fast_timing_on_cpu(monkeypatch):
    """One timed call per method (the tests check the table, not the clock), on the CPU."""
    monkeypatch.setattr(_compare, "time_call", _FAST_TIME_CALL)
    with jax.default_device(CPU):
        yield


def _compare_fast(*args, **kwargs):
    with pytest.MonkeyPatch.context() as mp, jax.default_device(CPU):
        mp.setattr(_compare, "time_call", _FAST_TIME_CALL)
        return calcjax.compare(*args, **kwargs)


@pytest.fixture(scope="module")
def safe_table():
    return _compare_fast(logistic_log1p, X0, methods=FAST)


@pytest.fixture(scope="module")
def logaddexp_table():
    return _compare_fast(logistic_logaddexp, X0, methods=FAST)


# --------------------------------------------------------------------------- compare


def test_compare_table(safe_table):
    df = safe_table
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(_compare.COLUMNS)
    assert list(df["method"]) == FAST
    status = dict(zip(df["method"], df["status"], strict=True))
    assert status == {"fd-central": "ok", "fd-complex": "reference", "ad-reverse": "ok", "numpy-loop": "ok"}
    assert df.attrs["reference"] == "complex-step"
    assert df.attrs["n"] == 6
    assert df.attrs["dtype"] == "float64"
    assert df.attrs["complex_step_safe"] is True
    assert df.attrs["target_error"] == _compare.TARGET_ERROR["float64"]
    err = dict(zip(df["method"], df["rel_error"], strict=True))
    assert np.isnan(err["fd-complex"])  # the reference itself: not graded against itself
    assert err["ad-reverse"] <= 1e-14
    assert 1e-13 < err["fd-central"] < 1e-8
    assert (df["median_s"] > 0).all()
    assert (df.loc[df["method"] == "numpy-loop", "compile_s"] == 0).all()
    assert (df.loc[df["method"] != "numpy-loop", "compile_s"] > 0).all()
    assert dict(zip(df["method"], df["f_evals"], strict=True)) == {
        "fd-central": 12,
        "fd-complex": 7,  # n complex evaluations + f(x)
        "ad-reverse": 0,
        "numpy-loop": 12,
    }
    assert df["recommended"].sum() == 1
    (pick,) = df.loc[df["recommended"], "method"]
    assert df.attrs["recommended"] == pick
    assert df.attrs["recommendation"].startswith(f"{pick}: ")
    assert "n = 6" in df.attrs["recommendation"]


def test_logaddexp_falls_back_to_jax_grad_and_says_so(capsys):
    calcjax.compare(logistic_logaddexp, X0, methods=["ad-reverse"])
    assert "reference: float64 jax.grad" in capsys.readouterr().err


def test_logaddexp_table(logaddexp_table):
    df = logaddexp_table
    assert df.attrs["reference"] == "jax.grad-float64"
    assert df.attrs["complex_step_safe"] is False
    assert "logaddexp" in df.attrs["complex_step_problem"]
    assert "not an independent gradient" in df.attrs["reference_note"]
    row = df.set_index("method").loc["fd-complex"]
    assert row["status"] == "invalid"
    assert "logaddexp" in row["description"]
    assert not row["recommended"]
    assert np.isnan(row["rel_error"])
    # float64 jax.grad is the reference: ad-reverse in float64 is that computation, so it is labelled
    ad = df.set_index("method").loc["ad-reverse"]
    assert ad["status"] == "reference"
    assert np.isnan(ad["rel_error"])
    assert ad["est_error"] == _compare.ROUNDING_ULPS * np.finfo(np.float64).eps


def test_the_reference_row_is_labelled_and_shows_its_own_estimate(safe_table):
    row = safe_table.set_index("method").loc["fd-complex"]
    assert row["status"] == "reference"
    assert np.isnan(row["rel_error"])
    # its own estimate: the relative difference from float64 jax.grad, an independent gradient
    ref = np.asarray(calcjax.complex_step_gradient(logistic_log1p, X0))
    ad = np.asarray(jax.grad(logistic_log1p)(X0))
    assert row["est_error"] == pytest.approx(
        np.linalg.norm(ref - ad) / np.linalg.norm(ad), rel=1e-6, abs=1e-300
    )
    assert row["meets_target"]
    line = next(r for r in _compare.format_table(safe_table).splitlines() if r.startswith("fd-complex"))
    assert "reference" in line
    assert "own est. error" in line
    assert "rel_error" not in safe_table.loc[safe_table["method"] == "fd-complex"].dropna(axis=1).columns


def test_the_complex_step_is_graded_when_it_is_not_the_reference():
    """Against the analytic gradient (an independent reference) the complex step is a row like any other:
    its error is measured, and must be rounding-level -- a wrong complex step fails here."""
    df = calcjax.compare(logistic_log1p, X0, methods=["fd-complex"], reference=logistic_grad)
    row = df.set_index("method").loc["fd-complex"]
    assert row["status"] == "ok"
    assert row["rel_error"] <= _compare.ROUNDING_ULPS * np.finfo(np.float64).eps
    # float32: the complex64 step is graded against the complex128 reference, not labelled
    df32 = calcjax.compare(logistic_log1p, X0.astype(np.float32), methods=["fd-complex"])
    row32 = df32.set_index("method").loc["fd-complex"]
    assert row32["status"] == "ok"
    assert 0 < row32["rel_error"] <= _compare.ROUNDING_ULPS * np.finfo(np.float32).eps


def test_the_reference_can_be_recommended_on_cost():
    rows = [
        {
            "method": "fd-complex",
            "family": "fd",
            "status": "reference",
            "rel_error": np.nan,
            "est_error": 1e-16,
            "median_s": 1e-4,
        },
        {
            "method": "ad-reverse",
            "family": "ad",
            "status": "ok",
            "rel_error": 1e-16,
            "est_error": np.nan,
            "median_s": 1e-3,
        },
    ]
    pick, reason = _compare._recommend(rows, 1e-8, 10, np.dtype(np.float64))
    assert pick == "fd-complex"
    assert "the reference; its estimated error" in reason
    rows[0]["est_error"] = 1e-6  # its own estimate misses the target: not recommended
    assert _compare._recommend(rows, 1e-8, 10, np.dtype(np.float64))[0] == "ad-reverse"


def test_complex_step_reference_is_cross_checked(monkeypatch):
    """A complex-step gradient that disagrees with float64 jax.grad is not used as the reference."""
    wrong = lambda f, x: 1.01 * jax.grad(f)(x)
    monkeypatch.setattr(_compare.cs, "complex_step_gradient", wrong)
    df = calcjax.compare(logistic_log1p, X0, methods=["fd-complex", "ad-reverse"])
    assert df.attrs["reference"] == "jax.grad-float64"
    assert "disagrees with float64 jax.grad (rel. difference 1.0e-02)" in df.attrs["complex_step_problem"]
    assert df.set_index("method").loc["fd-complex", "status"] == "invalid"


def test_analytic_reference_function_and_array():
    df = calcjax.compare(logistic_logaddexp, X0, methods=["ad-reverse"], reference=logistic_grad)
    assert df.attrs["reference"] == "analytic"
    assert df["rel_error"].iloc[0] <= 1e-14
    df = calcjax.compare(logistic_log1p, X0, methods=["ad-reverse"], reference=np.asarray(logistic_grad(X0)))
    assert df.attrs["reference"] == "analytic"
    with pytest.raises(ValueError, match="reference has 3 entries but x has 6"):
        calcjax.compare(logistic_log1p, X0, methods=["ad-reverse"], reference=np.ones(3))


def test_pytree_float32_x():
    x = {"w": jnp.asarray(X0[:4], jnp.float32), "b": jnp.float32(0.2)}
    f = lambda p: jnp.mean(jnp.log1p(jnp.exp(-Y * (A[:, :4] @ p["w"] + p["b"]))))
    df = calcjax.compare(f, x, methods=["fd-central", "fd-complex", "ad-reverse"])
    assert df.attrs["n"] == 5
    assert df.attrs["dtype"] == "float32"
    assert (df["status"] == "ok").all()
    err = dict(zip(df["method"], df["rel_error"], strict=True))
    assert err["ad-reverse"] < 1e-6
    assert err["fd-central"] < _compare.TARGET_ERROR["float32"]


def test_rows_for_methods_that_cannot_run():
    missing = GradientMethod(
        "needs-pkg", lambda f, x: x, "peer", "d", evals=lambda n: n, requires="no_such_pkg"
    )
    small = GradientMethod("small-only", lambda f, x: x, "peer", "d", evals=lambda n: n, max_n=2)

    def broken(f, x):
        raise RuntimeError("boom\nsecond line")

    failing = GradientMethod("broken", broken, "peer", "d", evals=lambda n: n)
    df = calcjax.compare(logistic_log1p, X0, methods=[missing, small, failing, "ad-reverse"]).set_index(
        "method"
    )
    assert df.loc["needs-pkg", "status"] == "unavailable"
    assert "no_such_pkg" in df.loc["needs-pkg", "description"]
    assert df.loc["small-only", "status"] == "skipped"
    assert df.loc["small-only", "description"] == "n = 6 > its max_n = 2"
    assert df.loc["broken", "status"] == "failed"
    assert df.loc["broken", "description"] == "RuntimeError: boom"
    assert bool(df.loc["ad-reverse", "recommended"])


def test_target_error():
    df = calcjax.compare(logistic_log1p, X0, methods=["numpy-loop"], target_error=1e-30)
    assert not df["recommended"].any()
    assert df.attrs["recommended"] is None
    assert df.attrs["target_error"] == 1e-30
    assert df.attrs["recommendation"].startswith("no method meets the 1.0e-30 target at n = 6")
    df = calcjax.compare(logistic_log1p, X0, methods=["numpy-loop"], target_error=1.0)
    assert df.attrs["recommendation"].startswith("numpy-loop: meets the 1.0e+00 target (rel. error ")
    assert bool(df["recommended"].iloc[0])


def _row(method, family, err, t):
    return {"method": method, "family": family, "status": "ok", "rel_error": err, "median_s": t}


def test_recommendation_reason():
    rows = [
        _row("fd-central", "fd", 1e-10, 3e-2),
        _row("fd-complex", "fd", 1e-16, 3e-2),
        _row("ad-reverse", "ad", 2e-16, 1e-4),
        _row("numpy-loop", "baseline", 1e-9, 1.0),
    ]
    pick, reason = _compare._recommend(rows, 1e-8, 1000, np.dtype("float64"))
    assert pick == "ad-reverse"
    assert reason == (
        "ad-reverse: exact to rounding and 300x cheaper than the most accurate FD "
        "(fd-complex, rel. error 1.0e-16) at n = 1000"
    )
    rows = [_row("fd-forward", "fd", 1e-7, 1e-5), _row("ad-reverse", "ad", 1e-16, 2e-5)]
    pick, reason = _compare._recommend(rows, 1e-6, 2, np.dtype("float64"))
    assert pick == "fd-forward"
    assert reason == (
        "fd-forward: meets the 1.0e-06 target (rel. error 1.0e-07), the cheapest method that does, "
        "and 2.0x cheaper than ad-reverse at n = 2"
    )
    rows = [_row("fd-central", "fd", 1e-3, 1e-5), _row("ad-reverse", "ad", 2e-4, 3e-5)]
    pick, reason = _compare._recommend(rows, 3.5e-4, 1000, np.dtype("float32"))
    assert pick == "ad-reverse"
    assert reason == (
        "ad-reverse: meets the 3.5e-04 target (rel. error 2.0e-04); the most accurate FD "
        "(fd-central, rel. error 1.0e-03) is 3.0x faster but misses the target at n = 1000"
    )


def test_default_targets_come_from_eps():
    assert _compare.default_target(jnp.float64) == pytest.approx(float(jnp.finfo(jnp.float64).eps) ** 0.5)
    assert _compare.default_target("float32") == pytest.approx(3.45e-4, rel=1e-2)
    with pytest.raises(TypeError, match="no error target for dtype int32"):
        _compare.default_target("int32")


def test_progress_lines():
    lines = []
    calcjax.compare(logistic_log1p, X0, methods=["fd-central", "ad-reverse"], progress=lines.append)
    assert len(lines) == 2
    assert lines[0].startswith("[1/2] fd-central  rel_error ")
    assert "compile" in lines[0]
    assert lines[1].startswith("[2/2] ad-reverse")


def test_progress_true_prints_to_stderr(capsys):
    calcjax.compare(logistic_log1p, X0, methods=["ad-reverse"], progress=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("[1/1] ad-reverse")


def test_format_table(logaddexp_table):
    text = _compare.format_table(logaddexp_table)
    for name in FAST:
        assert name in text
    assert "<- recommended" in text
    assert "invalid: f drops the imaginary part" in text
    assert text.splitlines()[-1].startswith("recommended: ")


def test_device_cpu():
    df = calcjax.compare(logistic_log1p, X0, methods=["ad-reverse"], device="cpu")
    assert df.attrs["device"].startswith("TFRT_CPU") or "cpu" in df.attrs["device"].lower()


def test_compare_switches_x64_on_and_restores_it():
    with jax.enable_x64(False):
        df = calcjax.compare(lambda w: jnp.sum(jnp.sin(w)), np.ones(3, np.float32), methods=["ad-reverse"])
        assert not jax.config.jax_enable_x64
    assert df.attrs["x64_switched_on"] is True
    assert df.attrs["reference"] == "complex-step"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"f": lambda w: w**2}, ValueError, r"f must return a scalar, got an output of shape \(6,\)"),
        ({"x": jnp.arange(6)}, TypeError, "x must have a real floating dtype"),
        ({"x": {}}, ValueError, "x must hold at least one array"),
        ({"methods": []}, ValueError, "methods is empty"),
        (
            {"methods": ["fd-nope"]},
            ValueError,
            "unknown gradient method 'fd-nope'; valid: 'fd-forward'|unknown",
        ),
        ({"target_error": -1.0}, ValueError, "target_error must be positive and finite"),
        ({"device": "tpu"}, ValueError, "unknown device 'tpu'"),
        ({"progress": 3}, TypeError, "progress must be None, True or a callable"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"f": logistic_log1p, "x": X0, "methods": ["ad-reverse"], **kwargs}
    with pytest.raises(error, match=match):
        calcjax.compare(args.pop("f"), args.pop("x"), **args)
