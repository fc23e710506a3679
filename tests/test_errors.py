"""Bad input gets a clear error that names the bad value; NaN is returned, never hidden."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax

X2 = jnp.ones(2)


def _vector_out(x):
    return jnp.stack([x, x]) if jnp.ndim(x) == 0 else jnp.stack([x[0], x[1]])


# Every public function taking f, with the arguments that reach f's checks.
CALLS = {
    "derivative": lambda f: calcjax.derivative(f, 1.0),
    "gradient": lambda f: calcjax.gradient(f, X2),
    "directional_derivative": lambda f: calcjax.directional_derivative(f, X2, X2),
    "complex_step_derivative": lambda f: calcjax.complex_step_derivative(f, 1.0),
    "complex_step_gradient": lambda f: calcjax.complex_step_gradient(f, X2),
    "richardson_derivative": lambda f: calcjax.richardson_derivative(f, 1.0),
    "richardson_gradient": lambda f: calcjax.richardson_gradient(f, X2),
    "gradient_descent": lambda f: calcjax.gradient_descent(f, X2, lr=0.1, steps=1),
}

# Every public function taking x, called with x.
X_CALLS = {
    "derivative": lambda x: calcjax.derivative(jnp.sin, x),
    "gradient": lambda x: calcjax.gradient(jnp.sum, x),
    "directional_derivative": lambda x: calcjax.directional_derivative(jnp.sum, x, x),
    "complex_step_derivative": lambda x: calcjax.complex_step_derivative(jnp.sin, x),
    "complex_step_gradient": lambda x: calcjax.complex_step_gradient(jnp.sum, x),
    "richardson_derivative": lambda x: calcjax.richardson_derivative(jnp.sin, x),
    "richardson_gradient": lambda x: calcjax.richardson_gradient(jnp.sum, x),
    "default_step": lambda x: calcjax.default_step(x),
    "gradient_descent": lambda x: calcjax.gradient_descent(jnp.sum, x, lr=0.1, steps=1),
}

# Every public function taking a step h (complex step: the imaginary step).
H_CALLS = {
    "derivative": lambda h: calcjax.derivative(jnp.sin, X2, h=h),
    "gradient": lambda h: calcjax.gradient(jnp.sum, X2, h=h),
    "directional_derivative": lambda h: calcjax.directional_derivative(jnp.sum, X2, X2, h=h),
    "complex_step_derivative": lambda h: calcjax.complex_step_derivative(jnp.sin, X2, h=h),
    "complex_step_gradient": lambda h: calcjax.complex_step_gradient(jnp.sum, X2, h=h),
    "richardson_derivative": lambda h: calcjax.richardson_derivative(jnp.sin, X2, h=h),
    "richardson_gradient": lambda h: calcjax.richardson_gradient(jnp.sum, X2, h=h),
}

# Every public function taking scheme and order.
STENCIL_CALLS = {
    "stencil": lambda **kw: calcjax.stencil(**kw),
    "default_step": lambda **kw: calcjax.default_step(X2, **kw),
    "derivative": lambda **kw: calcjax.derivative(jnp.sin, X2, **kw),
    "gradient": lambda **kw: calcjax.gradient(jnp.sum, X2, **kw),
    "directional_derivative": lambda **kw: calcjax.directional_derivative(jnp.sum, X2, X2, **kw),
    "directional_derivative-h": lambda **kw: calcjax.directional_derivative(jnp.sum, X2, X2, h=0.1, **kw),
}

BATCH_CALLS = {
    "gradient": lambda b: calcjax.gradient(jnp.sum, X2, batch_size=b),
    "complex_step_gradient": lambda b: calcjax.complex_step_gradient(jnp.sum, X2, batch_size=b),
    "richardson_gradient": lambda b: calcjax.richardson_gradient(jnp.sum, X2, batch_size=b),
}


# --------------------------------------------------------------------------- f


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_non_scalar_f_is_refused_with_its_shape(call):
    with pytest.raises(ValueError, match=r"f must return a scalar, got an output of shape \(2,\)"):
        call(_vector_out)


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_non_scalar_f_is_refused_under_jit(call):
    """The check is static: it fires while tracing."""
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        jax.jit(lambda: call(_vector_out))()


def test_f_returning_an_integer_is_refused():
    with pytest.raises(TypeError, match="f must return a floating scalar, got dtype int32"):
        calcjax.derivative(lambda t: jnp.int32(1), 1.0)


def test_f_returning_a_tuple_is_refused():
    with pytest.raises(ValueError, match="f must return a scalar array, got tuple"):
        calcjax.gradient(lambda x: (x[0], x[1]), X2)


@pytest.mark.parametrize(
    "call",
    [
        lambda: calcjax.complex_step_derivative(jnp.abs, 1.0),
        lambda: calcjax.complex_step_gradient(lambda x: jnp.sum(jnp.abs(x)), X2),
    ],
    ids=["derivative", "gradient"],
)
def test_complex_step_refuses_f_that_drops_the_imaginary_part(call):
    with pytest.raises(ValueError, match="drops the imaginary part"):
        call()


# --------------------------------------------------------------------------- x


@pytest.mark.parametrize("call", X_CALLS.values(), ids=X_CALLS.keys())
@pytest.mark.parametrize(
    ("x", "message"),
    [
        (jnp.arange(2), "x must have a real floating dtype .* got dtype int"),
        (np.array([1, 2], np.int32), "got dtype int32; cast it first"),
        (jnp.ones(2, bool), "got dtype bool"),
        (jnp.ones(2, jnp.complex64), "got dtype complex64"),
    ],
    ids=["jax-int", "numpy-int32", "bool", "complex"],
)
def test_non_floating_x_is_a_type_error(call, x, message):
    with pytest.raises(TypeError, match=message):
        call(x)


@pytest.mark.parametrize("call", X_CALLS.values(), ids=X_CALLS.keys())
@pytest.mark.parametrize("x", [3, True], ids=["int", "bool"])
def test_python_int_x_is_a_type_error_with_a_fix(call, x):
    if isinstance(x, bool):
        message = "x must be floating, got the Python bool True; write 1.0 instead"
    else:
        message = "x must be floating, got the Python int 3; write 3.0 instead"
    with pytest.raises(TypeError, match=message):
        call(x)


@pytest.mark.parametrize(
    "bad",
    [jnp.int32(2), np.arange(3), jnp.ones(2, jnp.complex64), True],
    ids=["int32", "int-array", "complex", "bool"],
)
@pytest.mark.parametrize("call", ["gradient", "gradient_descent"])
def test_non_floating_leaf_of_a_pytree_is_named_by_its_path(bad, call):
    x = {"a": 1.0, "b": bad}
    run = {
        "gradient": lambda f: calcjax.gradient(f, x),
        "gradient_descent": lambda f: calcjax.gradient_descent(f, x, lr=0.1, steps=1),
    }[call]
    with pytest.raises(TypeError, match=r"x\['b'\] must"):
        run(lambda p: p["a"] + jnp.sum(p["b"]))


def test_empty_pytree_is_refused():
    with pytest.raises(ValueError, match="x must hold at least one array, got an empty pytree"):
        calcjax.gradient(lambda p: 0.0, {})


def test_directional_derivative_needs_a_direction_like_x():
    with pytest.raises(ValueError, match="direction has 3 entries but x has 2"):
        calcjax.directional_derivative(jnp.sum, X2, jnp.ones(3))
    with pytest.raises(ValueError, match="direction must have the structure of x"):
        calcjax.directional_derivative(lambda p: jnp.sum(p["a"]), {"a": X2}, X2)


# --------------------------------------------------------------------------- h


@pytest.mark.parametrize("call", H_CALLS.values(), ids=H_CALLS.keys())
@pytest.mark.parametrize(
    ("h", "shown"),
    [(0.0, r"0\."), (-1e-3, r"-0\.001"), (np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")],
    ids=["zero", "negative", "nan", "inf", "-inf"],
)
def test_bad_step_is_refused_with_its_value(call, h, shown):
    with pytest.raises(ValueError, match=rf"h must be positive and finite, got h=array\({shown}\)"):
        call(h)


@pytest.mark.parametrize("call", [H_CALLS["derivative"], H_CALLS["gradient"]], ids=["derivative", "gradient"])
def test_bad_entry_of_a_step_array_is_shown(call):
    with pytest.raises(ValueError, match=r"h must be positive and finite, got h=array\(\[-1\.\]\)"):
        call(jnp.asarray([1e-3, -1.0]))


@pytest.mark.parametrize("call", H_CALLS.values(), ids=H_CALLS.keys())
@pytest.mark.parametrize("h", ["a", 1e-3j, True], ids=["str", "complex", "bool"])
def test_non_real_step_is_a_type_error(call, h):
    with pytest.raises(TypeError, match=r"h must be a real number or an array of real numbers, got h="):
        call(h)


def test_wrong_shaped_step_is_refused():
    with pytest.raises(
        ValueError, match=r"h must be a scalar or have the shape of x \(2,\), got shape \(3,\)"
    ):
        calcjax.derivative(jnp.sin, X2, h=jnp.full(3, 1e-3))
    with pytest.raises(
        ValueError, match=r"h must be a scalar or have the shape of x \(2,\), got shape \(3,\)"
    ):
        calcjax.gradient(jnp.sum, X2, h=jnp.full(3, 1e-3))


def test_step_pytree_of_the_wrong_structure_is_refused():
    with pytest.raises(ValueError, match="h must be a scalar or have the structure and shapes of x"):
        calcjax.gradient(lambda p: jnp.sum(p["a"]), {"a": X2}, h={"b": 1e-3})


def test_richardson_wrong_shaped_step_is_refused():
    with pytest.raises(
        ValueError, match=r"h must be a scalar or have the shape of x \(3,\), got shape \(2,\)"
    ):
        calcjax.richardson_derivative(jnp.sin, jnp.ones(3), h=jnp.full(2, 0.1))


def test_richardson_step_shaped_like_x():
    x = jnp.full((2, 3), 0.5)
    est = calcjax.richardson_derivative(jnp.sin, x, h=jnp.full((2, 3), 0.1))
    np.testing.assert_allclose(est.value, np.cos(0.5), rtol=1e-12)


def test_directional_derivative_refuses_an_array_step():
    with pytest.raises(ValueError, match="h must be a scalar"):
        calcjax.directional_derivative(jnp.sum, jnp.ones(3), jnp.ones(3), h=jnp.full(3, 1e-3))


# --------------------------------------------------------------------------- scheme and order


@pytest.mark.parametrize("call", STENCIL_CALLS.values(), ids=STENCIL_CALLS.keys())
def test_unknown_scheme_lists_the_valid_ones(call):
    with pytest.raises(ValueError, match="unknown scheme 'upwind'; valid: 'forward', 'backward', 'central'"):
        call(scheme="upwind")


@pytest.mark.parametrize("call", STENCIL_CALLS.values(), ids=STENCIL_CALLS.keys())
@pytest.mark.parametrize(
    ("scheme", "order", "valid"),
    [("central", 3, "2, 4, 6"), ("central", 1, "2, 4, 6"), ("forward", 4, "1, 2"), ("backward", 0, "1, 2")],
)
def test_unknown_order_lists_the_valid_ones(call, scheme, order, valid):
    with pytest.raises(ValueError, match=f"unknown order for scheme '{scheme}' {order}; valid: {valid}"):
        call(scheme=scheme, order=order)


# --------------------------------------------------------------------------- batch_size


@pytest.mark.parametrize("call", BATCH_CALLS.values(), ids=BATCH_CALLS.keys())
@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "4"], ids=["0", "-3", "2.5", "True", "str"])
def test_bad_batch_size_is_refused(call, batch_size):
    with pytest.raises(
        ValueError, match=rf"batch_size must be a positive integer or None, got {batch_size!r}"
    ):
        call(batch_size)


def test_numpy_integer_batch_size_is_fine():
    g = calcjax.gradient(jnp.sum, X2, batch_size=np.int64(1))
    np.testing.assert_allclose(g, [1.0, 1.0])


# --------------------------------------------------------------------------- Richardson settings


@pytest.mark.parametrize("num_steps", [1, 13, 2.0, True], ids=["1", "13", "float", "bool"])
def test_richardson_num_steps_range(num_steps):
    with pytest.raises(ValueError, match=rf"num_steps must be an integer from 2 to 12, got {num_steps!r}"):
        calcjax.richardson_derivative(jnp.sin, 1.0, num_steps=num_steps)


@pytest.mark.parametrize("step_ratio", [1.0, 0.5, np.inf, np.nan, "2"], ids=["1", "0.5", "inf", "nan", "str"])
def test_richardson_step_ratio_range(step_ratio):
    with pytest.raises(ValueError, match="step_ratio must be a finite number > 1, got"):
        calcjax.richardson_gradient(jnp.sum, X2, step_ratio=step_ratio)


# --------------------------------------------------------------------------- gradient_descent settings


def _descend(**kw):
    settings = {"lr": 0.1, "steps": 3} | kw
    return calcjax.gradient_descent(lambda x: x**2, 5.0, **settings)


@pytest.mark.parametrize("steps", [-1, 1.5, True, "3", None], ids=["-1", "1.5", "True", "str", "None"])
def test_bad_steps_is_refused(steps):
    with pytest.raises(ValueError, match=rf"steps must be an integer >= 0, got steps={steps!r}"):
        _descend(steps=steps)


@pytest.mark.parametrize(
    "lr", [np.nan, np.inf, -np.inf, jnp.asarray(np.nan)], ids=["nan", "inf", "-inf", "jax-nan"]
)
def test_non_finite_lr_is_refused(lr):
    with pytest.raises(ValueError, match="lr must be finite, got lr="):
        _descend(lr=lr)


@pytest.mark.parametrize("lr", ["0.1", 0.1j], ids=["str", "complex"])
def test_non_numeric_lr_is_a_type_error(lr):
    with pytest.raises(
        TypeError, match=rf"lr must be a real number or an array of real numbers, got lr={lr!r}"
    ):
        _descend(lr=lr)


def test_unknown_method_lists_the_registry():
    with pytest.raises(
        ValueError, match="unknown gradient method 'fd-upwind'; valid: fd-forward, fd-central"
    ):
        _descend(method="fd-upwind")


def test_unavailable_method_says_why():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="fd-complex needs x64"):
            calcjax.gradient_descent(lambda x: x**2, 5.0, lr=0.1, steps=1, method="fd-complex")


# --------------------------------------------------------------------------- x64


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: calcjax.complex_step_derivative(jnp.sin, 1.0), "complex_step_derivative"),
        (lambda: calcjax.complex_step_gradient(jnp.sum, jnp.ones(2, jnp.float32)), "complex_step_gradient"),
    ],
    ids=["derivative", "gradient"],
)
def test_complex_step_without_x64_says_how_to_switch_it_on(call, what):
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=rf"{what} works in complex128 and needs 64-bit JAX"):
            call()
    assert jax.config.jax_enable_x64  # restored


# --------------------------------------------------------------------------- NaN is not hidden


def _nan_above_one(t):
    return jnp.where(t > 1.0, jnp.nan, t**2)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: calcjax.derivative(_nan_above_one, x),
        lambda x: calcjax.derivative(_nan_above_one, x, scheme="forward", order=1),
        lambda x: calcjax.derivative(_nan_above_one, x, scheme="backward", order=2),
        lambda x: calcjax.richardson_derivative(_nan_above_one, x).value,
        lambda x: jax.jit(calcjax.derivative, static_argnums=0)(_nan_above_one, x),
    ],
    ids=["central", "forward", "backward", "richardson", "jit"],
)
@pytest.mark.filterwarnings("ignore::calcjax.DomainWarning")
def test_nan_in_f_gives_nan_in_the_derivative(call):
    d = call(jnp.asarray([0.5, 2.0, 3.0]))
    assert np.isfinite(d[0])
    assert np.all(np.isnan(d[1:]))


@pytest.mark.parametrize(
    "call",
    [
        lambda f, x: calcjax.gradient(f, x),
        lambda f, x: calcjax.gradient(f, x, scheme="forward", order=1, batch_size=1),
        lambda f, x: calcjax.richardson_gradient(f, x).value,
    ],
    ids=["central", "forward-chunked", "richardson"],
)
@pytest.mark.filterwarnings("ignore::calcjax.DomainWarning")
def test_nan_in_f_gives_nan_in_the_gradient(call):
    """f is NaN at x itself: every coordinate's stencil sees it."""
    f = lambda x: jnp.sqrt(x[0] - 2.0) + jnp.sum(x[1:] ** 2)
    g = call(f, jnp.asarray([1.0, 1.0, 2.0]))
    assert np.all(np.isnan(g))


