"""The ``nonjax`` suite's problems and methods: gradients of functions JAX cannot trace.

Problems (every loss is a module-level function, so a process pool can receive it):

- the NumPy twins of the four scalable problems (:mod:`calcjax._problems`), with their
  batched versions (:func:`calcjax._problems.numpy_batch`) for ``vectorized=True``;
- ``ode-fit``: the six parameters of a Lotka--Volterra model fitted to noisy data
  through ``scipy.integrate.solve_ivp`` (DOP853, tolerance 1e-10): a realistic black
  box with no JAX port, several milliseconds per call. Its reference gradient comes
  from the forward sensitivity equations, integrated at tolerance 1e-13 -- a
  different computation from any finite difference;
- ``sleep-5ms``: ``sum(x**2)`` after waiting :data:`SLEEP_S` (``time.sleep``), as a
  simulator waiting on an external program does: what ``workers=`` is for;
- ``compute-5ms``: a loss that computes for about as long (``mean_o sum_i sin(x_i + o)``,
  :data:`COMPUTE_ELEMENTS` sines): workers then compete for the cores.

Methods (:data:`METHODS`): calcjax serial, vectorized, ``workers=2`` and a Dask
``LocalCluster(2)``; the tutorial's loop; ``scipy.optimize.approx_fprime``;
``scipy.differentiate.jacobian`` fed the batched twin (its trailing-axis layout);
numdifftools; and ``jax.grad`` on the JAX twin where there is one.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BLACK_BOXES",
    "METHODS",
    "SLEEP_S",
    "TWINS",
    "NonJaxProblem",
    "dask_available",
    "nonjax_problem",
]

#: The four scalable problems whose NumPy twins the suite runs.
TWINS = ("quadratic", "rosenbrock", "logistic", "mlp")
#: Problems with no JAX version in the suite.
BLACK_BOXES = ("ode-fit", "sleep-5ms", "compute-5ms")
#: Seconds each call of ``sleep-5ms`` waits.
SLEEP_S = 0.005
#: ``sin`` evaluations per call of ``compute-5ms`` (whatever n), sized to cost about as much as the
#: waiting loss on one core (``f_call_s`` in each record says what it cost in that run).
COMPUTE_ELEMENTS = 480_000
#: Process-pool methods and their number of workers.
WORKERS = 2


# --------------------------------------------------------------------------- black-box problems


def sleep_loss(x: np.ndarray) -> float:
    """``sum(x**2)`` after waiting :data:`SLEEP_S` seconds."""
    time.sleep(SLEEP_S)
    return float(np.sum(np.asarray(x, np.float64) ** 2))


def sleep_grad(x: np.ndarray) -> np.ndarray:
    return 2.0 * np.asarray(x, np.float64)


def _offsets(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, max(1, COMPUTE_ELEMENTS // max(n, 1)))


def compute_loss(x: np.ndarray) -> float:
    """``mean over offsets o of sum_i sin(x_i + o)``: milliseconds of arithmetic, no waiting
    (:data:`COMPUTE_ELEMENTS` sines whatever the size of ``x``)."""
    x = np.asarray(x, np.float64)
    offsets = _offsets(x.size)
    return float(np.sum(np.sin(x[None, :] + offsets[:, None])) / offsets.size)


def compute_grad(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    offsets = _offsets(x.size)
    return np.cos(x[None, :] + offsets[:, None]).sum(axis=0) / offsets.size


# Lotka--Volterra: x' = a x - b x y, y' = c x y - d y; parameters p = (a, b, c, d, x(0), y(0)).
ODE_TIMES = np.linspace(0.0, 10.0, 41)
ODE_TRUE = np.array([1.1, 0.4, 0.1, 0.4, 10.0, 5.0])
ODE_START = np.array([1.0, 0.5, 0.12, 0.35, 9.0, 6.0])
#: Relative and absolute tolerance of the loss's integration, and of the reference's.
ODE_TOL = 1e-10
ODE_REFERENCE_TOL = 1e-13


def _lv(t: float, u: np.ndarray, a: float, b: float, c: float, d: float) -> list[float]:
    x, y = u
    return [a * x - b * x * y, c * x * y - d * y]


def _trajectory(p: np.ndarray) -> np.ndarray:
    from scipy.integrate import solve_ivp

    a, b, c, d, x0, y0 = p
    sol = solve_ivp(
        _lv,
        ODE_TIMES[[0, -1]],
        [x0, y0],
        t_eval=ODE_TIMES,
        args=(a, b, c, d),
        rtol=ODE_TOL,
        atol=ODE_TOL,
        method="DOP853",
    )
    return sol.y


@functools.cache
def _ode_data() -> np.ndarray:
    noise = np.random.default_rng(7).standard_normal((2, ODE_TIMES.size))
    return _trajectory(ODE_TRUE) * (1.0 + 0.02 * noise)


def ode_loss(p: np.ndarray) -> float:
    """Half the squared misfit of the model's trajectory to the data (solve_ivp, DOP853)."""
    y = _trajectory(np.asarray(p, np.float64))
    if y.shape != _ode_data().shape:  # the integration failed (parameters far outside the model's range)
        return float("nan")
    r = y - _ode_data()
    return float(0.5 * np.sum(r * r))


