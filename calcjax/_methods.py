"""The registry of gradient methods: one name -> one ``method(f, x) -> gradient``.

Benchmarks, ``compare`` and ``gradient_descent`` iterate over :data:`METHODS`;
nothing else keeps its own list. Families:

- ``fd``: calcjax's finite differences (JAX-traceable, jit-able);
- ``ad``: JAX's autodiff, reverse (``jax.grad``) and forward (``jax.jacfwd``);
- ``baseline``: the tutorial's NumPy loop and SciPy's ``approx_fprime``;
- ``peer``: other FD gradients a user might pick (naive ``jax.vmap``, ``lax.map``,
  ``scipy.differentiate``, numdifftools), for comparison in the suite;
- ``stochastic``: randomized estimators (SPSA, Gaussian smoothing, forward
  gradients; :mod:`calcjax._estimators`): an unbiased estimate from a few
  evaluations or one JVP, whatever ``n``. Their ``stochastic`` flag is set: they
  take ``key=`` and ``step=``, and suites that grade deterministic accuracy skip
  them (they are graded by their own statistical tests).

Non-traceable methods (baselines, NumPy peers) call ``f`` with NumPy arrays
shaped like ``x`` and return NumPy arrays.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from calcjax import _complex_step as cs
from calcjax import _estimators as est
from calcjax import _finite_diff as fd
from calcjax import _richardson as rich
from calcjax import baselines

__all__ = ["DEFAULT_KEY_SEED", "METHODS", "GradientMethod", "get_method", "register"]


@dataclass(frozen=True)
class GradientMethod:
    """A gradient method with its metadata.

    Attributes:
      name: registry name, e.g. ``"fd-central"``.
      fn: ``fn(f, x) -> gradient`` with ``x``'s structure; a stochastic method's
        is ``fn(f, x, key=None, step=0)`` (``key=None``: :data:`DEFAULT_KEY_SEED`).
      family: ``"fd"``, ``"ad"``, ``"baseline"``, ``"peer"`` or ``"stochastic"``.
      description: one line.
      evals: f-evaluations per gradient as a function of ``n`` (0 for AD).
      traceable: needs a JAX-traceable ``f`` and runs under ``jax.jit``.
      scheme: FD scheme (``None`` for AD).
      order: FD accuracy order (``None`` for AD and complex step).
      needs_x64: works in float64/complex128 only.
      max_n: largest ``n`` it is sensible to run (memory or time), ``None``: any.
      requires: importable module the method needs (optional dependency).
      memory: peak bytes for the perturbed points at ``(n, itemsize)``, when known.
      stochastic: a randomized estimate: the result depends on ``key`` and
        ``step`` (the direction is ``fold_in(key, step)``); called without a key
        it uses ``jax.random.key(DEFAULT_KEY_SEED)``, one reproducible draw.
    """

    name: str
    fn: Callable[[Callable[..., Any], Any], Any]
    family: str
    description: str
    evals: Callable[[int], int]
    traceable: bool = True
    scheme: str | None = None
    order: int | None = None
    needs_x64: bool = False
    max_n: int | None = None
    requires: str | None = None
    memory: Callable[[int, int], int] | None = field(default=None, repr=False)
    stochastic: bool = False

    def __call__(self, f: Callable[..., Any], x: Any, *, key: Any = None, step: Any = 0) -> Any:
        """The gradient of ``f`` at ``x``; ``key`` and ``step`` matter to stochastic methods only."""
        if self.stochastic:
            return self.fn(f, x, key=key, step=step)
        return self.fn(f, x)

    def unavailable(self) -> str | None:
        """Why the method cannot run here (missing package, x64 off), or ``None``."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"{self.name} needs the optional package {self.requires!r} (pip install {self.requires})"
        if self.needs_x64 and not jax.config.jax_enable_x64:
            return f"{self.name} needs x64: jax.config.update('jax_enable_x64', True)"
        return None


