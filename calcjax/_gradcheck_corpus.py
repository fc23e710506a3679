"""A corpus of correct gradients and planted bugs, for the gradient check's tests and its bench table.

Each :class:`Case` holds the true function ``f`` (JAX), a point ``x`` and the
gradient to check: a JAX function of ``x`` that is either right or carries one
planted bug. :func:`with_gradient` builds ``f`` with that gradient as its
``custom_vjp``, so the same case checks ``jax.grad`` of a custom rule, and
``jax.test_util.check_grads`` (which only checks a function's own AD) can run on
it side by side with :func:`calcjax.check_gradient`. :func:`table_rows` computes
the rows of the ``gradcheck`` table: detection rate, false-failure rate and
f-evaluations per check for both tools.

Random smooth functions are built from a few module-level families bound to
random parameters with :class:`jax.tree_util.Partial`, so every function of one
family and shape compiles once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from calcjax._check import _directions, check_gradient

__all__ = [
    "Case",
    "bug_cases",
    "correct_cases",
    "effect_ratio",
    "run_calcjax",
    "run_check_grads",
    "table_rows",
    "with_gradient",
]

#: n of the random correct functions, two per family (one compiled program per family and n):
#: together they cover 1 to 10 000, and 10 000 comes up for three families.
FAMILY_SIZES = ((1, 10_000), (2, 1000), (5, 10_000), (17, 100), (100, 10_000), (3, 300))


class Case(NamedTuple):
    """One function, point and gradient to check.

    Attributes:
      name: what it is (``"sign flip on one coordinate"``).
      kind: ``"bug"`` or ``"correct"``.
      dtype: ``"float32"`` or ``"float64"``.
      f: the true scalar function of ``x`` (JAX).
      x: the point (an array or a pytree).
      grad: the gradient to check, a JAX function of ``x``; ``None``: ``jax.grad(f)``.
      culprit: for a bug, the leaf the check must name (``"x"`` or a key path
        such as ``"x['layer2']['b']"``).
    """

    name: str
    kind: str
    dtype: str
    f: Callable[[Any], jax.Array]
    x: Any
    grad: Callable[[Any], Any] | None
    culprit: str | None = None


def with_gradient(case: Case) -> Callable[[Any], jax.Array]:
    """``case.f`` whose ``jax.grad`` is ``case.grad`` (a ``custom_vjp``); ``case.f`` when grad is None."""
    if case.grad is None:
        return case.f
    f, g = case.f, case.grad

    @jax.custom_vjp
    def checked(x):
        return f(x)

    def fwd(x):
        return f(x), x

    def bwd(x, ct):
        return (jax.tree_util.tree_map(lambda a: ct * a, g(x)),)

    checked.defvjp(fwd, bwd)
    return checked


# --------------------------------------------------------------------------- problems


def _rng_arrays(seed: int, dtype: str, *shapes: tuple[int, ...]) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s), dtype) for s in shapes]


def _mlp_loss(data, p):
    x, y = data
    h = jnp.tanh(x @ p["layer1"]["W"] + p["layer1"]["b"])
    return jnp.mean((h @ p["layer2"]["W"] + p["layer2"]["b"] - y) ** 2)


def _mlp(dtype: str):
    X, y, W1, b1, W2 = _rng_arrays(1, dtype, (16, 4), (16,), (4, 8), (8,), (8,))
    params = {
        "layer1": {"W": 0.5 * W1, "b": 0.5 * b1},
        "layer2": {"W": 0.5 * W2, "b": jnp.asarray(0.3, dtype)},
    }
    return Partial(_mlp_loss, (X, y)), params


def _mlp_grad_by_hand(data, p, *, act_deriv=None, bias_reduce=jnp.sum, zero_b1=False):
    """Hand-written backprop of :func:`_mlp_loss`, with optional planted mistakes."""
    x, y = data
    z = x @ p["layer1"]["W"] + p["layer1"]["b"]
    h = jnp.tanh(z)
    r = h @ p["layer2"]["W"] + p["layer2"]["b"] - y
    m = y.shape[0]
    dout = 2 * r / m
    dz = jnp.outer(dout, p["layer2"]["W"]) * (act_deriv(h) if act_deriv else 1 - h**2)
    return {
        "layer1": {"W": x.T @ dz, "b": jnp.zeros_like(p["layer1"]["b"]) if zero_b1 else bias_reduce(dz, 0)},
        "layer2": {"W": h.T @ dout, "b": jnp.sum(dout)},
    }


def _logistic_loss(data, p):
    X, y, lam = data
    z = X @ p["w"] + p["b"]
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * lam * jnp.sum(p["w"] ** 2)


def _logistic(dtype: str, lam: float = 0.0):
    X, w = _rng_arrays(2, dtype, (32, 10), (10,))
    y = jnp.asarray(np.random.default_rng(3).integers(0, 2, 32), dtype)
    return Partial(_logistic_loss, (X, y, jnp.asarray(lam, dtype))), {
        "w": 0.3 * w,
        "b": jnp.asarray(0.1, dtype),
    }


def _logistic_grad(data, p, *, residual=None, scale=None, no_reg=False):
    X, y, lam = data
    prob = jax.nn.sigmoid(X @ p["w"] + p["b"])
    res = residual(prob, y) if residual else prob - y
    m = y.shape[0] if scale is None else scale
    gw = X.T @ res / m + (0.0 if no_reg else lam * p["w"])
    return {"b": jnp.sum(res) / m, "w": gw}


def _wave(c, x):
    return jnp.sum(jnp.sin(x) * jnp.exp(0.3 * x)) + c * jnp.sum(x[1:] * x[:-1])


def _wave_grad(c, x):
    g = jnp.exp(0.3 * x) * (jnp.cos(x) + 0.3 * jnp.sin(x))
    return g + c * (jnp.pad(x[1:], (0, 1)) + jnp.pad(x[:-1], (1, 0)))


def _vector(dtype: str, n: int = 20):
    return jnp.asarray(np.linspace(-1.5, 1.7, n), dtype)


def _tanh_map(A, x):
    return jnp.sum(jnp.tanh(A @ x))


def _sum_sq(data, w):
    X, y = data
    return jnp.sum((X @ w - y) ** 2)


def _term(delta, x):
    return jnp.sum(jnp.cos(x)) + delta * jnp.sum(x**3)


@jax.custom_vjp
def _softplus_bad_rule(x):
    return jnp.logaddexp(0.0, x)


_softplus_bad_rule.defvjp(lambda x: (jnp.logaddexp(0.0, x), x), lambda x, ct: (ct * jax.nn.sigmoid(-x),))


@jax.custom_jvp
def _log1pexp_bad_jvp(x):
    return jnp.logaddexp(0.0, x)


_log1pexp_bad_jvp.defjvp(lambda p, t: (jnp.logaddexp(0.0, p[0]), jnp.exp(p[0]) * t[0]))


def _softplus_sum(x):
    return jnp.sum(jnp.logaddexp(0.0, x))


def bug_cases(dtype: str) -> list[Case]:
    """At least 25 kinds of planted gradient bugs, each sized to stand above the FD error estimate."""
    cases: list[Case] = []
    add = lambda name, f, x, grad, culprit: cases.append(Case(name, "bug", dtype, f, x, grad, culprit))
    mlp, params = _mlp(dtype)
    data = mlp.args[0]
    good_mlp = lambda p: _mlp_grad_by_hand(data, p)

    def edit(path: tuple[str, ...], fn):
        def g(p):
            out = good_mlp(p)
            leaf = out
            for k in path[:-1]:
                leaf = leaf[k]
            leaf[path[-1]] = fn(leaf[path[-1]])
            return out

        return g

    key = lambda *ks: "x" + "".join(f"['{k}']" for k in ks)
    add("factor 2 on one leaf", mlp, params, edit(("layer2", "b"), lambda a: 2 * a), key("layer2", "b"))
    add("factor 2 on a weight leaf", mlp, params, edit(("layer1", "W"), lambda a: 2 * a), key("layer1", "W"))
    add(
        "sign flip on one weight",
        mlp,
        params,
        edit(("layer1", "W"), lambda a: a.at[2, 3].multiply(-1)),
        key("layer1", "W"),
    )
    add("bias gradient left at zero", mlp, params, edit(("layer1", "b"), jnp.zeros_like), key("layer1", "b"))
    add(
        "tanh' written as 1 - tanh",
        mlp,
        params,
        lambda p: _mlp_grad_by_hand(data, p, act_deriv=lambda h: 1 - h),
        key("layer1", "W"),
    )
    add(
        "bias gradient averaged over the batch",
        mlp,
        params,
        lambda p: _mlp_grad_by_hand(data, p, bias_reduce=jnp.mean),
        key("layer1", "b"),
    )
    add(
        "gradients of two leaves swapped",
        mlp,
        params,
        lambda p: {
            "layer1": {"W": good_mlp(p)["layer1"]["W"], "b": good_mlp(p)["layer2"]["W"]},
            "layer2": {"W": good_mlp(p)["layer1"]["b"], "b": good_mlp(p)["layer2"]["b"]},
        },
        key("layer1", "b"),
    )
    add(
        "output-layer weight gradient transposed in the product",
        mlp,
        params,
        edit(("layer2", "W"), lambda a: a[::-1]),
        key("layer2", "W"),
    )

    logit, lp = _logistic(dtype)
    ldata = logit.args[0]
    add(
        "residual y - p instead of p - y",
        logit,
        lp,
        lambda p: _logistic_grad(ldata, p, residual=lambda q, y: y - q),
        key("w"),
    )
    add(
        "residual p instead of p - y",
        logit,
        lp,
        lambda p: _logistic_grad(ldata, p, residual=lambda q, y: q),
        key("w"),
    )
    add("sum instead of mean", logit, lp, lambda p: _logistic_grad(ldata, p, scale=1.0), key("w"))
    add(
        "sign flip of one leaf",
        logit,
        lp,
        lambda p: {**_logistic_grad(ldata, p), "w": -_logistic_grad(ldata, p)["w"]},
        key("w"),
    )
    lam = 0.1 if dtype == "float64" else 0.2
    reg, rp = _logistic(dtype, lam=lam)
    rdata = reg.args[0]
    add("regularization term omitted", reg, rp, lambda p: _logistic_grad(rdata, p, no_reg=True), key("w"))

    x = _vector(dtype)
    wave = Partial(_wave, jnp.asarray(0.5, dtype))
    good_wave = lambda z: _wave_grad(jnp.asarray(0.5, dtype), z)
    add("sign flip on one coordinate", wave, x, lambda z: good_wave(z).at[7].multiply(-1), "x[7]")
    add("off-by-one shift", wave, x, lambda z: jnp.roll(good_wave(z), 1), "x")
    add(
        "neighbour's value copied into one coordinate",
        wave,
        x,
        lambda z: good_wave(z).at[4].set(good_wave(z)[5]),
        "x[4]",
    )
    add("half the gradient", wave, x, lambda z: 0.5 * good_wave(z), "x")
    add(
        "stale closed-over point",
        wave,
        x,
        lambda z, stale=x + 0.05: good_wave(stale),
        "x",
    )
    add(
        "coupling term counted once",
        wave,
        x,
        lambda z: good_wave(z) - 0.5 * jnp.pad(z[:-1], (1, 0)),
        "x",
    )
    add(
        "chain-rule factor 0.3 dropped",
        wave,
        x,
        lambda z: (
            jnp.exp(0.3 * z) * (jnp.cos(z) + jnp.sin(z))
            + 0.5 * (jnp.pad(z[1:], (0, 1)) + jnp.pad(z[:-1], (1, 0)))
        ),
        "x",
    )
    delta = 1e-3 if dtype == "float64" else 1e-2
    term = Partial(_term, jnp.asarray(delta, dtype))
    add(f"missing term of relative size {delta:g}", term, x, lambda z: -jnp.sin(z), "x")

    A = _rng_arrays(4, dtype, (20, 20))[0] / 4
    tmap = Partial(_tanh_map, A)
    add("transposed weight matrix", tmap, x, lambda z: A @ (1 - jnp.tanh(A @ z) ** 2), "x")
    X, y = _rng_arrays(5, dtype, (30, 20), (30,))
    sq = Partial(_sum_sq, (X / 5, y))
    add("factor 2 of the square forgotten", sq, x, lambda w: (X / 5).T @ ((X / 5) @ w - y), "x")
    add(
        "wrong custom_vjp rule (softplus)",
        _softplus_sum,
        x,
        jax.grad(lambda z: jnp.sum(_softplus_bad_rule(z))),
        "x",
    )
    add(
        "wrong custom_jvp rule (softplus)",
        _softplus_sum,
        x,
        jax.grad(lambda z: jnp.sum(_log1pexp_bad_jvp(z))),
        "x",
    )
    add(
        "stop_gradient on a term that depends on x",
        wave,
        x,
        jax.grad(
            lambda z: (
                jnp.sum(jnp.sin(z) * jnp.exp(0.3 * jax.lax.stop_gradient(z))) + 0.5 * jnp.sum(z[1:] * z[:-1])
            )
        ),
        "x",
    )
    add(
        "log-sum-exp gradient not normalized",
        jax.nn.logsumexp,
        x,
        jnp.exp,
        "x",
    )
    return cases


# --------------------------------------------------------------------------- random smooth functions


def _fam_elementwise(p, x):
    a, b, c, d = p
    return jnp.sum(a * jnp.sin(b * x + c)) + 0.5 * jnp.sum(d * x**2) + jnp.sum(jnp.exp(-(x**2)) * a)


def _fam_coupled(p, x):
    s, t = p
    return jnp.sum(jnp.tanh(s * x[1:] * x[:-1])) + t * jnp.sum(jnp.log1p(x**2))


def _fam_layer(p, x):
    W, b = p
    return jnp.sum(jnp.logaddexp(0.0, W @ x + b)) / W.shape[0]


def _fam_logsumexp(p, x):
    a, b = p
    return jax.nn.logsumexp(a * x) + 0.5 * b * jnp.sum(x**2)


def _fam_mlp(p, x):
    data, y = p
    h = jnp.tanh(data @ x["W"] + x["b"])
    return jnp.mean((jnp.sum(h, axis=1) - y) ** 2) + 0.1 * jnp.sum(x["c"] ** 2 * jnp.cos(x["c"]))


def _fam_rational(p, x):
    (a,) = p
    return jnp.sum(a * x / (1.0 + x**2)) + jnp.sum(jnp.sqrt(1.0 + x**2))


def correct_cases(dtype: str, count: int = 200, seed: int = 0) -> list[Case]:
    """``count`` random smooth functions with their correct gradient (``jax.grad``), n from 1 to 10 000."""
    cases = []
    for i in range(count):
        rng = np.random.default_rng(seed + 7919 * i)
        family = i % len(FAMILY_SIZES)
        n = FAMILY_SIZES[family][(i // len(FAMILY_SIZES)) % 2]
        x = jnp.asarray(rng.normal(scale=rng.choice([0.5, 1.0, 3.0]), size=n), dtype)
        arr = lambda *shape, rng=rng: jnp.asarray(rng.standard_normal(shape), dtype)
        if family == 0:
            f = Partial(_fam_elementwise, (arr(n), 1 + jnp.abs(arr(n)), arr(n), jnp.abs(arr(n))))
            name = "elementwise"
        elif family == 1:
            f = Partial(
                _fam_coupled, (jnp.asarray(rng.uniform(0.1, 1), dtype), jnp.asarray(rng.uniform(0, 2), dtype))
            )
            name = "coupled"
        elif family == 2:
            m = 4
            f = Partial(_fam_layer, (arr(m, n) / np.sqrt(n), arr(m)))
            name = "layer"
        elif family == 3:
            f = Partial(_fam_logsumexp, (arr(n), jnp.asarray(rng.uniform(0, 1), dtype)))
            name = "logsumexp"
        elif family == 4:
            k = max(1, min(n, 64))
            data = arr(8, k)
            x = {"W": arr(k, 3) / np.sqrt(k), "b": arr(3), "c": arr(max(1, n - 3 * k - 3))}
            f = Partial(_fam_mlp, (data, arr(8)))
            name = "mlp pytree"
        else:
            f = Partial(_fam_rational, (arr(n),))
            name = "rational"
        cases.append(Case(f"{name} #{i} (n={n})", "correct", dtype, f, x, None))
    return cases


# --------------------------------------------------------------------------- running and scoring


class Outcome(NamedTuple):
    """One tool on one case: did it pass, at what cost, and what it named."""

    passed: bool
    f_evals: int
    culprits: tuple[str, ...]


def run_calcjax(case: Case, **options: Any) -> Outcome:
    """:func:`calcjax.check_gradient` on ``case`` (grad as a custom_vjp, so ``jax.grad`` runs its rule)."""
    res = check_gradient(with_gradient(case), case.x, **options)
    return Outcome(res.passed, res.f_evals, res.culprits)


def _counting(f: Callable[[Any], jax.Array]) -> tuple[Callable[[Any], jax.Array], list[int]]:
    """``f`` counting its calls on concrete (not traced) input: its evaluations."""
    count = [0]

    def counted(x):
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x)):
            count[0] += 1
        return f(x)

    return counted, count


def run_check_grads(case: Case, modes: tuple[str, ...] = ("rev",)) -> Outcome:
    """``jax.test_util.check_grads(f, (x,), order=1, modes)`` with its default tolerances and step.

    ``modes=("rev",)``: a custom_vjp has no forward mode, and reverse mode is the gradient.
    Evaluations of ``f`` are counted (a vjp's own forward pass is not).
    """
    from jax.test_util import check_grads

    counted, count = _counting(with_gradient(case))
    try:
        check_grads(counted, (case.x,), order=1, modes=modes)
        passed = True
    except AssertionError:
        passed = False
    return Outcome(passed, count[0], ())


def effect_ratio(case: Case, fd_errors: Iterable[float], *, directions: int = 3, seed: int = 0) -> float:
    """``max_j |<grad - true gradient, u_j>| / fd_error_j`` over the check's directions.

    A bug whose ratio is below 10 is below the resolution of finite differences at
    that point: the table counts it apart.
    """
    from jax.flatten_util import ravel_pytree

    flat, _ = ravel_pytree(case.x)
    x64 = np.asarray(flat, np.float64)
    u = _directions(directions, x64.size, "rademacher", seed) * np.maximum(1.0, np.abs(x64))[None, :]
    wrong = np.asarray(ravel_pytree(case.grad(case.x))[0], np.float64)
    right = np.asarray(ravel_pytree(jax.grad(case.f)(case.x))[0], np.float64)
    effect = np.abs(u @ (wrong - right))
    return float(np.max(effect / np.asarray(list(fd_errors), np.float64)))


def table_rows(
    dtypes: Iterable[str] = ("float32", "float64"), count: int = 200, bug_limit: int | None = None
) -> list[dict[str, Any]]:
    """Rows of the ``gradcheck`` table: per tool, dtype and kind of case.

    Columns: ``tool``, ``dtype``, ``kind`` (``bug``/``correct``), ``cases``,
    ``resolvable`` (bugs at least 10x the FD error estimate), ``detected``
    (bugs caught, among the resolvable ones), ``culprit_named``,
    ``false_failures`` (correct gradients failed), ``rate`` (detection or
    false-failure rate), ``f_evals_per_check`` (mean; calcjax's culprit search is
    extra and counted apart in ``f_evals_locate``). ``bug_limit``: only the first
    bug cases (a quick run).
    """
    rows = []
    for dtype in dtypes:
        bugs = bug_cases(dtype)[:bug_limit]
        ours = [check_gradient(with_gradient(c), c.x) for c in bugs]
        resolvable = [
            effect_ratio(c, [r.fd_error for r in res.rows if r.kind == "direction"]) >= 10
            for c, res in zip(bugs, ours, strict=True)
        ]
        theirs = [run_check_grads(c) for c in bugs]
        named = [
            c.culprit in res.culprits or any(p.startswith(c.culprit) for p in res.culprits)
            for c, res in zip(bugs, ours, strict=True)
        ]
        base_evals = [r.f_evals - r.locate_evals for r in ours]
        for tool, caught, named_, evals, locate in [
            ("calcjax", [not r.passed for r in ours], named, base_evals, [r.locate_evals for r in ours]),
            (
                "check_grads",
                [not o.passed for o in theirs],
                [False] * len(bugs),
                [o.f_evals for o in theirs],
                None,
            ),
        ]:
            idx = [i for i, ok in enumerate(resolvable) if ok]
            rows.append(
                {
                    "tool": tool,
                    "dtype": dtype,
                    "kind": "bug",
                    "cases": len(bugs),
                    "resolvable": len(idx),
                    "detected": sum(caught[i] for i in idx),
                    "culprit_named": sum(named_[i] for i in idx) if tool == "calcjax" else None,
                    "false_failures": None,
                    "rate": sum(caught[i] for i in idx) / max(len(idx), 1),
                    "f_evals_per_check": float(np.mean(evals)),
                    "f_evals_locate": float(np.mean(locate)) if locate else None,
                }
            )
        correct = correct_cases(dtype, count)
        for tool, run in [("calcjax", run_calcjax), ("check_grads", run_check_grads)]:
            out = [run(c) for c in correct]
            fails = sum(not o.passed for o in out)
            rows.append(
                {
                    "tool": tool,
                    "dtype": dtype,
                    "kind": "correct",
                    "cases": len(correct),
                    "resolvable": None,
                    "detected": None,
                    "culprit_named": None,
                    "false_failures": fails,
                    "rate": fails / len(correct),
                    "f_evals_per_check": float(np.mean([o.f_evals for o in out])),
                    "f_evals_locate": None,
                }
            )
    return rows