def _lv_sensitivities(t: float, z: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    x, y = z[:2]
    s = z[2:].reshape(2, 6)
    jac_u = np.array([[a - b * y, -b * x], [c * y, c * x - d]])
    jac_p = np.array([[x, -x * y, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, x * y, -y, 0.0, 0.0]])
    return np.concatenate([[a * x - b * x * y, c * x * y - d * y], (jac_u @ s + jac_p).ravel()])


def ode_grad(p: np.ndarray) -> np.ndarray:
    """The gradient from the forward sensitivity equations (tolerance :data:`ODE_REFERENCE_TOL`)."""
    from scipy.integrate import solve_ivp

    a, b, c, d, x0, y0 = np.asarray(p, np.float64)
    s0 = np.zeros((2, 6))
    s0[0, 4] = s0[1, 5] = 1.0
    sol = solve_ivp(
        _lv_sensitivities,
        ODE_TIMES[[0, -1]],
        np.concatenate([[x0, y0], s0.ravel()]),
        t_eval=ODE_TIMES,
        args=(a, b, c, d),
        rtol=ODE_REFERENCE_TOL,
        atol=ODE_REFERENCE_TOL,
        method="DOP853",
    )
    r = sol.y[:2] - _ode_data()
    return np.einsum("it,ijt->j", r, sol.y[2:].reshape(2, 6, -1))


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class NonJaxProblem:
    """One problem of the suite at one size, float64.

    Attributes:
      name: problem name.
      n: number of parameters.
      f: the NumPy loss of a flat vector (module-level or a partial of one: picklable).
      f_batch: ``(k, n) -> (k,)``, or ``None`` when the problem has no batched version.
      x0: the point, float64.
      grad: the reference gradient at ``x0`` (analytic, or the ODE's sensitivities).
      reference: how the reference was made.
      jax_f: the JAX twin of ``x -> f(x)`` (data bound), or ``None``.
    """

    name: str
    n: int
    f: Callable[[np.ndarray], Any]
    f_batch: Callable[[np.ndarray], np.ndarray] | None
    x0: np.ndarray
    grad: np.ndarray
    reference: str
    jax_f: Callable[[Any], Any] | None


@functools.lru_cache(maxsize=8)
def nonjax_problem(name: str, n: int) -> NonJaxProblem:
    """The problem ``name`` at ``n`` parameters (the black boxes: ``ode-fit`` has 6 whatever ``n``)."""
    if name in TWINS:
        from calcjax._problems import PROBLEMS, numpy_batch

        inst = PROBLEMS[name].instance(n, "float64")
        x0 = np.asarray(inst.x0_np, np.float64)
        return NonJaxProblem(
            name,
            inst.n,
            inst.f_np,
            numpy_batch(inst),
            x0,
            inst.reference_gradient(),
            "analytic",
            _flat_jax(inst),
        )
    if name == "ode-fit":
        return NonJaxProblem(
            name, 6, ode_loss, None, ODE_START.copy(), ode_grad(ODE_START), "sensitivity", None
        )
    if name in ("sleep-5ms", "compute-5ms"):
        x0 = np.cos(np.arange(n, dtype=np.float64))
        f, g = (sleep_loss, sleep_grad) if name == "sleep-5ms" else (compute_loss, compute_grad)
        return NonJaxProblem(name, n, f, None, x0, g(x0), "analytic", None)
    raise ValueError(f"unknown nonjax problem {name!r}; valid: {', '.join(TWINS + BLACK_BOXES)}")


def _flat_jax(inst: Any) -> Callable[[Any], Any]:
    """The JAX twin as a function of the flat vector (the MLP's parameters are a dict)."""
    from jax.flatten_util import ravel_pytree

    _, unravel = ravel_pytree(inst.x0)
    return lambda flat: inst.f(unravel(flat))


# --------------------------------------------------------------------------- methods


def dask_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))


