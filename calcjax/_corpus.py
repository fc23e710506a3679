"""Derivative test cases taken from the peers' own test suites, as data.

Each :class:`Case` names where it comes from (``source``: the peer's test file
and test), gives ``f`` once for both array modules (``expr(xp, x)`` with ``xp``
``jax.numpy`` or NumPy, so the JAX function and its NumPy twin cannot drift
apart), the point, and the exact derivative in NumPy float64. ``kind`` is
``"derivative"`` (scalar ``x``) or ``"gradient"`` (``x`` a tuple; ``expr``
indexes ``x[0], x[1], ...`` and sums over axis 0, so the NumPy twin also takes a
leading batch axis as :func:`scipy.differentiate.jacobian` wants).

The error of an estimate is ``|est - exact| / max(|exact|, floor)``: relative,
except where the exact derivative is (near) zero and the case sets ``floor``.

The suites read (float64 throughout):

- numdifftools ``tests/test_example_functions.py`` (19 functions at 0.5),
  ``tests/test_fornberg.py`` (the same and arccosh/arctanh near the edge of
  their domain; its ``ExampleFunctions`` at 0), ``tests/test_numdifftools.py``,
  ``tests/test_nd_algopy.py`` (its hypothesis ranges: exp and sinh at +-700, log
  down to 1e-5 and up to 1e300), ``tests/test_limits.py`` (functions with a
  removable singularity at 0, differentiated there);
- scipy ``differentiate/tests/test_differentiate.py`` (ndtr, the cdfs of
  ``test_accuracy``, ``test_step_direction``'s exp defined on [0, 2] only, the
  polynomials of ``test_special_cases``, the saddles of gh-18811, the Jacobian
  examples);
- findiff ``test/test_findiff.py`` (the functions of its grids, at grid points).

Run ``python -m calcjax._corpus`` to print calcjax against numdifftools and
scipy case by case (needs numdifftools; slow: every case is compiled).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["CASES", "METHODS", "Case", "relative_error", "run_method"]


@dataclass(frozen=True)
class Case:
    """One derivative to compute, from a peer's test suite."""

    name: str
    source: str
    expr: Callable[[Any, Any], Any]
    x: float | tuple[float, ...]
    exact: Callable[[Any], Any]
    kind: str = "derivative"
    floor: float = 0.0
    domain: str = ""
    hard: bool = False
    step_direction: int = 0
    tags: tuple[str, ...] = field(default=())

    def jax_fn(self) -> Callable[[Any], Any]:
        """``f`` in ``jax.numpy`` (takes a scalar, or a vector for a gradient case)."""
        if self.kind == "derivative":
            return lambda x: self.expr(_JNP, x)
        return lambda x: self.expr(_JNP, [x[i] for i in range(x.shape[0])])

    def numpy_fn(self) -> Callable[[Any], Any]:
        """``f`` in NumPy float64 (broadcasts; a gradient case takes ``x`` with a leading axis)."""

        def f(x: Any) -> Any:
            with np.errstate(all="ignore"):
                return self.expr(_NP, x)

        return f

    def exact_value(self) -> np.ndarray:
        """The exact derivative (or gradient) in float64."""
        with np.errstate(all="ignore"):
            return np.asarray(self.exact(np.asarray(self.x, np.float64)), np.float64)


def relative_error(estimate: Any, exact: Any, floor: float = 0.0) -> float:
    """The largest ``|estimate - exact| / max(|exact|, floor)`` (inf for a non-finite estimate)."""
    est = np.asarray(estimate, np.float64)
    ref = np.asarray(exact, np.float64)
    if not np.all(np.isfinite(est)):
        return math.inf
    scale = np.maximum(np.abs(ref), floor)
    err = np.abs(est - ref)
    rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), err)
    return float(np.max(rel))


class _JnpNamespace:
    """``jax.numpy`` with the special functions the cases use, looked up lazily."""

    def __getattr__(self, name: str) -> Any:
        import jax.numpy as jnp
        import jax.scipy.special as jsp
        import jax.scipy.stats as jst

        if name == "ndtr":
            return jsp.ndtr
        if name == "stats":
            return jst
        return getattr(jnp, name)


class _NpNamespace:
    def __getattr__(self, name: str) -> Any:
        if name == "ndtr":
            import scipy.special

            return scipy.special.ndtr
        if name == "stats":
            import scipy.stats

            return scipy.stats
        return getattr(np, name)