METHODS: dict[str, GradientMethod] = {}

#: A stochastic method called without a key (the registry's uniform ``fn(f, x)``,
#: as ``compare`` and the gradient suites call it) draws with ``jax.random.key(0)``.
DEFAULT_KEY_SEED = 0


def register(method: GradientMethod) -> GradientMethod:
    """Add ``method`` to :data:`METHODS` (its name must be new)."""
    if method.name in METHODS:
        raise ValueError(f"a gradient method called {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(method: str | Callable[..., Any] | GradientMethod) -> GradientMethod:
    """A registry entry from its name (or wrap a plain ``grad(f, x)`` callable)."""
    if isinstance(method, GradientMethod):
        return method
    if callable(method):
        name = getattr(method, "__name__", "custom")
        return GradientMethod(name, method, "custom", "user-supplied gradient", evals=lambda n: 0)
    if method not in METHODS:
        raise ValueError(f"unknown gradient method {method!r}; valid: {', '.join(METHODS)}")
    return METHODS[method]


# --------------------------------------------------------------------------- helpers for NumPy methods


def _numpy_method(flat_fn: Callable[[Callable[[np.ndarray], Any], np.ndarray], np.ndarray]):
    """Run a NumPy gradient on a pytree ``x``: flatten, call ``f`` on the unflattened copy."""

    def method(f: Callable[..., Any], x: Any) -> Any:
        leaves = jax.tree_util.tree_leaves(x)
        if not leaves:
            raise ValueError("x must hold at least one array, got an empty pytree")
        dtype = np.result_type(*[np.asarray(t).dtype for t in leaves])
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"x must have a floating dtype, got {dtype}")
        treedef = jax.tree_util.tree_structure(x)
        shapes = [np.shape(t) for t in leaves]
        sizes = [math.prod(s) for s in shapes]
        flat = np.concatenate([np.ravel(np.asarray(t, dtype)) for t in leaves])

        def unflatten(vec: np.ndarray) -> Any:
            parts = np.split(vec, np.cumsum(sizes)[:-1])
            return jax.tree_util.tree_unflatten(
                treedef, [p.reshape(s) for p, s in zip(parts, shapes, strict=True)]
            )

        is_flat = treedef == jax.tree_util.tree_structure(np.zeros(1)) and np.ndim(leaves[0]) == 1
        g_fun = f if is_flat else (lambda vec: f(unflatten(vec)))
        g = np.asarray(flat_fn(lambda vec: float(g_fun(vec)), flat), dtype).reshape(flat.shape)
        return g if is_flat else unflatten(g)

    return method