def _calcjax(p: NonJaxProblem, **options: Any) -> np.ndarray:
    import calcjax

    return np.asarray(calcjax.gradient(p.f, p.x0, traceable=False, **options))


def _vectorized(p: NonJaxProblem) -> np.ndarray:
    import calcjax

    return np.asarray(calcjax.gradient(p.f_batch, p.x0, traceable=False, vectorized=True))


def _tutorial(p: NonJaxProblem) -> np.ndarray:
    from calcjax.baselines import numpy_loop_gradient

    return numpy_loop_gradient(p.f, p.x0)


def _approx_fprime(p: NonJaxProblem) -> np.ndarray:
    from scipy.optimize import approx_fprime

    return approx_fprime(p.x0, p.f)


def _scipy_differentiate(p: NonJaxProblem) -> np.ndarray:
    """``scipy.differentiate.jacobian`` with the batched twin: its points arrive on trailing axes."""
    from scipy.differentiate import jacobian

    n = p.n

    def batched(xs: np.ndarray) -> np.ndarray:
        cols = xs.reshape(n, -1)
        if p.f_batch is not None:
            out = p.f_batch(np.ascontiguousarray(cols.T))
        else:
            out = np.array([p.f(cols[:, k]) for k in range(cols.shape[1])])
        return np.asarray(out).reshape(xs.shape[1:])

    return jacobian(batched, p.x0).df


def _numdifftools(p: NonJaxProblem) -> np.ndarray:
    import numdifftools as nd

    return nd.Gradient(p.f)(p.x0)


@dataclass(frozen=True)
class Method:
    """A gradient method of the suite.

    Attributes:
      name: record name.
      run: ``run(problem) -> gradient`` (``workers``: also ``run(problem, workers=...)``).
      evals: f-evaluations at ``n`` (adaptive methods: typical).
      needs: ``"batch"`` (a batched twin), ``"jax"`` (a JAX twin), ``"dask"`` or ``None``.
      pool: a process pool is started before the timing (start-up measured apart).
    """

    name: str
    run: Callable[..., np.ndarray]
    evals: Callable[[int], int]
    needs: str | None = None
    pool: bool = False


#: The suite's methods, in display order.
METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("calcjax-serial", _calcjax, lambda n: 2 * n),
        Method("calcjax-vectorized", _vectorized, lambda n: 2 * n, needs="batch"),
        Method("calcjax-workers2", _calcjax, lambda n: 2 * n, pool=True),
        Method("calcjax-dask2", _calcjax, lambda n: 2 * n, needs="dask", pool=True),
        Method("tutorial-loop", _tutorial, lambda n: 2 * n),
        Method("scipy-approx-fprime", _approx_fprime, lambda n: n + 1),
        Method("scipy-differentiate", _scipy_differentiate, lambda n: 11 * n),
        Method("numdifftools", _numdifftools, lambda n: 30 * n + 1),
        Method("jax-grad", lambda p: p.jax_f, lambda n: 0, needs="jax"),
    ]
}


def unavailable(method: str, problem: NonJaxProblem) -> str | None:
    """Why ``method`` does not run on ``problem`` (``None`` when it does)."""
    m = METHODS[method]
    if m.needs == "batch" and problem.f_batch is None:
        return f"{problem.name} has no batched version"
    if m.needs == "jax" and problem.jax_f is None:
        return f"{problem.name} has no JAX port"
    if m.needs == "dask" and not dask_available():
        return "dask and distributed are not installed (pip install calcjax[dask])"
    return None