_JNP = _JnpNamespace()
_NP = _NpNamespace()


def _nd(name: str) -> str:
    return f"numdifftools tests/{name}"


_SCIPY = "scipy differentiate/tests/test_differentiate.py"
_FINDIFF = "findiff test/test_findiff.py"

#: numdifftools.example_functions: name -> (f(xp, x), f'(x) in NumPy).
_EXAMPLE = {
    "cos": (lambda xp, x: xp.cos(x), lambda x: -np.sin(x)),
    "sin": (lambda xp, x: xp.sin(x), np.cos),
    "tan": (lambda xp, x: xp.tan(x), lambda x: 1 / np.cos(x) ** 2),
    "cosh": (lambda xp, x: xp.cosh(x), np.sinh),
    "sinh": (lambda xp, x: xp.sinh(x), np.cosh),
    "tanh": (lambda xp, x: xp.tanh(x), lambda x: 1 / np.cosh(x) ** 2),
    "arcsinh": (lambda xp, x: xp.arcsinh(x), lambda x: 1 / np.sqrt(1 + x**2)),
    "exp": (lambda xp, x: xp.exp(x), np.exp),
    "expm1": (lambda xp, x: xp.expm1(x), np.exp),
    "exp2": (lambda xp, x: xp.exp2(x), lambda x: np.log(2) * np.exp2(x)),
    "square": (lambda xp, x: xp.square(x), lambda x: 2 * x),
    "sqrt": (lambda xp, x: xp.sqrt(x), lambda x: 0.5 / np.sqrt(x)),
    "log": (lambda xp, x: xp.log(x), lambda x: 1 / x),
    "log1p": (lambda xp, x: xp.log1p(x), lambda x: 1 / (1 + x)),
    "log10": (lambda xp, x: xp.log10(x), lambda x: 1 / (x * np.log(10))),
    "log2": (lambda xp, x: xp.log2(x), lambda x: 1 / (x * np.log(2))),
    "arccos": (lambda xp, x: xp.arccos(x), lambda x: -1 / np.sqrt(1 - x**2)),
    "arcsin": (lambda xp, x: xp.arcsin(x), lambda x: 1 / np.sqrt(1 - x**2)),
    "arctan": (lambda xp, x: xp.arctan(x), lambda x: 1 / (1 + x**2)),
    "arccosh": (lambda xp, x: xp.arccosh(x), lambda x: 1 / np.sqrt(x**2 - 1)),
    "arctanh": (lambda xp, x: xp.arctanh(x), lambda x: 1 / (1 - x**2)),
}


def _example_cases() -> list[Case]:
    cases = []
    for name in list(_EXAMPLE)[:19]:
        expr, d = _EXAMPLE[name]
        src = _nd("test_example_functions.py::test_first_order_derivative")
        cases.append(Case(f"{name} at 0.5", src, expr, 0.5, d))
    # test_fornberg.py::test_high_order_derivative draws x in [0.1, 0.98]; near 0.98 the
    # arc functions are close to their singularity at 1 (arccosh is taken at x + 1).
    for name, (expr, d) in _EXAMPLE.items():
        x = 1.95 if name == "arccosh" else 0.95
        edge = name in ("arccos", "arcsin", "arctanh", "sqrt", "log", "log10", "log2", "log1p", "tan")
        cases.append(
            Case(
                f"{name} at {x}",
                _nd("test_fornberg.py::test_high_order_derivative"),
                expr,
                x,
                d,
                domain="near a singularity at 1" if name in ("arccos", "arcsin", "arctanh") else "",
                tags=("edge",) if edge else (),
            )
        )
    return cases


