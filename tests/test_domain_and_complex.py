"""Issue 13: the one rule for non-finite values of f (plain schemes), and honest complex-step refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax


def _exp_on_0_2(t):
    return jnp.where((t < 0) | (t > 2), jnp.nan, jnp.exp(t))


@pytest.mark.parametrize("order", [2, 4, 6])
def test_central_goes_one_sided_of_the_same_order_at_a_domain_edge(order):
    with jax.enable_x64(True):
        x = jnp.asarray([0.0, 1.0, 2.0])
        with pytest.warns(calcjax.DomainWarning, match="for 2 coordinate"):
            d = calcjax.derivative(_exp_on_0_2, x, order=order)
        # one-sided order p with the central step: the same order of accuracy
        np.testing.assert_allclose(np.asarray(d), np.exp([0.0, 1.0, 2.0]), rtol=1e-8)
        with pytest.warns(calcjax.DomainWarning, match="for 2 coordinate"):
            g = calcjax.gradient(lambda w: jnp.sum(_exp_on_0_2(w)), x, order=order)
        np.testing.assert_allclose(np.asarray(g), np.exp([0.0, 1.0, 2.0]), rtol=1e-8)


def test_fallback_under_jit_is_silent_and_the_same():
    with jax.enable_x64(True):
        x = jnp.asarray([0.0, 1.0, 2.0])
        d = jax.jit(lambda t: calcjax.gradient(lambda w: jnp.sum(_exp_on_0_2(w)), t))(x)
        np.testing.assert_allclose(np.asarray(d), np.exp([0.0, 1.0, 2.0]), rtol=1e-8)


def test_one_sided_scheme_falls_back_to_the_other_side():
    with jax.enable_x64(True), pytest.warns(calcjax.DomainWarning, match="for 1 coordinate"):
        d = calcjax.derivative(_exp_on_0_2, jnp.asarray([1.0, 2.0]), scheme="forward", order=2)
    np.testing.assert_allclose(np.asarray(d), np.exp([1.0, 2.0]), rtol=1e-8)


def test_nothing_finite_stays_nan_and_says_how_many():
    with pytest.warns(calcjax.DomainWarning, match="no finite difference of f at any step for 2 coordinate"):
        d = calcjax.derivative(lambda t: jnp.nan * t, jnp.asarray([1.0, 2.0, 3.0])[:2])
    assert np.all(np.isnan(np.asarray(d)))


def test_no_fallback_cost_when_f_is_finite():
    """The one-sided stencils are evaluated only when some coordinate needs them."""
    calls = []
    f = lambda t: jax.debug.callback(lambda s: calls.append(np.size(s)), t) or jnp.sin(t)
    calcjax.derivative(f, jnp.asarray([0.5, 1.0]))
    assert sum(calls) == 2 * 2  # central order 2: two points per entry, nothing more
    calls.clear()
    with pytest.warns(calcjax.DomainWarning):
        calcjax.derivative(lambda t: f(t) + jnp.where(t > 1.5, jnp.nan, 0.0), jnp.asarray([0.5, 1.5]))
    assert sum(calls) == 2 * 2 + 2 * 2 * 3  # and both one-sided stencils (3 points each) when needed


# --------------------------------------------------------------------------- complex step


@pytest.mark.parametrize(
    ("f", "df"), [(jnp.log10, lambda x: 1 / (x * np.log(10))), (jnp.log2, lambda x: 1 / (x * np.log(2)))]
)
def test_log10_and_log2_are_not_falsely_refused(f, df):
    with jax.enable_x64(True):
        d = calcjax.complex_step_derivative(f, jnp.asarray([0.5, 3.0]))
    np.testing.assert_allclose(np.asarray(d), df(np.asarray([0.5, 3.0])), rtol=2e-16)


def test_real_imag_recombined_differently_is_still_a_culprit():
    bad = lambda z: jax.lax.complex(jnp.real(z) * 2.0, jnp.imag(z) * 3.0)
    with jax.enable_x64(True):
        assert calcjax.complex_step_culprits(bad, jnp.zeros(()))
        assert calcjax.complex_step_culprits(
            lambda z: jax.lax.complex(jnp.real(z), -jnp.imag(z)), jnp.zeros(())
        )


def test_an_op_rejecting_complex_input_is_calcjax_s_value_error():
    def loss(w):
        return jnp.sum(jax.scipy.special.ndtr(w))

    with jax.enable_x64(True):
        with pytest.raises(
            ValueError, match=r"ndtr rejects complex input at .*test_domain_and_complex.py:\d+ \(loss\)"
        ):
            calcjax.complex_step_gradient(loss, jnp.ones(2))
        with pytest.raises(ValueError, match="ndtr rejects complex input"):
            calcjax.complex_step_derivative(jax.scipy.special.ndtr, 1.0)
        with pytest.raises(ValueError, match="ndtr rejects complex input"):
            calcjax.check_complex_step(loss, jnp.ones(2))


def test_underflow_is_named_as_the_cause():
    with (
        jax.enable_x64(True),
        pytest.raises(ValueError, match=r"the complex step underflows at x\[0\].*1e-325"),
    ):
        calcjax.complex_step_derivative(jnp.exp, -700.0)


def test_removable_singularity_does_not_poison_the_complex_step():
    """numdifftools' test_fornberg fun4: z * (0.5 + 1/expm1(z)) is NaN at 0 (0 * inf); its derivative is 0."""
    f = lambda z: z * (0.5 + 1.0 / jnp.expm1(z))
    with jax.enable_x64(True):
        d = calcjax.complex_step_derivative(f, jnp.asarray([0.0, 1.0]))
        exact1 = 0.5 + 1 / np.expm1(1.0) - np.exp(1.0) / np.expm1(1.0) ** 2
        assert float(d[0]) == 0.0
        assert float(d[1]) == pytest.approx(exact1, rel=1e-15)
        # outside the real domain the NaN stays (sqrt at -1: f is NaN at -1 +- d too)
        d = calcjax.complex_step_derivative(jnp.sqrt, jnp.asarray([-1.0, 4.0]))
        assert np.isnan(d[0])
        assert float(d[1]) == 0.25
