"""The registry of second-order methods: full Hessians, Hessian diagonals and Hessian-vector products.

Each entry is a :class:`SecondOrderMethod`, the :class:`calcjax.GradientMethod`
record with two more fields: ``kind`` (``"hessian"``, ``"diagonal"`` or
``"hvp"``) and ``grad_evals`` (gradient evaluations, beside ``evals``, the
evaluations of ``f``). One uniform call, ``method(f, x)`` for a Hessian or a
diagonal and ``method(f, x, v)`` for a product; results are laid out as
``jax.hessian`` lays them out (a pytree of pytrees) or like ``x``. Families:

- ``fd``: calcjax's finite differences (:mod:`calcjax._hessian`);
- ``ad``: JAX's autodiff -- ``jax.hessian`` (forward over reverse),
  ``jacrev(jacrev)``, and the forward-over-reverse and reverse-over-reverse HVPs;
- ``peer``: numdifftools ``Hessian`` and ``Hessdiag``, ``scipy.differentiate.hessian``.

Non-traceable peers call ``f`` with NumPy arrays shaped like ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from calcjax import _finite_diff as fd
from calcjax import _hessian as hs
from calcjax import _richardson as rich
from calcjax import _validate as val
from calcjax._methods import GradientMethod
from calcjax._problems import _np_flatten, _np_unflatten_like

__all__ = [
    "KINDS",
    "SECOND_ORDER_METHODS",
    "SecondOrderMethod",
    "get_second_order_method",
    "register_second_order",
]

KINDS = ("hessian", "diagonal", "hvp")


@dataclass(frozen=True)
class SecondOrderMethod(GradientMethod):
    """A second-order method with its metadata: :class:`calcjax.GradientMethod`'s fields and two more.

    Attributes:
      kind: ``"hessian"`` (``fn(f, x)`` -> the Hessian as ``jax.hessian`` lays it
        out), ``"diagonal"`` (``fn(f, x)`` -> like ``x``) or ``"hvp"``
        (``fn(f, x, v)`` -> like ``x``).
      grad_evals: gradient evaluations per call as a function of ``n``.
    """

    kind: str = "hessian"
    grad_evals: Callable[[int], int] = field(default=lambda n: 0, repr=False)

    def __call__(self, f: Callable[..., Any], x: Any, v: Any = None) -> Any:  # type: ignore[override]
        if self.kind == "hvp":
            if v is None:
                raise ValueError(f"{self.name} is a Hessian-vector product: call it as method(f, x, v)")
            return self.fn(f, x, v)
        if v is not None:
            raise ValueError(f"{self.name} computes a {self.kind}, not a product: call it as method(f, x)")
        return self.fn(f, x)


SECOND_ORDER_METHODS: dict[str, SecondOrderMethod] = {}


def register_second_order(method: SecondOrderMethod) -> SecondOrderMethod:
    """Add ``method`` to :data:`SECOND_ORDER_METHODS` (its name must be new)."""
    val.check_choice(method.kind, KINDS, "second-order method kind")
    if method.name in SECOND_ORDER_METHODS:
        raise ValueError(f"a second-order method called {method.name!r} is already registered")
    SECOND_ORDER_METHODS[method.name] = method
    return method


def get_second_order_method(name: str | SecondOrderMethod) -> SecondOrderMethod:
    """A registry entry from its name; ``ValueError`` listing the valid names otherwise."""
    if isinstance(name, SecondOrderMethod):
        return name
    val.check_choice(name, tuple(SECOND_ORDER_METHODS), "second-order method")
    return SECOND_ORDER_METHODS[name]


# --------------------------------------------------------------------------- NumPy peers


def _numpy_second(flat_fn: Callable[[Callable[[np.ndarray], float], np.ndarray], Any], kind: str):
    """Run a NumPy second-derivative routine on a pytree ``x``: ``f`` is called on NumPy copies like ``x``."""

    def method(f: Callable[..., Any], x: Any) -> Any:
        fd._leaves_floating(x)
        dtype = np.result_type(*[np.asarray(t).dtype for t in jax.tree_util.tree_leaves(x)])
        flat = _np_flatten(x, dtype)
        unflatten = _np_unflatten_like(x)
        out = np.asarray(flat_fn(lambda vec: float(f(unflatten(vec))), flat), dtype)
        if kind == "hessian":
            return hs._unravel_hessian(out.reshape(flat.size, flat.size), x)
        return unflatten(out.reshape(flat.shape))

    return method


def _numdifftools_hessian(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    import numdifftools as nd

    return nd.Hessian(f)(x)


def _numdifftools_hessdiag(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    import numdifftools as nd

    return nd.Hessdiag(f)(x)


def _scipy_hessian(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    from scipy.differentiate import hessian

    def vectorised(xs: np.ndarray) -> np.ndarray:
        # scipy.differentiate calls f with extra trailing axes; a user's f is not vectorised.
        cols = xs.reshape(xs.shape[0], -1)
        return np.array([f(cols[:, k]) for k in range(cols.shape[1])]).reshape(xs.shape[1:])

    return hessian(vectorised, x).ddf


# --------------------------------------------------------------------------- autodiff


def _forward_over_reverse(f: Callable[..., Any], x: Any, v: Any) -> Any:
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def _reverse_over_reverse(f: Callable[..., Any], x: Any, v: Any) -> Any:
    g = jax.grad(f)
    inner = lambda y: sum(
        jnp.vdot(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(g(y)), jax.tree_util.tree_leaves(v), strict=True)
    )
    return jax.grad(inner)(x)


def _hessian_memory(n: int, itemsize: int) -> int:
    """The ``n x n`` result and the pairs' mixed differences."""
    return hs._hessian_bytes(n, itemsize)