def _fornberg_cases() -> list[Case]:
    src = _nd("test_fornberg.py::ExampleFunctions (z0 = 0)")
    c = []
    add = lambda name, expr, d, **kw: c.append(Case(name, src, expr, 0.0, d, **kw))
    add("fun0 exp(z)", lambda xp, z: xp.exp(z), np.exp)
    add(
        "fun1 exp(z)/(sin^3+cos^3)",
        lambda xp, z: xp.exp(z) / (xp.sin(z) ** 3 + xp.cos(z) ** 3),
        lambda z: (
            np.exp(z)
            * (
                1 / (np.sin(z) ** 3 + np.cos(z) ** 3)
                - (3 * np.sin(z) ** 2 * np.cos(z) - 3 * np.cos(z) ** 2 * np.sin(z))
                / (np.sin(z) ** 3 + np.cos(z) ** 3) ** 2
            )
        ),
    )
    add("fun3 z**6", lambda xp, z: z**6, lambda z: 6 * z**5, floor=1.0)
    add(
        "fun4 z*(0.5+1/expm1(z))",
        lambda xp, z: z * (0.5 + 1.0 / xp.expm1(z)),
        lambda z: 0.0 * z,
        floor=1.0,
        hard=True,
        domain="removable singularity at 0: f(0) is NaN (0 * inf), the limit is 1",
    )
    add("fun5 tan(z)", lambda xp, z: xp.tan(z), lambda z: 1 / np.cos(z) ** 2)
    add("fun7 1/(1-z)", lambda xp, z: 1.0 / (1.0 - z), lambda z: 1 / (1 - z) ** 2)
    add(
        "fun8 (1+z)**10*log1p(z)",
        lambda xp, z: (1 + z) ** 10 * xp.log1p(z),
        lambda z: 10 * (1 + z) ** 9 * np.log1p(z) + (1 + z) ** 9,
    )
    add("fun9 50+1/(1-z)", lambda xp, z: 10 * 5 + 1.0 / (1 - z), lambda z: 1 / (1 - z) ** 2)
    add("fun12 arcsinh(z)", lambda xp, z: xp.arcsinh(z), lambda z: 1 / np.sqrt(1 + z**2))
    add("fun13 cos(z)", lambda xp, z: xp.cos(z), lambda z: -np.sin(z), floor=1.0)
    add("fun14 log1p(z)", lambda xp, z: xp.log1p(z), lambda z: 1 / (1 + z))
    return c


def _numdifftools_cases() -> list[Case]:
    c: list[Case] = []
    src = _nd("test_numdifftools.py")
    c.append(Case("exp at 0", src + "::test_derivative_exp", lambda xp, x: xp.exp(x), 0.0, np.exp))
    for k in range(13):
        x = 2.0 * math.pi * k / 12
        c.append(
            Case(
                f"sin at 2pi*{k}/12",
                src + "::test_derivative_sin",
                lambda xp, x: xp.sin(x),
                x,
                np.cos,
                floor=1.0,
            )
        )
    c.append(
        Case("sinh at 0", src + "::test_backward_derivative_on_sinh", lambda xp, x: xp.sinh(x), 0.0, np.cosh)
    )
    c.append(
        Case(
            "log at 1e-3",
            src + "::test_central_and_forward_derivative_on_log",
            lambda xp, x: xp.log(x),
            1e-3,
            lambda x: 1 / x,
            hard=True,
            domain="x > 0",
        )
    )
    c.append(
        Case("x*x*x at 2", src + "::test_derivative_cube", lambda xp, x: x * x * x, 2.0, lambda x: 3 * x**2)
    )
    c.append(
        Case(
            "2*x**3 at 0",
            src + "::test_fun_with_additional_parameters",
            lambda xp, x: 2.0 * x * x * x,
            0.0,
            lambda x: 6 * x**2,
            floor=1.0,
        )
    )
    c.append(
        Case(
            "2*x**3 at 1",
            src + "::test_fun_with_additional_parameters",
            lambda xp, x: 2.0 * x * x * x,
            1.0,
            lambda x: 6 * x**2,
        )
    )
    c.append(
        Case(
            "cos at pi/2",
            src + "::test_high_order_derivative_cos",
            lambda xp, x: xp.cos(x),
            math.pi / 2,
            lambda x: -np.sin(x),
        )
    )
    # test_nd_algopy.py: hypothesis over all floats for exp and sinh, log over x >= 1e-5.
    alg = _nd("test_nd_algopy.py")
    for x in (700.0, -700.0, 20.0):
        c.append(
            Case(
                f"exp at {x:g}",
                alg + "::test_derivative_exp",
                lambda xp, x: xp.exp(x),
                x,
                np.exp,
                hard=abs(x) >= 700,
                domain="exp overflows above 709.78",
            )
        )
    for x in (700.0, -700.0):
        c.append(
            Case(
                f"sinh at {x:g}",
                alg + "::test_derivative_on_sinh",
                lambda xp, x: xp.sinh(x),
                x,
                np.cosh,
                hard=True,
                domain="sinh overflows above 710.47",
            )
        )
    for x in (1e-5, 1e-2, 1e3, 1e300):
        c.append(
            Case(
                f"log at {x:g}",
                alg + "::test_derivative_on_log",
                lambda xp, x: xp.log(x),
                x,
                lambda x: 1 / x,
                hard=x in (1e-5, 1e300),
                domain="x > 0",
            )
        )
    # gradients
    c.append(
        Case(
            "sum(x**2) at (1, 2, 3)",
            src + "::TestGradient::test_gradient",
            lambda xp, x: x[0] ** 2 + x[1] ** 2 + x[2] ** 2,
            (1.0, 2.0, 3.0),
            lambda x: 2 * x,
            kind="gradient",
        )
    )
    c.append(
        Case(
            "x0*x1*x2+exp(x0)*x1 at (3, 5, 7)",
            src + "::TestJacobian::test_on_scalar_function",
            lambda xp, x: x[0] * x[1] * x[2] + xp.exp(x[0]) * x[1],
            (3.0, 5.0, 7.0),
            lambda x: np.array([x[1] * x[2] + np.exp(x[0]) * x[1], x[0] * x[2] + np.exp(x[0]), x[0] * x[1]]),
            kind="gradient",
        )
    )
    c.append(
        Case(
            "rosen at (2, 3)",
            src + "::test_directional_diff",
            lambda xp, x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2,
            (2.0, 3.0),
            lambda x: np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)]),
            kind="gradient",
        )
    )
    c.append(
        Case(
            "1/(exp(x0)+cos(x1)+10) at (1, 2)",
            src + "::test_issue_39",
            lambda xp, x: 1.0 / (xp.exp(x[0]) + xp.cos(x[1]) + 10),
            (1.0, 2.0),
            lambda x: np.array([-np.exp(x[0]), np.sin(x[1])]) / (np.exp(x[0]) + np.cos(x[1]) + 10) ** 2,
            kind="gradient",
        )
    )
    return c


