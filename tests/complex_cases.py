"""Test data shared by the compare and complex-step safety tests: a small logistic regression on the
CPU, and functions the complex step cannot (``UNSAFE``, with the culprit) and can (``SAFE``) differentiate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: These tests run on the CPU, also on a machine with a GPU: there complex matrix products lose
#: the complex step's imaginary part, which test_matrix_products_are_culprits_on_gpu covers.
CPU = jax.devices("cpu")[0]
RNG = np.random.default_rng(7)
A = jax.device_put(RNG.standard_normal((40, 6)), CPU)
Y = jax.device_put(np.sign(RNG.standard_normal(40)), CPU)
X0 = jax.device_put(0.3 * RNG.standard_normal(6), CPU)


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
