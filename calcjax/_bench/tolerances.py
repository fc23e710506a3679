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
