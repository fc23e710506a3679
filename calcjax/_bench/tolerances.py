"""The one tolerance table: the error a derivative may have, from the dtype's machine epsilon.

Shared by the unit tests (the ``tol`` fixture of ``tests/conftest.py``) and the
benchmark suite, whose test profile asserts every method's error against it.

Example:
    >>> Tolerances().fd("float64", 2) < 1e-9
    True
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from calcjax import GradientMethod, baselines

__all__ = ["Tolerances"]


class Tolerances:
    """Every tolerance of the suite, derived from the dtype's machine epsilon.

    Finite differences of accuracy order ``p`` with the automatic step
    ``h = eps**(1/(p+1))`` balance truncation (``~h**p``) against rounding
    (``~eps/h``): their error is ``~eps**(p/(p+1))`` times the size of ``f`` and
    its derivatives, so :meth:`fd` is that times :attr:`SAFETY`. Rounding (one
    evaluation, no step) is a few ulps: :meth:`rounding`.
    """

    #: How far past the leading-order estimate a result may land.
    SAFETY = 10.0
    #: Cap on the order used for the rounding-vs-truncation balance: beyond it,
    #: constants of the high derivatives dominate (Richardson's order 10 is
    #: reached only with a large first step, which rounding then pays for).
    MAX_ORDER = 4

    @staticmethod
    def eps(dtype: Any) -> float:
        return float(jnp.finfo(dtype).eps)

    def rounding(self, dtype: Any, ulps: float = 16) -> float:
        """A computation with no truncation error: ``ulps`` units of rounding."""
        return ulps * self.eps(dtype)

    def fd(self, dtype: Any, order: int) -> float:
        """Relative error of a stencil of accuracy ``order`` at the automatic step."""
        p = min(order, self.MAX_ORDER)
        return self.SAFETY * self.eps(dtype) ** (p / (p + 1))

    def fixed_step(self, dtype: Any, h: float, order: int = 2) -> float:
        """Relative error of a stencil with a fixed step ``h`` (the tutorial's 1e-5)."""
        return self.SAFETY * (self.eps(dtype) / h + h**order)

    def method(self, method: GradientMethod, dtype: Any) -> float:
        """The tolerance a registry method earns from its scheme, order and step."""
        if method.family == "ad" or method.scheme == "complex":
            return self.rounding(dtype, ulps=64)
        if method.name == "numpy-loop":
            return self.fixed_step(dtype, baselines.TUTORIAL_EPS, method.order)
        if method.name == "scipy-differentiate":
            # scipy.differentiate stops at its default rtol, sqrt(eps) of the dtype.
            return self.SAFETY * math.sqrt(self.eps(dtype))
        return self.fd(dtype, method.order or self.MAX_ORDER)

    #: How far past ``sqrt(eps)`` a central second difference may land: the automatic step
    #: ``4 eps**(1/4) max(1, |x|)`` leaves ``~eps**(1/2)`` times the ratio of ``f``'s size to its
    #: Hessian's, which is large where ``f`` varies slowly (logistic regression's loss).
    SECOND_SAFETY = 100.0

    def second_difference(self, dtype: Any, order: int = 2) -> float:
        """Relative error of second differences of accuracy ``order`` at their best step.

        Rounding ``~eps/h**2`` against truncation ``~h**p`` leaves ``~eps**(p/(p+2))``:
        ``sqrt(eps)`` for central second differences (``p`` capped at :attr:`MAX_ORDER`).
        """
        p = min(order, self.MAX_ORDER)
        return self.SECOND_SAFETY * self.eps(dtype) ** (p / (p + 2))

    def second_order(self, method: Any, dtype: Any) -> float:
        """The tolerance a second-order registry method (:data:`calcjax.SECOND_ORDER_METHODS`) earns.

        Autodiff and complex steps of the gradient round only; a first difference of the
        gradient is a first derivative (:meth:`fd` of its order); second differences of ``f``
        (Richardson's and numdifftools' extrapolations as high-order ones) by
        :meth:`second_difference`.
        """
        if method.family == "ad" or method.scheme == "complex":
            return self.rounding(dtype, ulps=64)
        if method.grad_evals(1) > 0:  # differences of the gradient: a first derivative
            return self.fd(dtype, 2)
        if method.name == "scipy-differentiate-hessian":
            if self.eps(dtype) > self.eps("float64"):
                # Measured: in float32 its adaptive steps leave the quadratic's Hessian wrong by
                # O(1) (SciPy 1.15/1.16); the suite records the error but cannot bound it.
                return math.inf
            return self.SAFETY * math.sqrt(self.eps(dtype))  # it stops at rtol sqrt(eps)
        return self.second_difference(dtype, method.order or self.MAX_ORDER)
