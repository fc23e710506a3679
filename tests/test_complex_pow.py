"""The complex step's refusal names a negative base to a float power as the cause."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax


def test_negative_base_to_a_float_power_is_named():
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"negative base to a float power .*pow at .*test_complex_pow"):
            calcjax.complex_step_derivative(lambda t: t**3.0, jnp.array([1.0, -2.0]))
        with pytest.raises(ValueError, match="negative base to a float power") as info:
            calcjax.complex_step_gradient(lambda w: jnp.sum(w**3.0) + w[0] ** 2.5, jnp.array([1.0, -2.0]))
    assert "drops the imaginary part" not in str(info.value)


def test_positive_base_to_a_float_power_is_accepted_and_exact():
    with jax.enable_x64(True):
        d = calcjax.complex_step_derivative(lambda t: t**3.0, jnp.array([0.5, 2.0]))
        g = calcjax.complex_step_gradient(lambda w: jnp.sum(w**2.5), jnp.array([0.5, 2.0]))
    np.testing.assert_allclose(np.asarray(d), 3 * np.array([0.5, 2.0]) ** 2, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(g), 2.5 * np.array([0.5, 2.0]) ** 1.5, rtol=1e-15)
