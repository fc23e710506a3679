"""Bad input, everywhere: one clear error (TypeError/ValueError; on the command line one line, exit 2).

The fixed cases pin issue 12's findings (paths and values checked before the long
work, empty ``x``, messages that name the problem); the hypothesis tests throw
random bad input at every public function and every command and accept only the
documented outcomes. The README's "Bad input" table states the same rules.
"""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import calcjax
from calcjax import _files, cli
from tests.helpers import make_raw, snapshot, write_run

REPO = Path(__file__).resolve().parent.parent


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``(exit status, stderr)``; argparse's own usage errors (SystemExit 2) count as exit 2."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], err


# --------------------------------------------------------------------------- paths, before the work


@pytest.fixture
def no_long_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite and the comparison fail the test if they start: the checks must come first."""

    def started(*args, **kwargs):
        raise AssertionError("the long work started before the bad path or value was refused")

    monkeypatch.setattr("calcjax._commands.bench._stream", started)
    monkeypatch.setattr("calcjax._compare.compare", started)


@pytest.fixture
def user_file(tmp_path: Path) -> str:
    path = tmp_path / "f.py"
    path.write_text("import jax.numpy as jnp\n\ndef loss(x):\n    return jnp.sum(x**2)\n")
    return str(path)


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("a_file", "is a file, not a folder"),
        ("a_file/sub", "is a file, not a folder"),
        ("/proc/x", "cannot write"),
    ],
)
def test_bench_out_that_cannot_be_written_is_one_line_before_the_suite(
    out, says, tmp_path, monkeypatch, capsys, no_long_work
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("mine")
    before = snapshot(tmp_path)
    code, err = _run_cli(["bench", "--out", out, "--allow-dirty", "--quick"], capsys)
    _one_line_error(code, err, "--out", says)
    assert snapshot(tmp_path) == before


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` behaves as on a read-only filesystem (root passes chmod, so the failure is simulated)."""
    folder = folder.resolve()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_bench_out_on_a_read_only_filesystem(tmp_path, monkeypatch, capsys, no_long_work):
    _read_only(monkeypatch, tmp_path)
    code, err = _run_cli(["bench", "--out", str(tmp_path / "results"), "--allow-dirty"], capsys)
    _one_line_error(code, err, "Read-only file system")
    assert not (tmp_path / "results").exists()


def test_permission_bits_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).resolve() != tmp_path.resolve())
    with pytest.raises(calcjax.cli.UsageError, match="permission denied"):
        _files.check_writable_dir(tmp_path / "new", "--out")


def test_report_on_a_read_only_run_folder_writes_nothing(tmp_path, monkeypatch, capsys):
    run_dir = write_run(tmp_path / "results", "r1", make_raw())
    before = snapshot(tmp_path)
    _read_only(monkeypatch, run_dir)
    code, err = _run_cli(["report", str(run_dir), "--no-plots"], capsys)
    _one_line_error(code, err, str(run_dir), "Read-only file system")
    assert snapshot(tmp_path) == before


def test_report_readme_under_a_file(tmp_path, capsys):
    run_dir = write_run(tmp_path / "results", "r1", make_raw())
    (tmp_path / "plain").write_text("x")
    before = snapshot(tmp_path)
    code, err = _run_cli(
        ["report", str(run_dir), "--no-plots", "--readme", str(tmp_path / "plain/R.md")], capsys
    )
    assert code == 2, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_compare_csv_that_is_a_folder_is_refused_before_the_comparison(
    user_file, tmp_path, capsys, no_long_work
):
    code, err = _run_cli(["compare", f"{user_file}:loss", "--n", "3", "--csv", str(tmp_path)], capsys)
    _one_line_error(code, err, "--csv", "is a folder")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1"])
def test_compare_target_error_must_be_positive_and_finite(value, user_file, capsys, no_long_work):
    code, err = _run_cli(["compare", f"{user_file}:loss", "--n", "3", "--target-error", value], capsys)
    _one_line_error(code, err, "--target-error")


def test_an_io_error_the_checks_cannot_foresee_is_one_line(monkeypatch, capsys):
    def fail(args):
        raise OSError(errno.ENOSPC, "No space left on device", "results/x/raw.json")

    monkeypatch.setattr("calcjax._commands.tutorial.run", fail)
    code, err = _run_cli(["tutorial"], capsys)
    _one_line_error(code, err, "No space left on device", "results/x/raw.json")


