"""``calcjax compare FILE:FN`` on functions JAX cannot trace, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: The issue's example (a NumPy body JAX cannot trace), its analytic gradient, a batched version
#: (one point or a leading batch of points) and a JAX port.
USER_FILE = textwrap.dedent(
    """
    import numpy as np

    def loss(x):
        x = np.asarray(x, dtype=float)
        return float(np.sum(np.cos(x) ** 2) + np.sum(x[1:] * x[:-1]))

    def loss_grad(x):
        x = np.asarray(x, dtype=np.float64)
        g = -2.0 * np.cos(x) * np.sin(x)
        g[1:] += x[:-1]
        g[:-1] += x[1:]
        return g

    def batched(x):
        x = np.asarray(x, dtype=float)
        return np.sum(np.cos(x) ** 2, axis=-1) + np.sum(x[..., 1:] * x[..., :-1], axis=-1)

    def broken(x):
        x = np.asarray(x)
        raise RuntimeError("the simulator crashed")
    """
)
PORT_FILE = textwrap.dedent(
    """
    import jax.numpy as jnp

    def loss(w):
        return jnp.sum(jnp.cos(w) ** 2) + jnp.sum(w[1:] * w[:-1])
    """
)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(USER_FILE)
    (tmp_path / "port.py").write_text(PORT_FILE)
    return tmp_path


def cli(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "calcjax", "compare", *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_issue_example_runs_as_a_black_box(files):
    proc = cli(
        files, "model.py:loss", "--n", "30", "--methods", "fd-central,fd-richardson,numpy-loop,ad-reverse"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "model.py:loss is not JAX-traceable (TracerArrayConversionError at " in proc.stderr
    assert "standard_normal(30) as float64" in proc.stderr  # a NumPy f: float64 unless --dtype says
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line[:1].isalpha()}
    assert "unavailable: f is not JAX-traceable (TracerArrayConversionError at" in rows["ad-reverse"]
    assert "model.py:5)" in rows["ad-reverse"]  # the user's line, not calcjax's
    assert "reference" in rows["fd-richardson"].split()[2]  # the Richardson estimate is the reference
    assert "est_error" in proc.stdout.splitlines()[1]
    assert "recommended: " in proc.stdout


def test_a_black_box_needs_n_or_x(files):
    proc = cli(files, "model.py:loss")
    assert proc.returncode == 2
    assert "not JAX-traceable" in proc.stderr
    assert "--n" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_grad_jax_port_vectorized_and_workers(files):
    csv = files / "out.csv"
    proc = cli(
        files,
        "model.py:batched",
        "--n",
        "24",
        "--methods",
        "fd-central,ad-reverse",
        "--grad",
        "model.py:loss_grad",
        "--jax-port",
        "port.py:loss",
        "--vectorized",
        "--workers",
        "2",
        "--csv",
        str(csv),
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(csv).set_index("method")
    assert list(table.index) == [
        "fd-central",
        "ad-reverse",
        "fd-central-vectorized",
        "fd-central-workers",
        "ad-reverse-jax-port",
    ]
    assert (table["reference"] == "analytic").all()
    ok = table.loc[["fd-central", "fd-central-vectorized", "fd-central-workers", "ad-reverse-jax-port"]]
    assert (ok["status"] == "ok").all(), ok["description"]
    # serial and workers evaluate the same points in the same order: the same gradient bit for bit
    assert table.loc["fd-central-workers", "rel_error"] == table.loc["fd-central", "rel_error"]
    assert table.loc["fd-central", "rel_error"] < 1e-8  # against the analytic gradient
    assert abs(table.loc["fd-central-vectorized", "rel_error"] - table.loc["fd-central", "rel_error"]) < 1e-12
    assert table.loc["ad-reverse-jax-port", "rel_error"] < 1e-14


def test_trailing_layout_and_blackbox_flag_on_a_traceable_function(files):
    (files / "jaxfn.py").write_text(
        "import jax.numpy as jnp\ndef f(x):\n    return jnp.sum(jnp.sin(x), axis=0)\n"
    )
    proc = cli(
        files, "jaxfn.py:f", "--n", "8", "--blackbox", "--vectorized", "trailing", "--methods", "fd-central"
    )
    assert proc.returncode == 0, proc.stderr
    assert "not JAX-traceable (--blackbox)" in proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line[:1].isalpha()}
    assert "failed" not in rows["fd-central-vectorized"]


def test_black_box_options_on_a_traceable_function_are_refused(files):
    (files / "jaxfn.py").write_text("import jax.numpy as jnp\ndef f(x):\n    return jnp.sum(x ** 2)\n")
    proc = cli(files, "jaxfn.py:f", "--n", "4", "--workers", "2")
    assert proc.returncode == 2
    assert "--workers apply to a FUNCTION JAX cannot trace" in proc.stderr
    assert "--blackbox" in proc.stderr


def test_a_failing_black_box_is_one_line_with_the_users_line(files):
    proc = cli(files, "model.py:broken", "--n", "4")
    assert proc.returncode == 2
    assert "RuntimeError: the simulator crashed" in proc.stderr
    assert "model.py:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_x_not_a_npy_file_does_not_talk_about_pickles(files):
    (files / "x.txt").write_text("1 2 3\n")
    proc = cli(files, "model.py:loss", "--x", "x.txt")
    assert proc.returncode == 2
    assert "x.txt is not a .npy file" in proc.stderr
    assert "pickle" not in proc.stderr


def test_nan_in_x_says_methods_ran(files):
    (files / "jaxfn.py").write_text("import jax.numpy as jnp\ndef f(x):\n    return jnp.sum(x ** 2)\n")
    np.save(files / "x.npy", np.array([1.0, np.nan, 2.0]))
    proc = cli(files, "jaxfn.py:f", "--x", "x.npy", "--methods", "fd-central,ad-reverse")
    assert proc.returncode == 0, proc.stderr
    assert "no method ran" not in proc.stdout
    assert "2 method(s) ran but none gave a finite error" in proc.stdout
    assert "x holds 1 non-finite entry (first at flat index 1: nan)" in proc.stderr
