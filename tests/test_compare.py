"""calcjax.compare and the complex-step safety check."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import calcjax
from calcjax import _compare
from calcjax._complex_safety import check_complex_step, complex_step_culprits
from calcjax._methods import GradientMethod
from calcjax._timing import time_call

#: These tests run on the CPU, also on a machine with a GPU: there complex matrix products lose
#: the complex step's imaginary part, which test_matrix_products_are_culprits_on_gpu covers.
CPU = jax.devices("cpu")[0]
RNG = np.random.default_rng(7)
A = jax.device_put(RNG.standard_normal((40, 6)), CPU)
Y = jax.device_put(np.sign(RNG.standard_normal(40)), CPU)
X0 = jax.device_put(0.3 * RNG.standard_normal(6), CPU)

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


# --------------------------------------------------------------------------- functions


def logistic_log1p(w):
    return jnp.mean(jnp.log1p(jnp.exp(-Y * (A @ w))))


def logistic_logaddexp(w):
    return jnp.mean(jnp.logaddexp(0.0, -Y * (A @ w)))


def logistic_softplus(w):
    return jnp.mean(jax.nn.softplus(-Y * (A @ w)))


def logistic_stable(w):
    """The 'numerically stable' logistic loss: max(z, 0) - z*y + log1p(exp(-|z|))."""
    z = A @ w
    return jnp.mean(jnp.maximum(z, 0.0) - z * (Y > 0) + jnp.log1p(jnp.exp(-jnp.abs(z))))


def l1_regularised(w):
    return jnp.sum(w**2) + 0.1 * jnp.sum(jnp.abs(w))


def logistic_grad(w):
    z = -Y * (A @ w)
    return A.T @ (-Y * jax.nn.sigmoid(z)) / A.shape[0]


UNSAFE = {
    "jnp.logaddexp": (logistic_logaddexp, "logaddexp"),
    "jax.nn.softplus": (logistic_softplus, "softplus"),
    "jnp.maximum + jnp.abs": (logistic_stable, "abs"),
    "jnp.abs": (l1_regularised, "abs"),
    "jax.nn.log_sigmoid": (lambda w: -jnp.mean(jax.nn.log_sigmoid(Y * (A @ w))), "log_sigmoid"),
    "jnp.linalg.norm inside": (lambda w: jnp.sum(w) * jnp.linalg.norm(w), "norm"),
    "jnp.var": (lambda w: jnp.var(w) + jnp.sum(w), "var"),
    "jnp.real": (lambda w: jnp.sum(jnp.sin(jnp.real(w)) * w), "real"),
}

SAFE = {
    "sin": lambda w: jnp.sum(jnp.sin(w)),
    "exp": lambda w: jnp.sum(jnp.exp(w)),
    "polynomial": lambda w: jnp.sum(3 * w**3 - w**2 + 2 * w),
    "log1p(exp(z))": logistic_log1p,
    "jnp.maximum alone": lambda w: jnp.sum(jnp.maximum(w, 0.0) ** 2 + w),
    "relu away from its kink": lambda w: jnp.sum(jax.nn.relu(A @ w)),
    "logsumexp": lambda w: jax.nn.logsumexp(A @ w),
    "where on abs": lambda w: jnp.sum(jnp.where(jnp.abs(w) < 1e-3, 0.0, jnp.sin(w))),
    "tanh MLP": lambda w: jnp.mean(jnp.tanh(A @ w) ** 2),
    "log_softmax": lambda w: -jnp.sum(jax.nn.log_softmax(A @ w)),
    "scan": lambda w: jax.lax.scan(lambda c, a: (c * jnp.sin(a) + 1, None), 1.0, w)[0],
}


# --------------------------------------------------------------------------- complex-step safety


def test_the_failure_is_real():
    """Why the check exists: the raw complex step of softplus is 0, jax.grad says sigmoid."""
    z = jnp.asarray(0.3 + 1e-20j)
    raw = jnp.imag(jax.nn.softplus(z)) / 1e-20
    assert float(raw) == 0.0
    assert float(jax.grad(jax.nn.softplus)(0.3)) == pytest.approx(float(jax.nn.sigmoid(0.3)))


@pytest.mark.parametrize(("f", "culprit"), UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_functions_are_refused(f, culprit):
    with pytest.raises(ValueError, match=r"complex_step_gradient: .*drops the imaginary part") as info:
        calcjax.complex_step_gradient(f, X0)
    assert culprit in str(info.value)


@pytest.mark.parametrize(("f", "culprit"), UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_functions_are_refused_under_jit(f, culprit):
    """Traced x: the static checks alone still catch every one of them."""
    with pytest.raises(ValueError, match="drops the imaginary part") as info:
        jax.jit(lambda w: calcjax.complex_step_gradient(f, w))(X0)
    assert culprit in str(info.value)


@pytest.mark.parametrize("f", SAFE.values(), ids=SAFE.keys())
def test_safe_functions_pass_every_check(f):
    assert complex_step_culprits(f, X0) == []
    check_complex_step(f, X0)  # concrete x: the numeric probe runs too


@pytest.mark.parametrize(
    "name", ["sin", "exp", "polynomial", "log1p(exp(z))", "jnp.maximum alone", "tanh MLP"]
)
def test_safe_functions_match_jax_grad_under_jit(name):
    f = SAFE[name]
    g = jax.jit(lambda w: calcjax.complex_step_gradient(f, w))(X0)
    np.testing.assert_allclose(g, jax.grad(f)(X0), rtol=1e-13, atol=1e-15)


def test_safe_function_plain_call():
    g = calcjax.complex_step_gradient(SAFE["log1p(exp(z))"], X0)
    np.testing.assert_allclose(g, logistic_grad(X0), rtol=1e-14)


def test_culprit_names_the_jax_function_and_your_line():
    (culprit,) = complex_step_culprits(logistic_softplus, X0)
    assert culprit.startswith("real, imag inside softplus/logaddexp at ")
    assert "test_compare.py" in culprit
    assert "logistic_softplus" in culprit


def test_cast_to_a_real_dtype_is_refused():
    """JAX warns about the cast at complex input; the check names it (and keeps the warning quiet)."""
    f = lambda w: jnp.sum(jnp.sin(w.astype(jnp.float32))).astype(w.dtype)
    with pytest.raises(ValueError, match=r"a cast to float32 at .*test_compare.py"):
        check_complex_step(f, X0)


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
def test_matrix_products_are_culprits_on_gpu(monkeypatch, platform):
    """On an H100 (JAX 0.11.2) complex matrix products returned imaginary part 0.

    A matrix-vector product counts: complex_step_gradient vmaps f, which makes it a
    matrix-matrix product. An inner product does not.
    """
    from calcjax import _complex_safety

    monkeypatch.setattr(_complex_safety, "_platform", lambda x: platform)
    batch = jax.device_put(RNG.standard_normal((8, 6)), CPU)
    gemm = lambda w: jnp.sum(jnp.tanh(batch @ jnp.stack([w, 2 * w], axis=1)))
    gemv = lambda w: jnp.sum(jnp.tanh(batch @ w))
    inner = lambda w: jnp.tanh(w @ w)
    for f in (gemm, gemv):
        found = complex_step_culprits(f, X0)
        if platform == "gpu":
            assert len(found) == 1
            assert found[0].startswith("a complex matrix product on GPU (dot_general) at ")
        else:
            assert found == []
    assert complex_step_culprits(inner, X0) == []


def test_shared_products_are_not_gpu_culprits(monkeypatch):
    """With shared products, x's product with an x-free matrix runs once at real x: safe on GPU.

    A product of two x-dependent values is still batched per point, so it stays a culprit.
    """
    from calcjax import _complex_safety

    monkeypatch.setattr(_complex_safety, "_platform", lambda x: "gpu")
    batch = jax.device_put(RNG.standard_normal((8, 6)), CPU)
    gemv = lambda w: jnp.sum(jnp.tanh(batch @ w))
    two = lambda w: jnp.sum(jnp.tanh(batch @ w) @ (batch * w))
    assert complex_step_culprits(gemv, X0, shared_products=True) == []
    assert len(complex_step_culprits(gemv, X0)) == 1
    (culprit,) = complex_step_culprits(two, X0, shared_products=True)
    assert culprit.startswith("a complex matrix product on GPU (dot_general) at ")
    # complex_step_gradient shares by default, so on a GPU it takes gemv and refuses it without sharing.
    g = calcjax.complex_step_gradient(gemv, X0)
    want = batch.T @ (1.0 - jnp.tanh(batch @ X0) ** 2)
    np.testing.assert_allclose(g, want, rtol=1e-13)
    with pytest.raises(ValueError, match="a complex matrix product on GPU"):
        calcjax.complex_step_gradient(gemv, X0, share_products=False)


def test_real_output_is_refused():
    with pytest.raises(ValueError, match="returned dtype float64 for complex input"):
        calcjax.complex_step_gradient(lambda w: jnp.abs(jnp.sum(w)), X0)


def _hidden_drop(z):
    """Drops the imaginary part inside a callback, where no jaxpr scan can see it."""
    return jax.pure_callback(
        lambda a: (np.real(a) + 0 * a).astype(a.dtype),
        jax.ShapeDtypeStruct(z.shape, z.dtype),
        z,
        vmap_method="sequential",
    )


def test_numeric_probe_catches_what_the_scan_cannot_see():
    f = lambda w: jnp.sum(jnp.sin(_hidden_drop(w)))
    assert complex_step_culprits(f, X0) == []
    with pytest.raises(ValueError, match=r"disagrees with central differences along a random direction"):
        calcjax.complex_step_gradient(f, X0)
    # Under jit x is a tracer: only the static checks run, so this one gets through (documented).
    g = jax.jit(lambda w: calcjax.complex_step_gradient(f, w))(X0)
    assert np.all(np.asarray(g) == 0.0)


def test_probe_flags_a_kink():
    with pytest.raises(ValueError, match="or is not differentiable at x"):
        check_complex_step(lambda w: jnp.sum(jax.nn.relu(w)), jnp.asarray([0.0, 1.0]))


def test_probe_on_pytree_and_float32_x():
    x = {"a": jnp.ones(3, jnp.float32), "b": jnp.float32(0.5)}
    check_complex_step(lambda p: jnp.sum(jnp.sin(p["a"])) * p["b"], x)
    with pytest.raises(ValueError, match="abs"):
        check_complex_step(lambda p: jnp.sum(jnp.abs(p["a"])) * p["b"], x)


def test_complex_step_derivative_is_checked_too():
    xs = jnp.linspace(-2.0, 2.0, 50)
    np.testing.assert_allclose(calcjax.complex_step_derivative(jnp.sin, xs), jnp.cos(xs), rtol=1e-15)
    with pytest.raises(ValueError, match=r"complex_step_derivative: .*softplus"):
        calcjax.complex_step_derivative(jax.nn.softplus, xs)
    with pytest.raises(ValueError, match=r"complex_step_derivative: .*disagrees .* at x\[\d+\]"):
        calcjax.complex_step_derivative(lambda t: jnp.sin(_hidden_drop(t)), xs)


def test_complex_step_derivative_under_vmap_and_jit():
    xs = jnp.linspace(-2.0, 2.0, 5)
    d = jax.vmap(lambda t: calcjax.complex_step_derivative(jnp.exp, t))(xs)
    np.testing.assert_allclose(d, jnp.exp(xs), rtol=1e-15)
    with pytest.raises(ValueError, match="softplus"):
        jax.vmap(lambda t: calcjax.complex_step_derivative(jax.nn.softplus, t))(xs)
    with pytest.raises(ValueError, match="softplus"):
        jax.jit(lambda t: calcjax.complex_step_derivative(jax.nn.softplus, t))(xs)


# --------------------------------------------------------------------------- compare


def test_compare_table(safe_table):
    df = safe_table
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(_compare.COLUMNS)
    assert list(df["method"]) == FAST
    assert (df["status"] == "ok").all()
    assert df.attrs["reference"] == "complex-step"
    assert df.attrs["n"] == 6
    assert df.attrs["dtype"] == "float64"
    assert df.attrs["complex_step_safe"] is True
    assert df.attrs["target_error"] == _compare.TARGET_ERROR["float64"]
    err = dict(zip(df["method"], df["rel_error"], strict=True))
    assert err["fd-complex"] <= 1e-15
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
    # compared with itself: equal up to rounding differences between the jitted and the eager call
    assert df.set_index("method").loc["ad-reverse", "rel_error"] <= 1e-15


def test_complex_step_reference_is_cross_checked(monkeypatch):
    """A complex-step gradient that disagrees with float64 jax.grad is not used as the reference."""
    wrong = lambda f, x: 1.01 * jax.grad(f)(x)
    monkeypatch.setattr(_compare.fd, "complex_step_gradient", wrong)
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
