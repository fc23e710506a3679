"""calcjax.compare on a function JAX cannot trace: the estimated reference labels its own row."""

from __future__ import annotations

import numpy as np

import calcjax
from calcjax import _compare
from tests import blackbox_helpers as bh


def test_richardson_reference_row_is_labelled_and_its_estimate_is_honest():
    x = np.linspace(-1.0, 1.0, 8)
    df = calcjax.compare(bh.issue_loss, x, methods=["fd-central", "fd-richardson"])
    assert df.attrs["reference"] == "richardson-estimate"
    rows = df.set_index("method")
    row = rows.loc["fd-richardson"]
    assert row["status"] == "reference"
    assert np.isnan(row["rel_error"])
    assert row["est_error"] == df.attrs["reference_error"]
    # the estimate against the truth (the analytic gradient): honest within the suite's factor of 10
    g = np.asarray(calcjax.richardson_gradient(bh.issue_loss, x).value)
    true = np.linalg.norm(g - bh.issue_loss_grad(x)) / np.linalg.norm(bh.issue_loss_grad(x))
    assert true <= 10 * max(row["est_error"], np.finfo(np.float64).eps)
    assert rows.loc["fd-central", "status"] == "ok"
    line = next(ln for ln in _compare.format_table(df).splitlines() if ln.startswith("fd-richardson"))
    assert "reference" in line
    assert "own est. error" in line


def test_with_an_analytic_reference_nothing_is_labelled():
    x = np.linspace(-1.0, 1.0, 8)
    df = calcjax.compare(bh.issue_loss, x, methods=["fd-richardson"], reference=bh.issue_loss_grad)
    row = df.set_index("method").loc["fd-richardson"]
    assert row["status"] == "ok"
    assert row["rel_error"] <= 1e-9  # graded against the analytic gradient
