"""``calcjax check``: exit 0 for a right gradient, 1 for a wrong one (naming where), 2 on bad usage."""

import textwrap

import pytest

from calcjax.cli import main

USER = textwrap.dedent(
    """
    import numpy as np

    def loss(x):
        x = np.asarray(x, dtype=float)
        return float(np.sum(np.cos(x) ** 2) + np.sum(x[1:] * x[:-1]))

    def good(x):
        x = np.asarray(x, dtype=float)
        g = -2 * np.cos(x) * np.sin(x)
        g[1:] += x[:-1]
        g[:-1] += x[1:]
        return g

    def bad(x):
        g = good(x)
        g[3] = -g[3]
        return g
    """
)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user_loss.py"
    path.write_text(USER)
    return str(path)


def test_right_gradient_passes(user_file, capsys):
    assert main(["check", f"{user_file}:loss", "--grad", f"{user_file}:good", "--n", "40"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_wrong_gradient_fails_and_names_the_coordinate(user_file, capsys):
    argv = ["check", f"{user_file}:loss", "--grad", f"{user_file}:bad", "--n", "40", "--dtype", "float64"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out
    assert "x[3]" in out


def test_jax_function_checks_jax_grad(tmp_path, capsys):
    path = tmp_path / "jloss.py"
    path.write_text("import jax.numpy as jnp\n\ndef loss(x):\n    return jnp.sum(jnp.sin(x) ** 2)\n")
    assert main(["check", f"{path}:loss", "--n", "30", "--dtype", "float64"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--directions", "0"], "--directions must be a positive integer, got 0"),
        (["--n", "0"], "--n must be a positive integer, got 0"),
    ],
)
def test_usage_errors_exit_2(user_file, capsys, extra, message):
    assert main(["check", f"{user_file}:loss", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