def test_nan_in_one_coordinate_stays_in_that_coordinate():
    """x0 - h < 0 is NaN: that coordinate alone goes one-sided (and is reported); x1 is untouched."""
    f = lambda x: jnp.sum(jnp.sqrt(x))
    with pytest.warns(calcjax.DomainWarning, match="for 1 coordinate"):
        g = calcjax.gradient(f, jnp.asarray([0.0, 1.0]))
    assert np.isfinite(g[0])
    assert g[1] == pytest.approx(0.5, rel=1e-8)


def test_inf_in_f_is_not_hidden():
    with pytest.warns(calcjax.DomainWarning, match="no finite difference of f at any step for 1 coordinate"):
        g = calcjax.gradient(lambda x: jnp.sum(1.0 / x), jnp.asarray([0.0, 1.0]))
    # f(x + h e1) = 1/0 + ... = inf on both sides: inf - inf is NaN
    assert np.isnan(g[1])


def test_no_lr_and_no_optimizer_says_which_is_needed():
    with pytest.raises(ValueError, match=r"lr is required \(a learning rate\), unless an optax optimizer="):
        _descend(lr=None)


def test_nan_in_descent_is_not_hidden():
    """A non-finite loss stops the descent at its step: x stays the last finite iterate, the loss is NaN."""
    res = calcjax.gradient_descent(lambda x: jnp.sqrt(x - 10.0), 5.0, lr=0.1, steps=2, method="fd-central")
    assert int(res.stopped_at) == 0
    assert np.isnan(res.losses[0])
    assert float(res.x) == 5.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: calcjax.complex_step_derivative(jnp.sqrt, -1.0),
        lambda: calcjax.complex_step_gradient(lambda x: jnp.sum(jnp.log(x)), jnp.asarray([-1.0, 1.0]))[0],
        lambda: calcjax.complex_step_gradient(lambda x: jnp.sqrt(x[0] - 2.0) + x[1] ** 2, jnp.ones(2))[1],
    ],
    ids=["derivative", "gradient", "gradient-nan-at-x"],
)
def test_complex_step_does_not_hide_nan_of_f(call):
    assert np.isnan(call())


