"""Second derivatives of functions JAX cannot trace: NumPy f through calcjax._blackbox.

References are the problems' analytic Hessians (``Instance.reference_hessian``)
and a hand-written one for the issue's loss, in NumPy float64 -- never
``jax.hessian``. Serial, vectorized and process-pool runs agree bit for bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import calcjax
from calcjax._bench.tolerances import Tolerances
from calcjax._blackbox import NotDifferentiableError

sys.path.insert(0, str(Path(__file__).parent))  # workers import the helpers by name
import blackbox_helpers as bh

#: Central second differences with the automatic step: error ~ eps**(1/2), from the one tolerance table.
SECOND_DIFF_TOL = Tolerances().second_difference("float64")
#: The f-only HVP differences FD gradients along v: their rounding is amplified once more.
FD_HVP_TOL = Tolerances.SAFETY * SECOND_DIFF_TOL


def issue_hessian(x):
    """Analytic Hessian of :func:`blackbox_helpers.issue_loss`: ``sum cos(x)**2 + sum x[1:] x[:-1]``."""
    n = x.size
    return np.diag(-2.0 * np.cos(2.0 * x)) + np.eye(n, k=1) + np.eye(n, k=-1)


def issue_loss_batched(xs):
    """``issue_loss`` of a batch of points on the leading axis."""
    xs = np.asarray(xs, dtype=float)
    return np.sum(np.cos(xs) ** 2, axis=1) + np.sum(xs[:, 1:] * xs[:, :-1], axis=1)


def rel(got, ref):
    got, ref = np.ravel(np.asarray(got, np.float64)), np.ravel(np.asarray(ref, np.float64))
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


X = np.linspace(-1.0, 1.0, 7)


def test_numpy_f_gives_numpy_hessians_close_to_the_analytic_one():
    H = calcjax.hessian(bh.issue_loss, X)
    assert type(H) is np.ndarray
    assert H.dtype == np.float64
    assert H.shape == (7, 7)
    assert rel(H, issue_hessian(X)) < SECOND_DIFF_TOL
    d = calcjax.hessian_diagonal(bh.issue_loss, X)
    assert rel(d, np.diag(issue_hessian(X))) < SECOND_DIFF_TOL
    est = calcjax.richardson_hessian(bh.issue_loss, X)
    assert rel(est.value, issue_hessian(X)) < 1e-10


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_numpy_twins_match_analytic_hessians(name):
    inst = calcjax.get_problem(name).instance(12, "float64")
    H = calcjax.hessian(inst.f_np, inst.x0_np, traceable=False)
    assert isinstance(H, np.ndarray)
    assert rel(H, inst.reference_hessian()) < SECOND_DIFF_TOL


def test_hvp_of_a_numpy_f_uses_f_alone():
    v = np.cos(np.arange(7.0))
    hv = calcjax.hessian_vector_product(bh.issue_loss, X, v, method="fd")
    assert isinstance(hv, np.ndarray)
    assert rel(hv, issue_hessian(X) @ v) < FD_HVP_TOL


@pytest.mark.parametrize("method", ["fd-grad", "complex-grad", "richardson"])
def test_hvp_through_autodiff_of_a_numpy_f_is_refused_with_what_to_do(method):
    call = (
        (lambda: calcjax.richardson_hessian_vector_product(bh.issue_loss, X, np.ones(7)))
        if method == "richardson"
        else (lambda: calcjax.hessian_vector_product(bh.issue_loss, X, np.ones(7), method=method))
    )
    with pytest.raises(NotDifferentiableError, match=r"not JAX-traceable .* method='fd'.* grad="):
        call()


def test_vectorized_and_workers_equal_serial_bit_for_bit():
    serial = calcjax.hessian(bh.issue_loss, X)
    batched = calcjax.hessian(issue_loss_batched, X, vectorized=True)
    pooled = calcjax.hessian(bh.issue_loss, X, workers=2)
    assert batched.tobytes() == serial.tobytes()
    assert pooled.tobytes() == serial.tobytes()


def test_traceable_true_with_a_numpy_f_says_so():
    with pytest.raises(NotDifferentiableError, match="traceable=True"):
        calcjax.hessian(bh.issue_loss, X, traceable=True)