def _approx_fprime(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    from scipy.optimize import approx_fprime

    # SciPy's own default step, sqrt(eps) of float64; it is forward differences.
    return approx_fprime(x, f)


def _scipy_differentiate(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    from scipy.differentiate import jacobian

    def vectorised(xs: np.ndarray) -> np.ndarray:
        # scipy.differentiate calls f with extra trailing axes; a user's f is not vectorised.
        cols = xs.reshape(xs.shape[0], -1)
        out = np.array([f(cols[:, k]) for k in range(cols.shape[1])])
        return out.reshape(xs.shape[1:])

    return jacobian(vectorised, x).df


def _numdifftools(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    import numdifftools as nd

    return nd.Gradient(f)(x)


def _naive_vmap(f: Callable[..., Any], x: Any) -> Any:
    """What a JAX user writes first: all 2n perturbed points at once, one vmap (memory n*n)."""
    flat, unravel = ravel_pytree(x)
    f_flat = lambda z: f(unravel(z))
    h = fd.default_step(flat)
    eye = jnp.eye(flat.size, dtype=flat.dtype) * h[:, None]
    plus, minus = jax.vmap(f_flat)(flat + eye), jax.vmap(f_flat)(flat - eye)
    return unravel((plus - minus) / (2 * h))


LAX_MAP_BATCH = 64


def _lax_map(f: Callable[..., Any], x: Any) -> Any:
    """``jax.lax.map(..., batch_size=64)`` over coordinates: the batched idiom from JAX's docs."""
    flat, unravel = ravel_pytree(x)
    f_flat = lambda z: f(unravel(z))
    h = fd.default_step(flat)

    def partial_i(i: jax.Array) -> jax.Array:
        e = jnp.zeros_like(flat).at[i].set(h[i])
        return (f_flat(flat + e) - f_flat(flat - e)) / (2 * h[i])

    return unravel(lax.map(partial_i, jnp.arange(flat.size), batch_size=LAX_MAP_BATCH))


def _fd(scheme: str, order: int, share: bool = True) -> Callable[[Callable[..., Any], Any], Any]:
    def method(f: Callable[..., Any], x: Any) -> Any:
        return fd.gradient(f, x, scheme=scheme, order=order, share_products=share)

    return method


def _richardson(f: Callable[..., Any], x: Any) -> Any:
    return rich.richardson_gradient(f, x).value


def _ad_forward(f: Callable[..., Any], x: Any) -> Any:
    return jax.jacfwd(f)(x)


def _stochastic(estimator: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """A registry ``fn(f, x, key=None, step=0)`` around an estimator of :mod:`calcjax._estimators`."""

    def method(f: Callable[..., Any], x: Any, key: Any = None, step: Any = 0) -> Any:
        key = jax.random.key(DEFAULT_KEY_SEED) if key is None else key
        return estimator(f, x, key=key, step=step, **options)

    return method


def _zo_gaussian(name: str, k: int) -> GradientMethod:
    return GradientMethod(
        name,
        _stochastic(est.gaussian_smoothing_gradient, k=k),
        "stochastic",
        f"Gaussian smoothing, forward differences along k={k} N(0, I) direction(s), k+1 evaluations",
        evals=lambda n: k + 1,
        scheme="forward",
        order=1,
        memory=lambda n, itemsize: 2 * k * n * itemsize,  # the k directions and the k points
        stochastic=True,
    )


def _perturbed_bytes(points: int) -> Callable[[int, int], int]:
    """Bytes of one batch of perturbed points under the automatic batch size."""

    def memory(n: int, itemsize: int) -> int:
        b = fd.auto_batch_size(n, points, itemsize)
        return b * points * n * itemsize

    return memory


def _fd_method(name: str, scheme: str, order: int, description: str, share: bool = True) -> GradientMethod:
    """A registry entry for :func:`calcjax.gradient` with one scheme, order and sharing setting."""
    offsets = fd.stencil(scheme, order).offsets
    moved = sum(1 for c in offsets if c != 0.0)  # perturbed points per coordinate
    shared_f = int(any(c == 0.0 for c in offsets))  # f(x) itself, once
    return GradientMethod(
        name,
        _fd(scheme, order, share),
        "fd",
        description,
        evals=lambda n: moved * n + shared_f,
        scheme=scheme,
        order=order,
        memory=_perturbed_bytes(moved),
    )


for _m in [
    _fd_method("fd-forward", "forward", 1, "calcjax forward differences, order 1"),
    _fd_method("fd-central", "central", 2, "calcjax central differences, order 2"),
    _fd_method(
        "fd-central-blackbox",
        "central",
        2,
        "calcjax central differences, order 2, f evaluated as written at every point (share_products=False)",
        share=False,
    ),
    _fd_method("fd-central4", "central", 4, "calcjax central differences, order 4"),
    GradientMethod(
        "fd-richardson",
        _richardson,
        "fd",
        f"calcjax Richardson extrapolation of central differences ({rich.RICHARDSON_STEPS}-step windows "
        f"over a search of {rich.RICHARDSON_SEARCH} steps, the window with the smallest error estimate)",
        evals=lambda n: rich.RICHARDSON_EVALUATIONS * n,
        scheme="central",
        order=2 * rich.RICHARDSON_STEPS,
        memory=_perturbed_bytes(rich.RICHARDSON_EVALUATIONS),
    ),
    GradientMethod(
        "fd-complex",
        lambda f, x: cs.complex_step_gradient(f, x),
        "fd",
        "calcjax complex step, h=1e-20 in complex128",
        evals=lambda n: n + 1,  # n complex evaluations and f(x) itself, whose NaN is kept
        scheme="complex",
        needs_x64=True,
        memory=_perturbed_bytes(2),
    ),
    GradientMethod(
        "ad-reverse", lambda f, x: jax.grad(f)(x), "ad", "jax.grad (reverse mode)", evals=lambda n: 0
    ),
    GradientMethod(
        "ad-forward",
        _ad_forward,
        "ad",
        "jax.jacfwd (forward mode, n JVPs)",
        evals=lambda n: 0,
        memory=lambda n, itemsize: n * n * itemsize,  # the n x n identity of tangents
    ),
    GradientMethod(
        "numpy-loop",
        _numpy_method(baselines.numpy_loop_gradient),
        "baseline",
        "the tutorial's NumPy loop, central, eps=1e-5",
        evals=lambda n: 2 * n,
        traceable=False,
        scheme="central",
        order=2,
        max_n=100_000,
    ),
    GradientMethod(
        "scipy-approx-fprime",
        _numpy_method(_approx_fprime),
        "baseline",
        "scipy.optimize.approx_fprime (forward, step sqrt(eps))",
        evals=lambda n: n + 1,
        traceable=False,
        scheme="forward",
        order=1,
        max_n=100_000,
    ),
    GradientMethod(
        "jax-vmap-naive",
        _naive_vmap,
        "peer",
        "naive jax.vmap over all 2n perturbed points (n*n memory)",
        evals=lambda n: 2 * n,
        scheme="central",
        order=2,
        max_n=20_000,
        memory=lambda n, itemsize: 2 * n * n * itemsize,
    ),
    GradientMethod(
        "jax-lax-map",
        _lax_map,
        "peer",
        f"jax.lax.map over coordinates, batch_size={LAX_MAP_BATCH}",
        evals=lambda n: 2 * n,
        scheme="central",
        order=2,
        memory=lambda n, itemsize: 2 * LAX_MAP_BATCH * n * itemsize,
    ),
    GradientMethod(
        "scipy-differentiate",
        _numpy_method(_scipy_differentiate),
        "peer",
        "scipy.differentiate.jacobian (adaptive central, order 8; ~11n evaluations, adaptive)",
        evals=lambda n: 11 * n,
        traceable=False,
        scheme="central",
        order=8,
        max_n=10_000,
        requires="scipy.differentiate",
    ),
    GradientMethod(
        "numdifftools",
        _numpy_method(_numdifftools),
        "peer",
        "numdifftools.Gradient (Richardson, optional extra)",
        evals=lambda n: 30 * n + 1,
        traceable=False,
        scheme="central",
        max_n=1_000,
        requires="numdifftools",
    ),
    GradientMethod(
        "zo-spsa",
        _stochastic(est.spsa_gradient),
        "stochastic",
        "SPSA: central difference along one Rademacher direction, c_k = c/(k+1)^0.101; 2 evaluations",
        evals=lambda n: 2,
        scheme="central",
        order=2,
        memory=lambda n, itemsize: 3 * n * itemsize,  # the direction and the two points
        stochastic=True,
    ),
    _zo_gaussian("zo-gaussian", 1),
    _zo_gaussian("zo-gaussian-k10", 10),
    GradientMethod(
        "fwd-gradient",
        _stochastic(est.forward_gradient),
        "stochastic",
        "forward gradient: (grad f . v) v, v of random signs (E[v v'] = I), from one jax.jvp",
        evals=lambda n: 0,
        memory=lambda n, itemsize: 2 * n * itemsize,  # the direction and its tangent
        stochastic=True,
    ),
]:
    register(_m)
del _m
