"""The tutorial's NumPy algorithms, kept as written: the reference everything is measured against.

From "Calculus Essentials for Machine Learning": a central difference with a
fixed ``eps=1e-5``, a gradient by a Python loop over coordinates, and ten steps
of gradient descent on ``x**2`` with ``lr=0.1`` from ``x=5.0``. They import
NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "TUTORIAL_EPS",
    "numerical_derivative",
    "numpy_loop_gradient",
    "tutorial_gradient_descent",
]

#: The tutorial's fixed step.
TUTORIAL_EPS = 1e-5


def numerical_derivative(func: Callable[[float], float], x: float, eps: float = TUTORIAL_EPS) -> float:
    """The tutorial's central difference ``(f(x + eps) - f(x - eps)) / (2 eps)``.

    Example:
      >>> round(numerical_derivative(lambda t: t**2, 3.0), 6)
      6.0
    """
    return (func(x + eps) - func(x - eps)) / (2 * eps)


def numpy_loop_gradient(
    loss: Callable[[np.ndarray], float], w: np.ndarray, eps: float = TUTORIAL_EPS
) -> np.ndarray:
    """The tutorial's gradient: a Python loop over coordinates, two copies of ``w`` each.

    Example:
      >>> numpy_loop_gradient(lambda w: w[0]**2 + 2*w[1]**2, np.array([1.0, -2.0])).round(6)
      array([ 2., -8.])
    """
    g = np.zeros_like(w, dtype=float)
    for i in range(len(w)):
        w_pos = w.copy()
        w_neg = w.copy()
        w_pos[i] += eps
        w_neg[i] -= eps
        g[i] = (loss(w_pos) - loss(w_neg)) / (2 * eps)
    return g


def tutorial_gradient_descent(
    f_prime: Callable[[float], float],
    x: float = 5.0,
    lr: float = 0.1,
    steps: int = 10,
    f: Callable[[float], float] | None = None,
) -> tuple[float, list[float]]:
    """The tutorial's pure-Python gradient-descent loop.

    Returns the final ``x`` and the loss after each step (empty when ``f`` is None).

    Example:
      >>> x, _ = tutorial_gradient_descent(lambda t: 2 * t)
      >>> round(x, 6) == round(5 * 0.8**10, 6)
      True
    """
    losses = []
    for _ in range(steps):
        grad = f_prime(x)
        x = x - lr * grad
        if f is not None:
            losses.append(f(x))
    return x, losses