# --------------------------------------------------------------------------- empty x: one rule

X0 = jnp.zeros(0)
F = lambda w: sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(w))  # arrays and pytrees
KEY = jax.random.key(0)
EMPTY_CALLS = {
    "derivative": lambda x: calcjax.derivative(jnp.sin, x),
    "gradient": lambda x: calcjax.gradient(F, x),
    "directional_derivative": lambda x: calcjax.directional_derivative(F, x, x),
    "richardson_derivative": lambda x: calcjax.richardson_derivative(jnp.sin, x),
    "richardson_gradient": lambda x: calcjax.richardson_gradient(F, x),
    "complex_step_derivative": lambda x: calcjax.complex_step_derivative(jnp.sin, x),
    "complex_step_gradient": lambda x: calcjax.complex_step_gradient(F, x),
    "check_complex_step": lambda x: calcjax.check_complex_step(F, x),
    "compare": lambda x: calcjax.compare(F, x, methods=["fd-central"]),
    "gradient_descent": lambda x: calcjax.gradient_descent(F, x, lr=0.1, steps=2),
    "gradient_descent-fd": lambda x: calcjax.gradient_descent(F, x, lr=0.1, steps=2, method="fd-central"),
    "check_gradient": lambda x: calcjax.check_gradient(F, x),
    "assert_gradient": lambda x: calcjax.assert_gradient(F, x),
    "hessian": lambda x: calcjax.hessian(F, x),
    "hessian_diagonal": lambda x: calcjax.hessian_diagonal(F, x),
    "hessian_vector_product": lambda x: calcjax.hessian_vector_product(F, x, x),
    "richardson_hessian": lambda x: calcjax.richardson_hessian(F, x),
    "richardson_hessian_vector_product": lambda x: calcjax.richardson_hessian_vector_product(F, x, x),
    "complex_step_hessian": lambda x: calcjax.complex_step_hessian(F, x),
    "spsa_gradient": lambda x: calcjax.spsa_gradient(F, x, key=KEY),
    "gaussian_smoothing_gradient": lambda x: calcjax.gaussian_smoothing_gradient(F, x, key=KEY),
    "forward_gradient": lambda x: calcjax.forward_gradient(F, x, key=KEY),
}


@pytest.mark.parametrize("name", sorted(EMPTY_CALLS))
@pytest.mark.parametrize("x", [X0, {"a": X0, "b": jnp.zeros((2, 0))}], ids=["array", "pytree"])
def test_empty_x_is_one_value_error_everywhere(name, x):
    if isinstance(x, dict) and name.endswith("derivative") and name != "directional_derivative":
        with pytest.raises(TypeError, match="takes one array x"):  # elementwise: pytrees are refused first
            EMPTY_CALLS[name](x)
        return
    with pytest.raises(ValueError, match=r"x0? is empty \(.*\): there is nothing to differentiate"):
        EMPTY_CALLS[name](x)


def test_empty_x_in_compare_on_the_command_line(tmp_path, user_file, capsys, no_long_work):
    np.save(tmp_path / "x.npy", np.zeros(0))
    code, err = _run_cli(["compare", f"{user_file}:loss", "--x", str(tmp_path / "x.npy")], capsys)
    _one_line_error(code, err)


def test_the_step_rules_map_empty_to_empty():
    # default_step and second_default_step are elementwise maps, not derivatives: documented exception
    assert calcjax.default_step(X0).shape == (0,)
    assert calcjax.second_default_step(X0).shape == (0,)


# --------------------------------------------------------------------------- messages that name the problem


@pytest.mark.parametrize(
    "call",
    [
        lambda: calcjax.complex_step_gradient(F, jnp.zeros(3), h=jnp.full(2, 1e-20)),
        lambda: calcjax.complex_step_derivative(jnp.sin, jnp.zeros(3), h=jnp.full(2, 1e-20)),
    ],
    ids=["gradient", "derivative"],
)
def test_complex_step_h_of_the_wrong_shape_names_both_shapes(call):
    with pytest.raises(
        ValueError, match=r"h must be a scalar or have the shape of x.*\(3,\); got h of shape \(2,\)"
    ):
        call()