# --------------------------------------------------------------------------- issue 12: steps, empty x


@pytest.mark.parametrize(
    "call",
    [
        lambda f, x, h: calcjax.derivative(f, x, h=h),
        lambda f, x, h: calcjax.gradient(lambda w: jnp.sum(jax.vmap(f)(w)), x, h=h),
        lambda f, x, h: calcjax.richardson_derivative(f, x, h=h),
    ],
    ids=["derivative", "gradient", "richardson"],
)
def test_step_below_the_resolution_of_x_is_refused(call):
    """(x + h) - x == 0 used to give NaN silently: now a ValueError naming the coordinate and the fix."""
    x = jnp.full(3, 1000.0, jnp.float32)
    with pytest.raises(ValueError, match=r"below the resolution of x\[0\] = 1000\.0 \(float32\).*6\.1035"):
        call(jnp.square, x, 1e-5)


def test_step_below_the_resolution_in_float64():
    with pytest.raises(ValueError, match=r"below the resolution of x = 1\.0 \(float64\).*2\.22"):
        calcjax.derivative(jnp.sin, jnp.float64(1.0), h=1e-17)
    # the smallest step named works
    d = calcjax.derivative(lambda t: t, jnp.float64(1.0), h=float(np.spacing(1.0)), scheme="forward", order=1)
    assert float(d) == 1.0


def test_step_below_the_resolution_under_jit_is_nan_as_documented():
    d = jax.jit(lambda x: calcjax.derivative(jnp.sin, x, h=1e-17))(jnp.float64(1.0))
    assert np.isnan(d)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: calcjax.derivative(jnp.sin, x),
        lambda x: calcjax.gradient(jnp.sum, x),
        lambda x: calcjax.richardson_derivative(jnp.sin, x),
        lambda x: calcjax.richardson_gradient(jnp.sum, x),
        lambda x: calcjax.complex_step_derivative(jnp.sin, x),
        lambda x: calcjax.complex_step_gradient(jnp.sum, x),
        lambda x: calcjax.directional_derivative(jnp.sum, x, x),
    ],
    ids=["derivative", "gradient", "richardson", "richardson_gradient", "cs", "cs_gradient", "directional"],
)
def test_empty_x_is_one_error_everywhere(call):
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0,\)\): there is nothing to differentiate"):
        call(jnp.zeros(0))