def _limits_cases() -> list[Case]:
    src = _nd("test_limits.py")
    note = "removable singularity: f(0) is NaN, the limit is finite"
    return [
        Case(
            "sin(x)/x at 0",
            src + "::test_sinx_div_x",
            lambda xp, x: xp.sin(x) / x,
            0.0,
            lambda x: 0 * x,
            floor=1.0,
            hard=True,
            domain=note,
        ),
        Case(
            "(cos(pi/2+x)-cos(pi/2))/x at 0",
            src + "::test_derivative_of_cos",
            lambda xp, x: (xp.cos(math.pi / 2 + x) - math.cos(math.pi / 2)) / x,
            0.0,
            lambda x: 0 * x - 0.5 * math.cos(math.pi / 2),
            floor=1.0,
            hard=True,
            domain=note,
        ),
        Case(
            "-z/expm1(2z) at 0",
            src + "::test_residue_1_div_1_minus_exp_x",
            lambda xp, z: -z / xp.expm1(2 * z),
            0.0,
            lambda z: 0 * z + 0.5,
            hard=True,
            domain=note,
        ),
        Case(
            "(x*exp(x)-expm1(x))/x**2 at 0",
            src + "::test_difficult_limit",
            lambda xp, x: (x * xp.exp(x) - xp.expm1(x)) / x**2,
            0.0,
            lambda x: 0 * x + 1 / 3,
            hard=True,
            domain=note + "; cancellation near 0",
        ),
        Case(
            "-z/expm1(2z) at 0.5",
            src + "::test_residue_1_div_1_minus_exp_x",
            lambda xp, z: -z / xp.expm1(2 * z),
            0.5,
            lambda z: -1 / np.expm1(2 * z) + 2 * z * np.exp(2 * z) / np.expm1(2 * z) ** 2,
        ),
    ]


