"""Test problems: a JAX function, its NumPy twin and a reference gradient independent of ``jax.grad``.

The tutorial's three functions (``x**2``, ``w*x + b``, ``w1**2 + 2*w2**2``) and four
scalable ones (ill-conditioned quadratic, extended Rosenbrock, logistic regression,
a tanh MLP whose parameters are a pytree). Every reference gradient is a
hand-written analytic formula in NumPy float64 (for the MLP, hand-written
backpropagation), never ``jax.grad``.

Data-dependent problems keep their data apart from ``x``: ``f_data(x, data)``
takes it as an argument, so a jitted benchmark passes it in rather than baking
megabytes of constants into the compiled program. ``f`` is the same with the
data bound.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["PROBLEMS", "Instance", "Problem", "get_problem"]

_HIGHEST = lax.Precision.HIGHEST  # no TF32/bf16 passes on GPUs: float32 means float32


def _np_flatten(tree: Any, dtype: Any = np.float64) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(t, dtype)) for t in jax.tree_util.tree_leaves(tree)])


def _np_unflatten_like(tree: Any) -> Callable[[np.ndarray], Any]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = [np.shape(t) for t in leaves]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflatten(flat: np.ndarray) -> Any:
        out, start = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            out.append(np.reshape(flat[start : start + size], shape))
            start += size
        return jax.tree_util.tree_unflatten(treedef, out)

    return unflatten


@dataclass(frozen=True)
class Instance:
    """One problem at one size and dtype.

    Attributes:
      name: the problem's name.
      n: number of parameters (entries of ``x0``, all leaves together).
      dtype: the dtype of ``x0`` and the data (``"float32"`` or ``"float64"``).
      f_data: ``f_data(x, data) -> scalar``, JAX-traceable.
      data: the data pytree (JAX arrays in ``dtype``; may be empty).
      x0: start point, a JAX array or pytree in ``dtype``.
      f_np: NumPy twin on a flat vector like ``x0_np``, computing in ``dtype``
        (its data are cast to ``dtype``: float32 rounding is float32's).
      x0_np: ``x0`` flattened, NumPy in ``dtype``.
      grad_np: analytic reference gradient on the flat float64 vector.
      unflatten_np: flat NumPy vector -> pytree of NumPy arrays like ``x0``.
      hessian_np: analytic reference Hessian on the flat float64 vector, or ``None``:
        then :meth:`reference_hessian` takes complex steps of ``grad_np``.
      hvp_np: analytic ``hvp_np(x, v) -> H(x) v`` on flat float64 vectors, or ``None`` (complex step).
    """

    name: str
    n: int
    dtype: str
    f_data: Callable[[Any, Any], jax.Array]
    data: Any
    x0: Any
    f_np: Callable[[np.ndarray], float]
    x0_np: np.ndarray
    grad_np: Callable[[np.ndarray], np.ndarray]
    unflatten_np: Callable[[np.ndarray], Any] = field(repr=False)
    hessian_np: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    hvp_np: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @functools.cached_property
    def f(self) -> Callable[[Any], jax.Array]:
        """The JAX function of ``x`` alone (data bound).

        One object per instance, so passing ``inst.f`` twice to a function that
        takes ``f`` as a static argument (``gradient_descent``) reuses its compiled code.
        """
        return functools.partial(self.f_data, data=self.data)

    def reference_gradient(self, x: Any = None) -> np.ndarray:
        """The analytic gradient at ``x`` (default ``x0``), flat float64, from float64 data."""
        flat = self.x0_np if x is None else _np_flatten(x)
        return self.grad_np(flat.astype(np.float64))

    def reference_hessian(self, x: Any = None) -> np.ndarray:
        """The ``n x n`` Hessian at ``x`` (default ``x0``), float64, independent of JAX.

        Analytic where the problem has one; otherwise (the MLP) column ``k`` is the
        complex step of the hand-written gradient, ``Im grad_np(x + i h e_k) / h``,
        exact to rounding.
        """
        flat = (self.x0_np if x is None else _np_flatten(x)).astype(np.float64)
        if self.hessian_np is not None:
            return np.asarray(self.hessian_np(flat), np.float64).reshape(flat.size, flat.size)
        return np.stack([self._complex_step_hvp(flat, e) for e in np.eye(flat.size)], axis=1)

    def reference_hvp(self, v: Any, x: Any = None) -> np.ndarray:
        """``H(x) v`` (``x`` default ``x0``), flat float64: analytic, or the complex step of ``grad_np``."""
        flat = (self.x0_np if x is None else _np_flatten(x)).astype(np.float64)
        vec = _np_flatten(v)
        if vec.shape != flat.shape:
            raise ValueError(f"v must have {flat.size} entries like x, got {vec.size}")
        if self.hvp_np is not None:
            return np.asarray(self.hvp_np(flat, vec), np.float64).reshape(flat.shape)
        return self._complex_step_hvp(flat, vec)

    def _complex_step_hvp(self, flat: np.ndarray, vec: np.ndarray) -> np.ndarray:
        scale = float(np.max(np.abs(vec))) or 1.0
        step = COMPLEX_STEP / scale
        return np.imag(self.grad_np(flat + 1j * step * vec)) / step


@dataclass(frozen=True)
class Problem:
    """A family of instances indexed by ``n``.

    Attributes:
      name: registry name.
      description: one line.
      build: ``build(n) -> (f_data, data_np, x0_np_tree, f_np_data, grad_np)`` in float64;
        ``f_np_data(flat, data)`` is the NumPy twin, ``grad_np(flat)`` the analytic gradient.
      scalable: whether ``n`` can grow; fixed-size problems ignore it.
      fixed_n: the size of a fixed-size problem.
      data_bytes: bytes of data at ``n`` (float64), to skip what would not fit.
      min_n: the smallest ``n``.
      hessian: ``hessian(flat, data) -> n x n`` analytic Hessian in float64, or ``None``
        (the reference is then a complex step of the gradient).
      hvp: ``hvp(flat, v, data) -> H v`` analytic, or ``None``.
    """

    name: str
    description: str
    build: Callable[[int], tuple[Any, ...]]
    scalable: bool = True
    fixed_n: int | None = None
    data_bytes: Callable[[int], int] = lambda n: 0
    min_n: int = 1
    hessian: Callable[[np.ndarray, Any], np.ndarray] | None = field(default=None, repr=False)
    hvp: Callable[[np.ndarray, np.ndarray, Any], np.ndarray] | None = field(default=None, repr=False)

    def instance(self, n: int | None = None, dtype: Any = "float64") -> Instance:
        """The problem at ``n`` parameters (approximately, for the MLP) in ``dtype``."""
        dtype = jnp.dtype(dtype).name
        if dtype not in ("float32", "float64"):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise RuntimeError("float64 problems need jax.config.update('jax_enable_x64', True)")
        if not self.scalable:
            n = self.fixed_n
        if n is None or isinstance(n, bool) or not isinstance(n, int | np.integer) or n < self.min_n:
            raise ValueError(f"n must be an integer >= {self.min_n} for problem {self.name!r}, got {n!r}")
        f_data, data_np, x0_tree, f_np, grad_np = self.build(int(n))
        data_cast = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), data_np)
        data = jax.tree_util.tree_map(jnp.asarray, data_cast)
        x0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), x0_tree)
        x0_np = _np_flatten(x0_tree).astype(dtype)
        unflat = _np_unflatten_like(x0_tree)
        f_twin = functools.partial(f_np, data=data_cast)
        hess = None if self.hessian is None else functools.partial(self.hessian, data=data_np)
        hvp = None if self.hvp is None else functools.partial(self.hvp, data=data_np)
        return Instance(
            self.name, x0_np.size, dtype, f_data, data, x0, f_twin, x0_np, grad_np, unflat, hess, hvp
        )


# --------------------------------------------------------------------------- tutorial


def _square(n: int):
    def f(x, data):
        return x**2

    return f, {}, np.float64(5.0), lambda x, data: x[0] ** 2, lambda x: 2.0 * x


def _linear(n: int):
    # f(w, b) = w * x + b at the data point x = 3: d/dw = x, d/db = 1.
    def f(p, data):
        return p[0] * data["x"] + p[1]

    return (
        f,
        {"x": np.float64(3.0)},
        np.array([2.0, 1.0]),
        lambda p, data: p[0] * data["x"] + p[1],
        lambda p: np.array([3.0, 1.0]),
    )


def _tutorial_quadratic(n: int):
    def f(w, data):
        return w[0] ** 2 + 2 * w[1] ** 2

    return (
        f,
        {},
        np.array([1.0, -2.0]),
        lambda w, data: w[0] ** 2 + 2 * w[1] ** 2,
        lambda w: np.array([2 * w[0], 4 * w[1]]),
    )


# --------------------------------------------------------------------------- scalable

QUADRATIC_CONDITION = 1e4


def _quadratic(n: int):
    """0.5 * sum(d_i x_i^2) with d log-spaced from 1 to 1e4 (condition number 1e4)."""
    d = np.logspace(0.0, np.log10(QUADRATIC_CONDITION), n)
    x0 = 1.0 + 0.5 * np.sin(np.arange(n))

    def f(x, data):
        return 0.5 * jnp.sum(data["d"] * x * x)

    return f, {"d": d}, x0, lambda x, data: 0.5 * np.sum(data["d"] * x * x), lambda x: d * x


def _rosenbrock(n: int):
    """Extended Rosenbrock: sum over pairs of 100 (x_{2i} - x_{2i-1}^2)^2 + (1 - x_{2i-1})^2."""
    if n % 2:
        raise ValueError(f"the extended Rosenbrock problem needs an even n, got n={n}")
    x0 = np.tile([-1.2, 1.0], n // 2)

    def f(x, data):
        a, b = x[0::2], x[1::2]
        return jnp.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)

    def f_np(x, data):
        a, b = x[0::2], x[1::2]
        return np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)

    def grad(x):
        a, b = x[0::2], x[1::2]
        g = np.empty_like(x)
        g[0::2] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
        g[1::2] = 200.0 * (b - a * a)
        return g

    return f, {}, x0, f_np, grad


LOGISTIC_ROWS = 1000


def _logistic(n: int, rows: int = LOGISTIC_ROWS):
    """Mean log-loss of logistic regression on seeded synthetic data (rows x n features).

    Written as ``log1p(exp(z))``, which is analytic (complex-step safe) for the
    moderate margins of this data.
    """
    rng = np.random.default_rng(1234 + n)
    a = rng.standard_normal((rows, n)) / np.sqrt(n)
    w_true = rng.standard_normal(n)
    y = np.where(a @ w_true + 0.1 * rng.standard_normal(rows) > 0, 1.0, -1.0)
    x0 = 0.1 * np.cos(np.arange(n))

    def f(w, data):
        z = -data["y"] * jnp.matmul(data["a"], w, precision=_HIGHEST)
        return jnp.mean(jnp.log1p(jnp.exp(z)))

    def f_np(w, data):
        return np.mean(np.log1p(np.exp(-data["y"] * (data["a"] @ w))))

    def grad(w):
        z = -y * (a @ w)
        s = 1.0 / (1.0 + np.exp(-z))  # d/dz log1p(exp(z))
        return a.T @ (-y * s) / rows

    return f, {"a": a, "y": y}, x0, f_np, grad


MLP_INPUTS = 8
MLP_ROWS = 64


def _mlp(n: int):
    """Mean squared error of a one-hidden-layer tanh MLP; parameters a dict (pytree).

    ``n`` sets the hidden width ``H = max(1, round((n - 1) / (inputs + 2)))``, so the
    actual parameter count ``H * (inputs + 2) + 1`` is close to ``n``.
    """
    d_in = MLP_INPUTS
    hidden = max(1, round((n - 1) / (d_in + 2)))
    rng = np.random.default_rng(99 + hidden)
    xs = rng.standard_normal((MLP_ROWS, d_in))
    ys = np.sin(xs @ rng.standard_normal(d_in))
    params = {
        "W1": rng.standard_normal((d_in, hidden)) / np.sqrt(d_in),
        "b1": 0.1 * rng.standard_normal(hidden),
        "W2": rng.standard_normal(hidden) / np.sqrt(hidden),
        "b2": np.float64(0.0),
    }
    unflat = _np_unflatten_like(params)

    def f(p, data):
        hid = jnp.tanh(jnp.matmul(data["x"], p["W1"], precision=_HIGHEST) + p["b1"])
        pred = jnp.matmul(hid, p["W2"], precision=_HIGHEST) + p["b2"]
        return jnp.mean((pred - data["y"]) ** 2)

    def forward(p, data):
        hid = np.tanh(data["x"] @ p["W1"] + p["b1"])
        return hid, hid @ p["W2"] + p["b2"]

    def f_np(flat, data):
        _, pred = forward(unflat(flat), data)
        return np.mean((pred - data["y"]) ** 2)

    def grad(flat):
        p = unflat(flat)
        hid, pred = forward(p, {"x": xs})
        d_pred = 2.0 * (pred - ys) / MLP_ROWS
        d_hid = np.outer(d_pred, p["W2"]) * (1.0 - hid**2)
        g = {"W1": xs.T @ d_hid, "b1": d_hid.sum(0), "W2": hid.T @ d_pred, "b2": d_pred.sum()}
        return _np_flatten(g, np.result_type(flat, np.float64))  # complex too: the reference Hessian

    return f, {"x": xs, "y": ys}, params, f_np, grad


# --------------------------------------------------------------------------- reference Hessians

#: Imaginary step of the complex-step references (far below rounding: no truncation).
COMPLEX_STEP = 1e-20


def _diagonal_hessian(diag: Callable[[np.ndarray, Any], np.ndarray]):
    """``(hessian, hvp)`` of a problem whose Hessian is ``diag(diag(x, data))``."""
    return (lambda x, data: np.diag(diag(x, data)), lambda x, v, data: diag(x, data) * v)


def _rosenbrock_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 2 x 2 block of each pair (a, b): [[1200 a^2 - 400 b + 2, -400 a], [-400 a, 200]]."""
    a, b = x[0::2], x[1::2]
    return 1200.0 * a * a - 400.0 * b + 2.0, -400.0 * a, np.full_like(a, 200.0)


def _rosenbrock_hessian(x: np.ndarray, data: Any) -> np.ndarray:
    aa, ab, bb = _rosenbrock_blocks(x)
    i = np.arange(0, x.size, 2)
    hess = np.zeros((x.size, x.size))
    hess[i, i], hess[i, i + 1], hess[i + 1, i], hess[i + 1, i + 1] = aa, ab, ab, bb
    return hess


def _rosenbrock_hvp(x: np.ndarray, v: np.ndarray, data: Any) -> np.ndarray:
    aa, ab, bb = _rosenbrock_blocks(x)
    out = np.empty_like(v)
    out[0::2] = aa * v[0::2] + ab * v[1::2]
    out[1::2] = ab * v[0::2] + bb * v[1::2]
    return out


def _logistic_curvature(w: np.ndarray, data: Any) -> np.ndarray:
    """``p (1 - p) / m`` per row, ``p`` the sigmoid of the margin: H = A^T diag(p (1 - p)) A / m."""
    p = 1.0 / (1.0 + np.exp(data["y"] * (data["a"] @ w)))
    return p * (1.0 - p) / data["a"].shape[0]


def _logistic_hessian(w: np.ndarray, data: Any) -> np.ndarray:
    a = data["a"]
    return a.T @ (a * _logistic_curvature(w, data)[:, None])


def _logistic_hvp(w: np.ndarray, v: np.ndarray, data: Any) -> np.ndarray:
    return data["a"].T @ (_logistic_curvature(w, data) * (data["a"] @ v))


_QUADRATIC_H = _diagonal_hessian(lambda x, data: data["d"] * np.ones_like(x))
_CONSTANT_H = {
    "square": _diagonal_hessian(lambda x, data: np.full_like(np.atleast_1d(x), 2.0)),
    "linear": _diagonal_hessian(lambda x, data: np.zeros_like(x)),
    "tutorial-quadratic": _diagonal_hessian(lambda x, data: np.array([2.0, 4.0])),
}


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        Problem(
            "square",
            "tutorial: f(x) = x**2 at x0 = 5",
            _square,
            scalable=False,
            fixed_n=1,
            hessian=_CONSTANT_H["square"][0],
            hvp=_CONSTANT_H["square"][1],
        ),
        Problem(
            "linear",
            "tutorial: f(w, b) = w*x + b at x = 3 (df/dw = x)",
            _linear,
            scalable=False,
            fixed_n=2,
            hessian=_CONSTANT_H["linear"][0],
            hvp=_CONSTANT_H["linear"][1],
        ),
        Problem(
            "tutorial-quadratic",
            "tutorial: L(w) = w1**2 + 2*w2**2 at (1, -2)",
            _tutorial_quadratic,
            scalable=False,
            fixed_n=2,
            hessian=_CONSTANT_H["tutorial-quadratic"][0],
            hvp=_CONSTANT_H["tutorial-quadratic"][1],
        ),
        Problem(
            "quadratic",
            "ill-conditioned quadratic 0.5*sum(d*x**2), cond 1e4",
            _quadratic,
            hessian=_QUADRATIC_H[0],
            hvp=_QUADRATIC_H[1],
        ),
        Problem(
            "rosenbrock",
            "extended Rosenbrock (n even)",
            _rosenbrock,
            min_n=2,
            hessian=_rosenbrock_hessian,
            hvp=_rosenbrock_hvp,
        ),
        Problem(
            "logistic",
            f"logistic regression mean log-loss, {LOGISTIC_ROWS} rows",
            _logistic,
            data_bytes=lambda n: 8 * LOGISTIC_ROWS * n,
            hessian=_logistic_hessian,
            hvp=_logistic_hvp,
        ),
        Problem(
            "mlp", f"tanh MLP regression loss, {MLP_INPUTS} inputs, params a dict", _mlp, min_n=MLP_INPUTS + 3
        ),
    ]
}

