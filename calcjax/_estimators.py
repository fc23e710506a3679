"""Randomized gradient estimators: SPSA, Gaussian smoothing and forward gradients.

Each estimates ``grad f(x)`` from a few evaluations of ``f`` (or one JVP) along
random directions, whatever ``n`` is. The directions come from a ``jax.random``
key: the estimate at step ``k`` of a descent uses ``fold_in(key, k)``, so a
run is reproduced bit for bit from its key and nothing is stored between steps
(memory ``O(n)``; ``O(k n)`` for the ``k`` directions of Gaussian smoothing,
evaluated as one batch). ``f`` is called on JAX arrays only, inside the
caller's trace. Drawing the directions is ``O(n)`` work that can cost more than
a cheap ``f`` on a CPU: Rademacher signs take one random bit each, normal
entries a 32-bit word and an ``erfinv`` each.

On a quadratic ``f(x) = 0.5 x'Hx + b'x`` with gradient ``g`` the estimators
are unbiased and their covariances are known exactly (the tests check them):

======================  =========================  ===================================
estimator               per-coordinate variance    total variance (sum over i)
======================  =========================  ===================================
SPSA (Rademacher v)     ``|g|^2 - g_i^2``          ``(n - 1) |g|^2``
forward gradient        ``|g|^2 + g_i^2``          ``(n + 1) |g|^2``
Gaussian, k directions  ``(|g|^2 + g_i^2 + C_i)/k``  ``((n + 1)|g|^2 + sum C_i)/k``
======================  =========================  ===================================

with ``C_i = mu^2/4 * ((tr H)^2 + 2 tr(H^2) + 4 H_ii tr H + 8 (H^2)_ii)``, the
curvature that the forward difference of Gaussian smoothing sees (see
:func:`gaussian_smoothing_gradient`). Beyond quadratics SPSA has an ``O(c^2)``
bias and Gaussian smoothing an ``O(mu)`` one (third derivatives); the forward
gradient is unbiased for every differentiable ``f``.

References:
  J. C. Spall, "Implementation of the simultaneous perturbation algorithm for
  stochastic optimization", IEEE Trans. Aerospace and Electronic Systems 34(3), 1998.
  Y. Nesterov and V. Spokoiny, "Random gradient-free minimization of convex
  functions", Found. Comput. Math. 17, 2017.
  S. Malladi et al., "Fine-tuning language models with just forward passes" (MeZO), NeurIPS 2023.
  A. G. Baydin et al., "Gradients without backpropagation", arXiv:2202.08587, 2022.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from calcjax import _finite_diff as fd
from calcjax import _validate as v

__all__ = [
    "SPALL_ALPHA",
    "SPALL_GAMMA",
    "forward_gradient",
    "gaussian_smoothing_gradient",
    "spall_gain",
    "spsa_gradient",
]

#: Spall's exponent of the gain ``a_k = a / (A + k + 1)**alpha`` (the step size).
SPALL_ALPHA = 0.602
#: Spall's exponent of the perturbation ``c_k = c / (k + 1)**gamma``.
SPALL_GAMMA = 0.101


def check_key(key: Any, name: str = "key") -> None:
    """``ValueError`` for a missing key, ``TypeError`` unless ``key`` is a ``jax.random`` key.

    Typed keys (``jax.random.key(0)``) and raw ``uint32[2]`` ones (``jax.random.PRNGKey(0)``)
    are accepted. Static checks only (dtype and shape), so it also fires under ``jax.jit``.
    """
    if key is None:
        raise ValueError(
            f"a randomized estimator needs {name}=, a jax.random key: e.g. {name}=jax.random.key(0) "
            "(the same key reproduces the run bit for bit)"
        )
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == jnp.uint32 and shape == (2,):
        return
    raise TypeError(
        f"{name} must be one jax.random key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
        f"{type(key).__name__} with dtype {dtype} and shape {shape}"
    )


def _check_step(step: Any) -> None:
    if isinstance(step, bool) or not (
        isinstance(step, int) or jnp.issubdtype(getattr(step, "dtype", float), jnp.integer)
    ):
        raise TypeError(f"step must be an integer (the descent step, >= 0), got step={step!r}")
    if isinstance(step, int) and step < 0:
        raise ValueError(f"step must be >= 0, got step={step}")


def _setup(f: Callable[..., Any], x: Any, key: Any, step: Any):
    """Flatten ``x``, check ``f`` and the key, and the key of this step: ``fold_in(key, step)``."""
    check_key(key)
    _check_step(step)
    flat, unravel = fd._flatten(x)
    v.check_nonempty(flat, "x")
    f_flat = lambda z: f(unravel(z))
    v.check_scalar_function(f_flat, flat)
    return flat, unravel, f_flat, jax.random.fold_in(key, step)


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """Independent ``+-1`` entries, one random bit each: 32 entries per 32-bit word drawn.

    Ten times cheaper than ``jax.random.rademacher`` (one word per entry) at
    ``n = 10 000`` on a CPU, and the same with x64 on or off (``rademacher``
    draws differently in the two modes).
    """
    size = math.prod(shape)
    words = jax.random.bits(key, (-(-size // 32),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return (1 - 2 * bits.reshape(-1)[:size].astype(jnp.int8)).astype(dtype).reshape(shape)


def _normal(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """Standard normal entries drawn in float32 and cast to ``dtype``.

    A direction needs no more than float32's 24 bits: drawing float64 takes
    twice the random bits and a costlier ``erfinv`` (about 2x the time at
    ``n = 10 000`` on a CPU). The float32 rounding changes ``E[v v']`` from
    ``I`` by ~1e-8 relative, far below any estimator's own noise.
    """
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


def spall_gain(a: ArrayLike, *, A: ArrayLike = 0.0, alpha: float = SPALL_ALPHA) -> Callable[[Any], Any]:
    """Spall's step-size sequence ``a_k = a / (A + k + 1)**alpha``, as an optax schedule.

    With :func:`calcjax.gradient_descent` a plain ``lr`` is a constant step for
    every method, SPSA included (the fair comparison). For Spall's decaying
    gain pass ``optimizer=optax.sgd(spall_gain(a, A=A))``: ``a`` then plays
    the role of ``lr`` at ``k = 0`` up to the factor ``(A + 1)**alpha``. Spall
    suggests ``A`` about 10 % of the number of steps and ``alpha = 0.602``.

    Args:
      a: gain numerator, positive.
      A: stability constant, ``>= 0``.
      alpha: decay exponent (Spall: 0.602; 1 is the asymptotically optimal rate).

    Returns:
      ``schedule(k) -> a / (A + k + 1)**alpha`` (``k`` may be traced).

    Example:
      >>> gain = calcjax.spall_gain(1.0, A=9.0)
      >>> round(float(gain(0)), 4), round(float(gain(90)), 4)
      (0.25, 0.0625)
    """
    v.check_positive_finite(a, "a")
    v.check_finite(A, "A")
    v.check_positive_finite(alpha, "alpha")
    if v.is_concrete(A) and float(jnp.asarray(A)) < 0:
        raise ValueError(f"A must be >= 0, got A={A!r}")

    def schedule(k: Any) -> Any:
        return a / (A + jnp.asarray(k) + 1) ** alpha

    return schedule


def spsa_gradient(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    key: Any = None,
    c: ArrayLike | None = None,
    step: Any = 0,
    gamma: float = SPALL_GAMMA,
) -> Any:
    """SPSA: ``(f(x + c_k v) - f(x - c_k v)) / (2 c_k) * v`` with Rademacher ``v``; 2 evaluations.

    ``v`` has independent entries ``+-1`` drawn from ``fold_in(key, step)``.
    The perturbation follows Spall's sequence ``c_k = c / (step + 1)**gamma``
    (``gamma = 0.101``); ``c`` defaults to the automatic step of a central
    difference, :func:`calcjax.default_step` of ``max|x|`` (``eps**(1/3)`` of
    the dtype times ``max(1, max|x|)``), as :func:`calcjax.directional_derivative`
    takes it. Spall's step-size gain ``a_k`` is the descent's business: see
    :func:`spall_gain`.

    On a quadratic the central difference is exactly ``g.v`` (the curvature
    cancels), so the estimate is ``(g.v) v``: unbiased, since ``E[v v'] = I``,
    with per-coordinate variance ``sum_{j != i} g_j^2 = |g|^2 - g_i^2``
    (because ``v_i^2 = 1``) and total variance ``(n - 1)|g|^2``. Elsewhere the
    bias is ``O(c_k^2)`` (third derivatives).

    Args:
      f: scalar function of ``x``, traceable by JAX.
      x: the point, an array or a pytree of floating arrays.
      key: a ``jax.random`` key (required).
      c: perturbation size at step 0, a positive scalar; ``None``: automatic.
      step: the descent step ``k`` (an integer, may be traced): selects the
        direction ``fold_in(key, k)`` and the perturbation ``c_k``.
      gamma: decay exponent of ``c_k``; 0 keeps ``c`` fixed.

    Returns:
      The estimate, with ``x``'s structure and dtype.

    Raises:
      ValueError: no key, ``c`` not positive and finite, ``f`` not scalar.
      TypeError: ``key`` is not a ``jax.random`` key, ``x`` not floating.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> g = calcjax.spsa_gradient(lambda x: jnp.sum(x**2), jnp.ones(3), key=jax.random.key(0))
      >>> [round(float(t), 6) for t in g]  # (g.v) v with g = (2, 2, 2) and this key's v = (-1, 1, 1)
      [-2.0, 2.0, 2.0]
    """
    v.check_positive_finite(c, "c")
    v.check_finite(gamma, "gamma")
    flat, unravel, _, k = _setup(f, x, key, step)
    direction = _rademacher(k, flat.shape, flat.dtype)
    c0 = fd.default_step(jnp.max(jnp.abs(flat))) if c is None else jnp.asarray(c, flat.dtype)
    h = c0 / (jnp.asarray(step, flat.dtype) + 1) ** jnp.asarray(gamma, flat.dtype)
    d = fd.directional_derivative(f, x, unravel(direction), h=h)
    return unravel(d * direction)


def gaussian_smoothing_gradient(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    key: Any = None,
    k: int = 1,
    mu: ArrayLike | None = None,
    step: Any = 0,
) -> Any:
    """Gaussian smoothing: ``mean_i (f(x + mu u_i) - f(x)) / mu * u_i``, ``u_i ~ N(0, I)``; k + 1 evaluations.

    The ``k`` directions are drawn from ``fold_in(key, step)`` (in float32,
    then cast to ``x``'s dtype); ``f(x)`` is evaluated once and the ``k``
    perturbed points in one batch (``k n`` entries). ``mu`` defaults to the automatic forward-difference step,
    :func:`calcjax.default_step` of ``max|x|`` for order 1 (``sqrt(eps)``
    times ``max(1, max|x|)``).

    On a quadratic with Hessian ``H`` each term is
    ``e = (g.u) u + mu/2 (u'Hu) u``. The curvature term has mean zero (it is
    odd in ``u``), so the estimator is unbiased there even though the
    difference is one-sided, and it is uncorrelated with the first term (odd
    again). With ``E[u_i^4] = 3`` and Isserlis' theorem the per-coordinate
    variance of the mean of ``k`` terms is exactly
    ``(|g|^2 + g_i^2 + C_i) / k`` with
    ``C_i = mu^2/4 * ((tr H)^2 + 2 tr(H^2) + 4 H_ii tr H + 8 (H^2)_ii)``:
    total ``((n + 1)|g|^2 + sum_i C_i) / k``. At the automatic ``mu`` the
    ``C_i`` are ``~eps`` and negligible. Elsewhere the bias is ``O(mu)``.
    Other ``k`` than the registry's: ``functools.partial(gaussian_smoothing_gradient, k=5)``
    in a ``calcjax.GradientMethod(..., stochastic=True)``.

    Args:
      f: scalar function of ``x``, traceable by JAX.
      x: the point, an array or a pytree of floating arrays.
      key: a ``jax.random`` key (required).
      k: number of directions, an integer >= 1 (static).
      mu: smoothing radius, a positive scalar; ``None``: automatic.
      step: the descent step (an integer, may be traced): selects the
        directions, ``fold_in(key, step)``.

    Returns:
      The estimate, with ``x``'s structure and dtype.

    Raises:
      ValueError: no key, ``k`` not an integer >= 1, ``mu`` not positive and finite, ``f`` not scalar.
      TypeError: ``key`` is not a ``jax.random`` key, ``x`` not floating.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: jnp.sum(x**2)
      >>> g = calcjax.gaussian_smoothing_gradient(f, jnp.ones(3), key=jax.random.key(0), k=4)
      >>> g.shape
      (3,)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of directions) must be an integer >= 1, got k={k!r}")
    v.check_positive_finite(mu, "mu")
    flat, unravel, f_flat, key = _setup(f, x, key, step)
    u = _normal(key, (k, flat.size), flat.dtype)
    t = fd.default_step(jnp.max(jnp.abs(flat)), scheme="forward", order=1) if mu is None else mu
    t = jnp.asarray(t, flat.dtype)
    f0 = f_flat(flat).astype(flat.dtype)
    fs = jax.vmap(f_flat)(flat[None, :] + t * u).astype(flat.dtype)
    return unravel(((fs - f0) / t) @ u / k)


#: Distributions of random directions, by the one name every function uses (``distribution=``
#: of :func:`forward_gradient` and :func:`calcjax.check_gradient`).
DISTRIBUTIONS = ("rademacher", "gaussian")


def forward_gradient(
    f: Callable[[Any], jax.Array], x: Any, *, key: Any = None, step: Any = 0, distribution: str = "rademacher"
) -> Any:
    """Forward gradient (Baydin et al.): ``(grad f . v) v`` along a random ``v``, from one JVP.

    ``v`` is drawn from ``fold_in(key, step)``; ``grad f . v`` is exact
    (forward-mode AD, ``jax.jvp``), so the estimate is unbiased for every
    differentiable ``f`` whenever ``E[v v'] = I``. The JVP also returns
    ``f(x)``, so a descent gets its loss free.

    ``distribution="rademacher"`` (the default): independent ``+-1`` entries, one
    random bit each (SPSA's signs). Since ``v_i^2 = 1`` the per-coordinate
    variance is ``|g|^2 - g_i^2``, total ``(n - 1)|g|^2``.
    ``distribution="gaussian"``: ``v ~ N(0, I)`` as in Baydin et al. (drawn in
    float32, then cast to ``x``'s dtype); ``E[v_i^4] = 3`` makes the variance
    ``|g|^2 + g_i^2``, total ``(n + 1)|g|^2``. Signs are the default because
    they are never worse in variance and far cheaper to draw: on a CPU with a
    cheap ``f``, ``n`` normal entries (threefry bits and an ``erfinv`` each)
    cost many times the JVP itself.

    Args:
      f: scalar function of ``x``, differentiable by JAX.
      x: the point, an array or a pytree of floating arrays.
      key: a ``jax.random`` key (required).
      step: the descent step (an integer, may be traced): selects the
        direction, ``fold_in(key, step)``.
      distribution: ``"rademacher"`` or ``"gaussian"`` (Baydin et al.), as in
        :func:`calcjax.check_gradient`.

    Returns:
      The estimate, with ``x``'s structure and dtype.

    Raises:
      ValueError: no key, ``f`` not scalar, unknown ``distribution``.
      TypeError: ``key`` is not a ``jax.random`` key, ``x`` not floating.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f, key = lambda x: jnp.sum(x**2), jax.random.key(0)
      >>> g = calcjax.forward_gradient(f, jnp.ones(3), key=key)
      >>> [round(float(t), 6) for t in g]  # (g.v) v: this key's signs are SPSA's, (-1, 1, 1)
      [-2.0, 2.0, 2.0]
      >>> calcjax.forward_gradient(f, jnp.ones(3), key=key, distribution="gaussian").shape
      (3,)
    """
    v.check_choice(distribution, DISTRIBUTIONS, "distribution")
    flat, unravel, f_flat, key = _setup(f, x, key, step)
    draw = _normal if distribution == "gaussian" else _rademacher
    direction = draw(key, flat.shape, flat.dtype)
    _, d = jax.jvp(f_flat, (flat,), (direction,))
    return unravel(d.astype(flat.dtype) * direction)