def _scipy_cases() -> list[Case]:
    c: list[Case] = []
    npdf = lambda x: np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    for x in [0.6, *np.linspace(-0.05, 1.05, 10).tolist()]:
        c.append(Case(f"ndtr at {x:.4g}", _SCIPY + "::test_basic", lambda xp, x: xp.ndtr(x), x, npdf))
    # test_accuracy: dist.cdf at dist.median() + 0.1, for the distributions JAX has a cdf of.
    for dist, med in (
        ("norm", 0.0),
        ("logistic", 0.0),
        ("cauchy", 0.0),
        ("laplace", 0.0),
        ("expon", math.log(2)),
    ):
        c.append(
            Case(
                f"{dist}.cdf at median+0.1",
                _SCIPY + "::test_accuracy",
                lambda xp, x, dist=dist: getattr(xp.stats, dist).cdf(x),
                med + 0.1,
                lambda x, dist=dist: __import__("scipy.stats").stats.__dict__[dist].pdf(x),
            )
        )
    # test_step_direction: exp defined on [0, 2] only (NaN outside).
    for k in range(10):
        x = 2.0 * k / 9
        end = k in (0, 9)
        c.append(
            Case(
                f"exp on [0, 2] at {x:.4g}",
                _SCIPY + "::test_step_direction",
                lambda xp, x: xp.where((x < 0) | (x > 2), xp.nan, xp.exp(x)),
                x,
                np.exp,
                hard=end,
                domain="NaN outside [0, 2]",
                step_direction=1 if x < 0.6 else (-1 if x > 1.4 else 0),
            )
        )
    # test_vectorized_step_direction_args: x**p
    for x in (1.0, 2.0, 3.0, 4.0):
        for p in (2, 3):
            c.append(
                Case(
                    f"x**{p} at {x:g}",
                    _SCIPY + "::test_vectorized_step_direction_args",
                    lambda xp, x, p=p: x**p,
                    x,
                    lambda x, p=p: p * x ** (p - 1),
                )
            )
    c.append(
        Case(
            "x**99-1 at 7",
            _SCIPY + "::test_special_cases",
            lambda xp, x: x**99 - 1,
            7.0,
            lambda x: 99 * x**98,
        )
    )
    for n in range(6):
        c.append(
            Case(
                f"2*x**{n} at 1.5",
                _SCIPY + "::test_special_cases",
                lambda xp, x, n=n: 2 * x**n,
                1.5,
                lambda x, n=n: 2 * n * x ** (n - 1) if n else 0 * x,
                floor=1.0 if n == 0 else 0.0,
            )
        )
    c.append(
        Case("3*x-1 at 2", _SCIPY + "::test_special_cases", lambda xp, x: 3 * x - 1, 2.0, lambda x: 0 * x + 3)
    )
    c.append(
        Case(
            "(x-1)**3 at 1",
            _SCIPY + "::test_saddle_gh18811",
            lambda xp, x: (x - 1) ** 3,
            1.0,
            lambda x: 0 * x,
            floor=1.0,
        )
    )
    c.append(
        Case(
            "where(x>1,(x-1)**5,(x-1)**3) at 1",
            _SCIPY + "::test_saddle_gh18811",
            lambda xp, x: xp.where(x > 1, (x - 1) ** 5, (x - 1) ** 3),
            1.0,
            lambda x: 0 * x,
            floor=1.0,
        )
    )
    # Jacobian examples (one row each, as a gradient).
    jac = _SCIPY + "::TestJacobian::test_examples"
    c.append(
        Case(
            "x**2*y at (0.3, 0.8)",
            jac,
            lambda xp, z: z[0] ** 2 * z[1],
            (0.3, 0.8),
            lambda z: np.array([2 * z[0] * z[1], z[0] ** 2]),
            kind="gradient",
        )
    )
    c.append(
        Case(
            "r*cos(phi) at (0.7, 0.4)",
            jac,
            lambda xp, z: z[0] * xp.cos(z[1]),
            (0.7, 0.4),
            lambda z: np.array([np.cos(z[1]), -z[0] * np.sin(z[1])]),
            kind="gradient",
        )
    )
    c.append(
        Case(
            "x3*sin(x1) at (0.2, 0.5, 0.9)",
            jac,
            lambda xp, z: z[2] * xp.sin(z[0]),
            (0.2, 0.5, 0.9),
            lambda z: np.array([z[2] * np.cos(z[0]), 0 * z[0], np.sin(z[0])]),
            kind="gradient",
        )
    )
    c.append(
        Case(
            "4*x1**2-2*sin(x2*x3) at (0.2, 0.5, 0.9)",
            jac,
            lambda xp, z: 4 * z[0] ** 2 - 2 * xp.sin(z[1] * z[2]),
            (0.2, 0.5, 0.9),
            lambda z: np.array([8 * z[0], -2 * z[2] * np.cos(z[1] * z[2]), -2 * z[1] * np.cos(z[1] * z[2])]),
            kind="gradient",
        )
    )
    c.append(
        Case(
            "rosen at (0.4, 0.9, 0.1, 0.6)",
            jac,
            lambda xp, x: xp.sum(
                100.0 * (xp.stack(x[1:]) - xp.stack(x[:-1]) ** 2) ** 2 + (1 - xp.stack(x[:-1])) ** 2, axis=0
            ),
            (0.4, 0.9, 0.1, 0.6),
            _rosen_der,
            kind="gradient",
        )
    )
    return c