_CENTRAL_HESSIAN_EVALS = lambda n: 2 * n * n + 1  # 4 per pair i < j, 2 per diagonal entry, f(x)
_RICHARDSON_SIZES = rich.RICHARDSON_STEPS + hs.RICHARDSON_STARTS - 1

for _m in [
    SecondOrderMethod(
        "fd-hessian",
        lambda f, x: hs.hessian(f, x),
        "fd",
        "calcjax.hessian: central second differences, four-point mixed stencil, automatic step",
        evals=_CENTRAL_HESSIAN_EVALS,
        scheme="central",
        order=2,
        memory=_hessian_memory,
    ),
    SecondOrderMethod(
        "richardson",
        lambda f, x: hs.richardson_hessian(f, x).value,
        "fd",
        f"calcjax.richardson_hessian: Neville over {rich.RICHARDSON_STEPS} steps from "
        f"{hs.RICHARDSON_STARTS} first steps, best estimate per entry",
        evals=lambda n: _RICHARDSON_SIZES * _CENTRAL_HESSIAN_EVALS(n),
        scheme="central",
        order=2 * rich.RICHARDSON_STEPS,
        memory=lambda n, itemsize: hs._hessian_bytes(
            n, itemsize, 2 * _RICHARDSON_SIZES + 2 * hs.RICHARDSON_STARTS + 2
        ),
    ),
    SecondOrderMethod(
        "complex-of-grad-hessian",
        lambda f, x: hs.complex_step_hessian(f, x),
        "fd",
        "calcjax.complex_step_hessian: Im g(x + i h e_k) / h, g = holomorphic jax.grad, complex128",
        evals=lambda n: 0,
        grad_evals=lambda n: n,
        scheme="complex",
        needs_x64=True,
        memory=lambda n, itemsize: n * n * itemsize,
    ),
    SecondOrderMethod(
        "fd-hessdiag",
        lambda f, x: hs.hessian_diagonal(f, x),
        "fd",
        "calcjax.hessian_diagonal: central second differences",
        evals=lambda n: 2 * n + 1,
        kind="diagonal",
        scheme="central",
        order=2,
    ),
    SecondOrderMethod(
        "fd-of-grad",
        lambda f, x, v: hs.hessian_vector_product(f, x, v, method="fd-grad"),
        "fd",
        "(g(x + t v) - g(x - t v)) / 2t, g = jax.grad(f)",
        evals=lambda n: 0,
        grad_evals=lambda n: 2,
        kind="hvp",
        scheme="central",
        order=2,
        memory=lambda n, itemsize: 3 * n * itemsize,
    ),
    SecondOrderMethod(
        "fd-hvp",
        lambda f, x, v: hs.hessian_vector_product(f, x, v, method="fd"),
        "fd",
        "f alone: central FD gradients at x +- t v, differenced along v",
        evals=lambda n: 4 * n,  # 2n at x + t v and 2n at x - t v
        kind="hvp",
        scheme="central",
        order=2,
    ),
    SecondOrderMethod(
        "richardson-of-grad",
        lambda f, x, v: hs.richardson_hessian_vector_product(f, x, v).value,
        "fd",
        "Richardson over central differences of jax.grad(f) along v",
        evals=lambda n: 0,
        grad_evals=lambda n: 2 * _RICHARDSON_SIZES,
        kind="hvp",
        scheme="central",
        order=2 * rich.RICHARDSON_STEPS,
    ),
    SecondOrderMethod(
        "complex-of-grad",
        lambda f, x, v: hs.hessian_vector_product(f, x, v, method="complex-grad"),
        "fd",
        "Im g(x + i h v) / h, g = holomorphic jax.grad(f), complex128",
        evals=lambda n: 0,
        grad_evals=lambda n: 1,
        kind="hvp",
        scheme="complex",
        needs_x64=True,
    ),
    SecondOrderMethod(
        "jax-hessian",
        lambda f, x: jax.hessian(f)(x),
        "ad",
        "jax.hessian = jacfwd(jacrev): n forward passes through the gradient",
        evals=lambda n: 0,
        memory=lambda n, itemsize: 2 * n * n * itemsize,
    ),
    SecondOrderMethod(
        "jacrev-jacrev",
        lambda f, x: jax.jacrev(jax.jacrev(f))(x),
        "ad",
        "jax.jacrev(jax.jacrev(f)): n reverse passes through the gradient",
        evals=lambda n: 0,
        memory=lambda n, itemsize: 2 * n * n * itemsize,
    ),
    SecondOrderMethod(
        "hvp-forward-over-reverse",
        _forward_over_reverse,
        "ad",
        "jax.jvp(jax.grad(f), (x,), (v,)): the autodiff cookbook's HVP",
        evals=lambda n: 0,
        kind="hvp",
    ),
    SecondOrderMethod(
        "hvp-reverse-over-reverse",
        _reverse_over_reverse,
        "ad",
        "jax.grad(lambda y: vdot(jax.grad(f)(y), v))",
        evals=lambda n: 0,
        kind="hvp",
    ),
    SecondOrderMethod(
        "numdifftools-hessian",
        _numpy_second(_numdifftools_hessian, "hessian"),
        "peer",
        "numdifftools.Hessian (Richardson over steps, central)",
        evals=lambda n: 30 * n * n + 1,  # counted: 121, 481, 1921 evaluations at n = 2, 4, 8
        traceable=False,
        scheme="central",
        max_n=200,
        requires="numdifftools",
    ),
    SecondOrderMethod(
        "numdifftools-hessdiag",
        _numpy_second(_numdifftools_hessdiag, "diagonal"),
        "peer",
        "numdifftools.Hessdiag (Richardson over steps, central)",
        evals=lambda n: 30 * n + 1,  # counted: 61, 121, 241 at n = 2, 4, 8
        kind="diagonal",
        traceable=False,
        scheme="central",
        max_n=10_000,
        requires="numdifftools",
    ),
    SecondOrderMethod(
        "scipy-differentiate-hessian",
        _numpy_second(_scipy_hessian, "hessian"),
        "peer",
        "scipy.differentiate.hessian (a Jacobian of a Jacobian, adaptive order 8; SciPy >= 1.15)",
        evals=lambda n: 121 * n * n,  # counted on a smooth f at n = 2, 4, 8 (adaptive: it varies with f)
        traceable=False,
        scheme="central",
        order=8,
        max_n=30,
        requires="scipy.differentiate",
    ),
]:
    register_second_order(_m)
del _m