def test_complex_step_h_per_coordinate_still_works():
    g = calcjax.complex_step_gradient(F, jnp.ones(3), h=jnp.full(3, 1e-20))
    np.testing.assert_array_equal(np.asarray(g), 2.0)


@pytest.mark.parametrize("fn", ["derivative", "richardson_derivative", "complex_step_derivative"])
@pytest.mark.parametrize("x", [{"a": jnp.zeros(3)}, (jnp.zeros(2), jnp.ones(2)), [jnp.zeros(2), jnp.ones(3)]])
def test_a_pytree_given_to_derivative_says_to_use_gradient(fn, x):
    with pytest.raises(TypeError, match=rf"{fn} takes one array x .* use calcjax\.(complex_step_)?gradient"):
        getattr(calcjax, fn)(lambda t: t**2, x)


def test_a_list_of_numbers_is_an_array_for_derivative():
    np.testing.assert_allclose(
        np.asarray(calcjax.derivative(lambda t: t**2, [1.0, 2.0])), [2.0, 4.0], rtol=1e-8
    )


@pytest.mark.parametrize(
    ("x0", "lr"),
    [(jnp.zeros(3), jnp.ones(2)), (jnp.zeros(()), jnp.ones(2)), (jnp.zeros(3), jnp.ones((3, 3)))],
)
def test_lr_of_the_wrong_shape_is_a_clear_error(x0, lr):
    with pytest.raises(
        ValueError,
        match=rf"lr must be a scalar or an array that broadcasts to x0's shape .*"
        rf"got lr of shape {re_shape(lr.shape)}",
    ):
        calcjax.gradient_descent(F, x0, lr=lr, steps=2)


def re_shape(shape: tuple[int, ...]) -> str:
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def test_lr_per_coordinate_and_broadcasting_lr_still_work():
    for lr in (jnp.full(3, 0.1), jnp.full(1, 0.1)):
        res = calcjax.gradient_descent(F, jnp.ones(3), lr=lr, steps=1)
        np.testing.assert_allclose(np.asarray(res.x), 0.8)


# --------------------------------------------------------------------------- random bad input: the API