SCALABLE = tuple(name for name, p in PROBLEMS.items() if p.scalable)
TUTORIAL = tuple(name for name, p in PROBLEMS.items() if not p.scalable)


def get_problem(name: str) -> Problem:
    """The problem called ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]


# --------------------------------------------------------------------------- batched NumPy twins
# For black-box FD with ``vectorized=True``: ``f(X, data)`` for a batch of flat points ``X`` of shape
# ``(k, n)`` returns ``(k,)`` (a single point ``(n,)`` gives a scalar). Module-level, so partials
# of them pickle for worker processes.


def _quadratic_batch(x: np.ndarray, data: Any) -> np.ndarray:
    return 0.5 * np.sum(data["d"] * x * x, axis=-1)


def _rosenbrock_batch(x: np.ndarray, data: Any) -> np.ndarray:
    a, b = x[..., 0::2], x[..., 1::2]
    return np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, axis=-1)


def _logistic_batch(w: np.ndarray, data: Any) -> np.ndarray:
    """One matrix product for the whole batch: margins ``(k, rows)``."""
    return np.mean(np.log1p(np.exp(-data["y"] * (w @ data["a"].T))), axis=-1)


def _mlp_batch(flat: np.ndarray, data: Any) -> np.ndarray:
    """The MLP on flat vectors laid out as ``x0_np`` (the dict's leaves in key order: W1, W2, b1, b2)."""
    xs, ys = data["x"], data["y"]
    d_in = xs.shape[1]
    hidden = (flat.shape[-1] - 1) // (d_in + 2)
    lead = flat.shape[:-1]
    w1 = flat[..., : d_in * hidden].reshape(*lead, d_in, hidden)
    w2 = flat[..., d_in * hidden : (d_in + 1) * hidden]
    b1 = flat[..., (d_in + 1) * hidden : (d_in + 2) * hidden]
    b2 = flat[..., -1]
    hid = np.tanh(np.matmul(xs, w1) + b1[..., None, :])  # (..., rows, hidden): one BLAS call per point
    pred = np.matmul(hid, w2[..., None])[..., 0] + b2[..., None]
    return np.mean((pred - ys) ** 2, axis=-1)


#: Problem name -> its batched NumPy twin ``f(X, data)``.
NUMPY_BATCH: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "quadratic": _quadratic_batch,
    "rosenbrock": _rosenbrock_batch,
    "logistic": _logistic_batch,
    "mlp": _mlp_batch,
}


def numpy_batch(inst: Instance) -> Callable[[np.ndarray], np.ndarray]:
    """The batched NumPy twin of ``inst`` (``(k, n) -> (k,)``, data bound, in ``inst.dtype``).

    Raises:
      ValueError: the problem has no batched twin (see :data:`NUMPY_BATCH`).
    """
    if inst.name not in NUMPY_BATCH:
        raise ValueError(
            f"problem {inst.name!r} has no batched NumPy twin; those with one: {', '.join(NUMPY_BATCH)}"
        )
    return functools.partial(NUMPY_BATCH[inst.name], data=inst.f_np.keywords["data"])
