"""``calcjax compare MODULE:FUNCTION``: as a user runs it, and every usage error as one line."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calcjax import _compare
from calcjax._timing import time_call
from calcjax.cli import main

USER_FILE = textwrap.dedent(
    '''
    """A user's file."""
    import jax
    import jax.numpy as jnp

    def rosenbrock(x):
        a, b = x[0::2], x[1::2]
        return jnp.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2)

    def softplus_loss(x):
        return jnp.mean(jax.nn.softplus(x))

    def fixed_size(x):
        return jnp.sum(x.reshape(2, 3) ** 2)

    def not_scalar(x):
        return x ** 2

    class Thing:
        pass

    NUMBERS = [1, 2]
    '''
)

METHODS = "fd-central,fd-complex,ad-reverse"


@pytest.fixture(autouse=True)
def _fast_timing(monkeypatch):
    monkeypatch.setattr(_compare, "time_call", functools.partial(time_call, min_time=0.0, min_repeats=1))


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "userfns.py"
    path.write_text(USER_FILE)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``calcjax compare ARGV`` in-process; on the CPU unless ARGV names a device."""
    rc = main(["compare", *argv, *([] if "--device" in argv else ["--device", "cpu"])])
    out, err = capsys.readouterr()
    return rc, out, err


def test_rosenbrock_table_and_csv(capsys, user_file, tmp_path):
    csv = tmp_path / "out.csv"
    rc, out, err = run(
        capsys,
        f"{user_file}:rosenbrock",
        "--n",
        "6",
        "--dtype",
        "float64",
        "--methods",
        METHODS,
        "--csv",
        str(csv),
    )
    assert rc == 0, err
    assert "x = numpy.random.default_rng(0).standard_normal(6) as float64" in err
    assert "[1/3] fd-central" in err
    assert "[3/3] ad-reverse" in err
    for name in METHODS.split(","):
        assert name in out
    assert "<- recommended" in out
    assert "reference: complex-step gradient" in out
    assert out.rstrip().splitlines()[-1].startswith("recommended: ")
    table = pd.read_csv(csv)
    assert list(table["method"]) == METHODS.split(",")
    assert {"rel_error", "median_s", "compile_s", "f_evals", "recommended", "n", "dtype", "reference"} <= set(
        table.columns
    )
    assert (table["n"] == 6).all()
    assert (table["dtype"] == "float64").all()
    assert not list(tmp_path.glob(".compare-*"))  # the temporary file was renamed, not left behind


def test_default_dtype_is_float32(capsys, user_file):
    rc, out, err = run(capsys, f"{user_file}:rosenbrock", "--n", "4", "--methods", "ad-reverse")
    assert rc == 0, err
    assert "as float32" in err
    assert "dtype float32" in out


def test_logaddexp_function_says_reference_is_jax_grad(capsys, user_file):
    rc, out, err = run(capsys, f"{user_file}:softplus_loss", "--n", "5", "--methods", METHODS)
    assert rc == 0, err
    assert "reference: float64 jax.grad" in out
    assert "invalid: f drops the imaginary part" in out
    assert "softplus" in out


def test_x_from_npy_file(capsys, user_file, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.arange(6, dtype=np.float64).reshape(2, 3))
    rc, out, err = run(capsys, f"{user_file}:fixed_size", "--x", str(x), "--methods", "ad-reverse")
    assert rc == 0, err
    assert f"x from {x}: shape (2, 3), float64" in err
    assert "n = 6, dtype float64" in out


def test_importable_module_name(capsys, user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    rc, out, err = run(capsys, "userfns:rosenbrock", "--n", "4", "--methods", "ad-reverse")
    assert rc == 0, err
    assert "ad-reverse" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{dir}/missing.py:f"], "no such file: {dir}/missing.py"),
        (
            ["{file}:nope"],
            "has no function 'nope'; it defines: fixed_size, not_scalar, rosenbrock, softplus_loss",
        ),
        (["{file}:NUMBERS"], "is a list, not a function"),
        (["{file}"], "expected MODULE:FUNCTION"),
        (["no_such_module_xyz:f"], "no module named 'no_such_module_xyz'"),
        (["{file}:not_scalar", "--n", "4"], "f must return a scalar, got an output of shape (4,)"),
        (
            ["{file}:fixed_size", "--n", "5"],
            "cannot be evaluated at x of shape (5,) float32: TypeError: cannot reshape array of shape (5,)",
        ),
        (["{file}:fixed_size", "--n", "5"], "userfns.py:14); pass --n with the length f expects"),
        (
            ["{file}:rosenbrock", "--methods", "ad-reverse,fd-nope"],
            "unknown method(s) fd-nope; valid: fd-forward",
        ),
        (["{file}:rosenbrock", "--n", "0"], "--n must be a positive integer, got 0"),
        (["{file}:rosenbrock", "--x", "{dir}/none.npy"], "no such file: {dir}/none.npy"),
        (["{file}:rosenbrock", "--x", "{dir}/bad.npy"], "{dir}/bad.npy is not a .npy file"),
        (["{file}:rosenbrock", "--x", "{dir}/x.npy", "--n", "3"], "give either --n or --x, not both"),
        (["{file}:rosenbrock", "--target-error", "0"], "--target-error must be positive and finite, got 0.0"),
        (
            ["{file}:rosenbrock", "--csv", "{dir}/no/such/dir/out.csv"],
            "cannot write {dir}/no/such/dir/out.csv",
        ),
    ],
)
def test_usage_errors_are_one_line(capsys, user_file, tmp_path, args, message):
    (tmp_path / "bad.npy").write_text("not numpy")
    np.save(tmp_path / "x.npy", np.ones(3))
    fill = functools.partial(str.format, file=user_file, dir=tmp_path)
    rc, out, err = run(capsys, *map(fill, args))
    assert rc == 2
    assert out == ""
    assert err.startswith("calcjax compare: error: ")
    assert err.count("\n") == 1, err
    assert fill(message) in err
    assert "Traceback" not in err


def test_broken_user_module_is_one_line(capsys, tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import jax\n\nx = 1 / 0\n")
    rc, _, err = run(capsys, f"{bad}:f")
    assert rc == 2
    assert err.count("\n") == 1
    assert f"importing {bad} failed: ZeroDivisionError: division by zero ({bad}:3)" in err


def test_gpu_that_is_not_there(capsys, user_file):
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("this machine has a GPU")
    rc, _, err = run(capsys, f"{user_file}:rosenbrock", "--device", "gpu")
    assert rc == 2
    assert "no GPU is available to JAX" in err
    assert err.count("\n") == 1


def test_console_script_exit_status_and_no_traceback(user_file):
    """The real command in a fresh process: a usage error exits 2 with one line, no traceback."""
    script = Path(sys.executable).with_name("calcjax")
    if not script.exists():
        pytest.skip(f"no calcjax console script next to {sys.executable}")
    proc = subprocess.run(
        [str(script), "compare", f"{user_file}:nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "has no function 'nope'" in proc.stderr


def test_module_import_is_light():
    """The parser is built for every ``calcjax`` command: the module imports no JAX at top level."""
    import calcjax._commands.compare as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top for a in n.names} | {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"jax", "jax.numpy", "numpy", "pandas", "calcjax._compare"}