BAD_SETTINGS = settings(
    max_examples=6,
    deadline=None,  # first calls compile; the per-test timeout below bounds a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)

_DTYPES = ["float32", "float64", "float16", "int32", "bool", "complex64"]
_SHAPES = [(), (0,), (1,), (3,), (2, 2)]
_SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, 1e-300]


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(_DTYPES))
    shape = draw(st.sampled_from(_SHAPES))
    size = int(np.prod(shape))
    values = draw(st.lists(st.sampled_from([*_SPECIAL, 0.5, 2.0]), min_size=size, max_size=size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nan/inf to int/bool casts
        return np.asarray(values, dtype=np.float64).astype(dtype).reshape(shape)


#: Inputs that are not arrays of floats at all.
_NON_ARRAYS = [None, "abc", {}, {"a": "b"}, [1.0, [2.0, 3.0]], object(), 3, True, 1j]

xs = st.one_of(arrays(), st.sampled_from(_NON_ARRAYS), arrays().map(lambda a: {"w": a, "b": np.ones(2)}))
steps_h = st.sampled_from([None, 0.0, -1.0, np.nan, np.inf, 1e-300, 1e-20, "x", 1j, np.ones(5), [0.1, "a"]])
#: Options each function takes, with values mostly out of range.
OPTIONS: dict[str, dict[str, st.SearchStrategy]] = {
    "derivative": {
        "h": steps_h,
        "scheme": st.sampled_from(["central", "sideways", 3]),
        "order": st.sampled_from([2, 0, 5, 2.5, "2"]),
    },
    "gradient": {
        "h": steps_h,
        "batch_size": st.sampled_from([None, 0, -3, 1.5, 2]),
        "scheme": st.sampled_from(["forward", "up"]),
    },
    "richardson_derivative": {"h": steps_h, "num_steps": st.sampled_from([1, 0, -2, 3.5])},
    "richardson_gradient": {"h": steps_h, "step_ratio": st.sampled_from([2.0, 1.0, 0.5, np.nan])},
    "complex_step_derivative": {"h": steps_h},
    "complex_step_gradient": {"h": steps_h, "batch_size": st.sampled_from([None, 0, "a"])},
    "default_step": {"scheme": st.sampled_from(["central", "nope"]), "order": st.sampled_from([2, 9])},
    "check_gradient": {
        "directions": st.sampled_from([1, 0, -1, 2.5]),
        "atol": st.sampled_from([None, -1.0, np.nan]),
        "mode": st.sampled_from(["random", "every"]),
    },
    "gradient_descent": {
        "lr": st.sampled_from([0.1, np.nan, np.inf, "a", None, np.ones(7)]),
        "steps": st.sampled_from([1, -1, 2.5, 10**12]),
        "loss_every": st.sampled_from([1, 0, -2]),
    },
    "hessian": {"h": steps_h},
    "hessian_diagonal": {"h": steps_h},
    "richardson_hessian": {"num_steps": st.sampled_from([2, 0, -1])},
    "complex_step_hessian": {"h": steps_h},
    "spsa_gradient": {"key": st.sampled_from([KEY, None, 3, "k"]), "step": st.sampled_from([0, -1, 1.5])},
    "forward_gradient": {"key": st.sampled_from([KEY, None, 3]), "step": st.sampled_from([0, -1])},
    "compare": {
        "methods": st.sampled_from([["fd-central"], ["nope"], []]),
        "target_error": st.sampled_from([None, 0.0, np.inf, -1.0, "a"]),
    },
}
#: How each function is called with ``x``: f is cheap and smooth (sum of squares, or sin elementwise).
CALLS = {
    "derivative": lambda x, **o: calcjax.derivative(jnp.sin, x, **o),
    "gradient": lambda x, **o: calcjax.gradient(F, x, **o),
    "richardson_derivative": lambda x, **o: calcjax.richardson_derivative(jnp.sin, x, **o),
    "richardson_gradient": lambda x, **o: calcjax.richardson_gradient(F, x, **o),
    "complex_step_derivative": lambda x, **o: calcjax.complex_step_derivative(jnp.sin, x, **o),
    "complex_step_gradient": lambda x, **o: calcjax.complex_step_gradient(F, x, **o),
    "default_step": lambda x, **o: calcjax.default_step(x, **o),
    "check_gradient": lambda x, **o: calcjax.check_gradient(F, x, **o),
    "gradient_descent": lambda x, **o: calcjax.gradient_descent(F, x, **{"lr": 0.1, "steps": 1, **o}),
    "hessian": lambda x, **o: calcjax.hessian(F, x, **o),
    "hessian_diagonal": lambda x, **o: calcjax.hessian_diagonal(F, x, **o),
    "richardson_hessian": lambda x, **o: calcjax.richardson_hessian(F, x, **o),
    "complex_step_hessian": lambda x, **o: calcjax.complex_step_hessian(F, x, **o),
    "spsa_gradient": lambda x, **o: calcjax.spsa_gradient(F, x, **{"key": KEY, **o}),
    "forward_gradient": lambda x, **o: calcjax.forward_gradient(F, x, **{"key": KEY, **o}),
    "compare": lambda x, **o: calcjax.compare(F, x, **{"methods": ["fd-central"], **o}),
}


#: Functions that compile a large program for each new shape and dtype: fewer examples (runtime).
SLOW = {"check_gradient": 2, "richardson_derivative": 3, "richardson_gradient": 3, "compare": 3}


def _documented(call, *args, **kwargs) -> None:
    """Run ``call``: a result, or a documented error (TypeError, ValueError, DomainWarning for NaN/inf)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            call(*args, **kwargs)
        except (TypeError, ValueError, calcjax.DomainWarning):
            pass


@pytest.mark.parametrize("name", sorted(CALLS))
def test_random_bad_input_gives_only_documented_errors(name):
    options = st.fixed_dictionaries({}, optional=OPTIONS.get(name, {}))

    @settings(BAD_SETTINGS, max_examples=SLOW.get(name, BAD_SETTINGS.max_examples))
    @given(x=xs, opts=options)
    def check(x, opts):
        _documented(CALLS[name], x, **opts)

    check()


def test_every_public_function_is_thrown_bad_input():
    skip = {  # not functions of (f, x): registries, constructors, a table, the step rule of Hessians
        "get_method",
        "get_problem",
        "get_second_order_method",
        "register",
        "register_second_order",
        "stencil",
        "auto_batch_size",
        "spall_gain",
        "ravel_hessian",
        "second_default_step",
        "check_complex_step",
        "complex_step_culprits",
        "assert_gradient",
        "directional_derivative",
        "hessian_vector_product",
        "richardson_hessian_vector_product",
        "gaussian_smoothing_gradient",
        "compare_second_order",
    }  # (the last ones share their checks with a function above; empty x is tested for each,
    #     compare_second_order's by test_compare_second_order_refuses_an_empty_x)
    functions = {n for n in calcjax.__all__ if n[0].islower() and callable(getattr(calcjax, n))} - {
        "__version__"
    }
    assert functions - skip == set(CALLS)


# --------------------------------------------------------------------------- random bad input: the commands


def _bad_command(tmp: Path, user_file: str) -> st.SearchStrategy:
    """Command lines that each hold at least one bad path or value."""
    (tmp / "a_file").write_text("x")
    (tmp / "text.npy").write_text("not an array")
    np.save(tmp / "empty.npy", np.zeros(0))
    np.save(tmp / "strings.npy", np.array(["a", "b"]))
    write_run(tmp / "results", "broken", "{")
    write_run(tmp / "results", "nobench", '{"benchmarks": 5}')
    bad_out = st.sampled_from(["a_file", "a_file/sub", "/proc/x"])
    bench = st.tuples(
        st.just(["bench", "--allow-dirty"]),
        st.one_of(
            bad_out.map(lambda p: ["--out", p]),
            st.sampled_from(
                [
                    ["--sizes", "0"],
                    ["--sizes", "abc"],
                    ["--dtypes", "float8"],
                    ["--max-call-s", "-1"],
                    ["--max-call-s", "nan"],
                    ["--run-id", "../up"],
                    ["--device", "tpu"],
                    ["--cpu-devices", "abc"],
                ]
            ),
        ),
    ).map(lambda t: t[0] + t[1])
    report = st.sampled_from(
        [
            ["report", "nope"],
            ["report", "a_file"],
            ["report", "--results", "results", "broken"],
            ["report", "--results", "results", "nobench"],
            ["report", "--compare", "x", "y"],
            ["report", "--fail-above", "0"],
            ["report", "--verify", "nope"],
        ]
    )
    target = f"{user_file}:loss"
    compare = st.sampled_from(
        [
            ["--n", "0"],
            ["--n", "-3"],
            ["--x", "text.npy"],
            ["--x", "empty.npy"],
            ["--x", "strings.npy"],
            ["--x", "nope.npy"],
            ["--methods", "nope"],
            ["--target-error", "inf"],
            ["--csv", "."],
            ["--csv", "a_file/x.csv"],
            ["--dtype", "int8"],
        ]
    ).map(lambda o: ["compare", target, *o])
    broken = st.sampled_from(["nofile.py:loss", f"{user_file}:nope", "not_a_module_xyz:f", "nocolon"])
    check = st.one_of(
        st.sampled_from(
            [
                ["--directions", "0"],
                ["--n", "0"],
                ["--x", "text.npy"],
                ["--mode", "all"],
                ["--grad", "nofile.py:g"],
            ]
        ).map(lambda o: ["check", target, *o]),
        broken.map(lambda t: ["check", t]),
        broken.map(lambda t: ["compare", t]),
    )
    tutorial = st.sampled_from([["tutorial", "--steps", "-1"], ["tutorial", "--steps", "x"]])
    return st.one_of(bench, report, compare, check, tutorial)


def test_random_bad_command_lines_are_one_line_exit_2(tmp_path, user_file, monkeypatch, capsys, no_long_work):
    monkeypatch.chdir(tmp_path)
    repo_before = {p.name for p in REPO.iterdir()} | {p.name for p in (REPO / "results").iterdir()}

    @settings(BAD_SETTINGS, max_examples=25)
    @given(argv=_bad_command(tmp_path, user_file))
    def check(argv):
        before = snapshot(tmp_path)
        code, err = _run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert "Traceback" not in err, (argv, err)
        assert snapshot(tmp_path) == before, argv  # nothing written, nothing left behind

    check()
    assert {p.name for p in REPO.iterdir()} | {p.name for p in (REPO / "results").iterdir()} == repo_before


def test_compare_second_order_refuses_an_empty_x():
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0,\)\)"):
        calcjax.compare_second_order(lambda x: jnp.sum(x**2), jnp.zeros(0))