def _rosen_der(x: np.ndarray) -> np.ndarray:
    import scipy.optimize

    return scipy.optimize.rosen_der(x)


def _findiff_cases() -> list[Case]:
    c = [
        Case("x**3 at 0.5", _FINDIFF + "::test_partial_diff_1d", lambda xp, x: x**3, 0.5, lambda x: 3 * x**2),
        Case("sin at 1.2", _FINDIFF + "::test_partial_diff", lambda xp, x: xp.sin(x), 1.2, np.cos),
        Case(
            "X**2+Y**2 at (0.3, 0.6)",
            _FINDIFF + "::test_plus",
            lambda xp, x: x[0] ** 2 + x[1] ** 2,
            (0.3, 0.6),
            lambda x: 2 * x,
            kind="gradient",
        ),
        Case(
            "X**3+Y**3+Z**3 at (0.2, 0.5, 0.8)",
            _FINDIFF + "::test_laplace",
            lambda xp, x: x[0] ** 3 + x[1] ** 3 + x[2] ** 3,
            (0.2, 0.5, 0.8),
            lambda x: 3 * x**2,
            kind="gradient",
        ),
        Case(
            "X**2*Y**2*Z**2 at (0.2, 0.5, 0.8)",
            _FINDIFF + "::test_mixed_partials",
            lambda xp, x: x[0] ** 2 * x[1] ** 2 * x[2] ** 2,
            (0.2, 0.5, 0.8),
            lambda x: 2 * x * np.prod(x**2) / x**2,
            kind="gradient",
        ),
        Case(
            "X*Y at (-0.5, 0.25)",
            _FINDIFF + "::test_spac",
            lambda xp, x: x[0] * x[1],
            (-0.5, 0.25),
            lambda x: x[::-1].copy(),
            kind="gradient",
        ),
    ]
    for x in (0.05, 1.0, 3.0, 9.0):
        c.append(
            Case(
                f"exp(-x**2) at {x:g}",
                _FINDIFF + "::TestFinDiffNonUniform::test_1d_different_accs",
                lambda xp, x: xp.exp(-(x**2)),
                x,
                lambda x: -2 * x * np.exp(-(x**2)),
                hard=x == 9.0,
            )
        )
    for x in (math.sqrt(1 / 9), math.sqrt(8 / 9)):
        c.append(
            Case(
                f"x**3 at {x:.4g}",
                _FINDIFF + "::TestFinDiffNonUniform::test_1d_linear_combination",
                lambda xp, x: x**3,
                x,
                lambda x: 3 * x**2,
            )
        )
    return c


#: Every case, in a fixed order.
CASES: tuple[Case, ...] = tuple(
    _example_cases()
    + _fornberg_cases()
    + _numdifftools_cases()
    + _limits_cases()
    + _scipy_cases()
    + _findiff_cases()
)


# --------------------------------------------------------------------------- running the methods


class Result(NamedTuple):
    """One method on one case: the value, its error estimate (NaN if none), f-evaluations per coordinate."""

    value: np.ndarray
    estimate: float
    nfev: int


def _calcjax(case: Case, method: str) -> Result:
    import jax
    import jax.numpy as jnp

    import calcjax

    with jax.enable_x64(True):
        f = case.jax_fn()
        x = jnp.asarray(case.x, jnp.float64)
        if method == "calcjax-richardson":
            fn = calcjax.richardson_derivative if case.kind == "derivative" else calcjax.richardson_gradient
            est = fn(f, x)
            return Result(np.asarray(est.value), float(np.max(np.asarray(est.error))), _richardson_cost())
        if method == "calcjax-central":
            fn = calcjax.derivative if case.kind == "derivative" else calcjax.gradient
            return Result(np.asarray(fn(f, x)), math.nan, 2)
        if method == "calcjax-adaptive":
            from calcjax import _finite_diff

            fn = calcjax.derivative if case.kind == "derivative" else calcjax.gradient
            return Result(np.asarray(fn(f, x, h="adaptive")), math.nan, _finite_diff._adaptive_evaluations())
    raise ValueError(f"unknown method {method!r}")


def _richardson_cost() -> int:
    """f-evaluations per coordinate of calcjax's default Richardson."""
    from calcjax import _richardson

    return _richardson.RICHARDSON_EVALUATIONS


def _counted(f: Callable[[Any], Any]) -> tuple[Callable[[Any], Any], list[int]]:
    count = [0]

    def g(x: Any, *args: Any) -> Any:
        count[0] += int(np.size(x))
        return f(x, *args)

    return g, count


def _numdifftools(case: Case) -> Result:
    import numdifftools as nd

    f, count = _counted(case.numpy_fn())
    x = np.asarray(case.x, np.float64)
    with np.errstate(all="ignore"):
        if case.kind == "derivative":
            res = nd.Derivative(f, full_output=True)(x)
        else:
            f1, count = _counted(lambda z: case.numpy_fn()(np.asarray(z)))
            res = nd.Gradient(f1, full_output=True)(x)
    value = res.estimate
    est = float(np.max(np.asarray(res.error_estimate)))
    # a derivative case counts scalar evaluations; a gradient case's f takes the whole vector
    per_coordinate = count[0] if case.kind == "derivative" else count[0] // x.size // x.size
    return Result(np.asarray(value, np.float64), est, per_coordinate)


def _scipy(case: Case) -> Result:
    from scipy.differentiate import derivative, jacobian

    f, _ = _counted(case.numpy_fn())
    x = np.asarray(case.x, np.float64)
    with np.errstate(all="ignore"):
        if case.kind == "derivative":
            res = derivative(f, x)
            return Result(np.asarray(res.df), float(res.error), int(res.nfev))
        res = jacobian(f, x)
    return Result(np.asarray(res.df), float(np.max(res.error)), int(np.max(res.nfev)))


#: The methods compared on the corpus: name -> runner.
METHODS: dict[str, Callable[[Case], Result]] = {
    "calcjax-richardson": lambda c: _calcjax(c, "calcjax-richardson"),
    "calcjax-central": lambda c: _calcjax(c, "calcjax-central"),
    "calcjax-adaptive": lambda c: _calcjax(c, "calcjax-adaptive"),
    "numdifftools": _numdifftools,
    "scipy": _scipy,
}


def run_method(case: Case, method: str) -> Result:
    """Run one of :data:`METHODS` on ``case``; a method that raises gives NaN."""
    try:
        return METHODS[method](case)
    except Exception as exc:  # a peer failing is a result, recorded as NaN
        shape = np.shape(case.x)
        return Result(np.full(shape, np.nan), math.nan, 0) if "calcjax" not in method else _raise(exc)


def _raise(exc: Exception) -> Result:
    raise exc


def table(cases: tuple[Case, ...] = CASES) -> list[dict[str, Any]]:
    """One row per case: each method's relative error, error estimate and f-evaluations."""
    rows = []
    for case in cases:
        exact = case.exact_value()
        row: dict[str, Any] = {"case": case.name, "source": case.source, "hard": case.hard}
        for method in METHODS:
            res = run_method(case, method)
            row[method] = relative_error(res.value, exact, case.floor)
            row[method + " estimate"] = res.estimate / max(float(np.max(np.abs(exact))), case.floor, 1e-300)
            row[method + " nfev"] = res.nfev
        rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Medians and maxima of each method's relative error, over all cases and over the hard ones."""
    lines = []
    for subset, keep in (("all", lambda r: True), ("hard", lambda r: r["hard"])):
        picked = [r for r in rows if keep(r)]
        for method in METHODS:
            errs = np.array([r[method] for r in picked])
            nfev = np.array([r[method + " nfev"] for r in picked])
            lines.append(
                f"{subset:4s} ({len(picked):3d} cases) {method:20s} median {np.median(errs):.2e}  "
                f"max {np.max(errs):.2e}  non-finite {int(np.sum(~np.isfinite(errs)))}  "
                f"f-evaluations per coordinate: median {np.median(nfev):.0f}"
            )
    return lines


if __name__ == "__main__":  # pragma: no cover - a report, run by hand
    import warnings

    warnings.simplefilter("ignore")
    rows = table()
    head = ["case", *METHODS, "calcjax-richardson estimate"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["case"] + (" (hard)" if r["hard"] else "")] + [f"{r[k]:.1e}" for k in head[1:]]
        print("| " + " | ".join(cells) + " |")
    print()
    print("\n".join(summary(rows)))
