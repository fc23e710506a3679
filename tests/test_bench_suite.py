"""The benchmark pipeline around ``bench/``: ``calcjax bench``, the pytest options, the JSON it keeps.

The suite itself runs as tests in every plain ``pytest`` (``testpaths`` includes
``bench/``; without ``--benchmark-only`` it takes the ``ci`` profile: tiny sizes,
each benchmark called once). Here: the command line's checks, that a run never
overwrites another, the pytest options' usage errors, and one end-to-end run
whose raw JSON carries the record schema and works with ``pytest-benchmark compare``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from calcjax import _schema, cli
from calcjax._commands import bench as bench_command

ROOT = Path(__file__).resolve().parent.parent

BASE_FIELDS = set(_schema.BASE_FIELDS)
MACHINE_FIELDS = {
    "jax_version",
    "jaxlib_version",
    "backend",
    "device_kind",
    "device_count",
    "x64",
    "cpu_model",
    "python",
}


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def _pytest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


# --------------------------------------------------------------------------- calcjax bench: checks


#: (argument, value, the message both front ends give)
BAD_OPTIONS = [
    ("--device", "tpu", "unknown device 'tpu'"),
    ("--dtypes", "float16", "--dtypes: unknown value 'float16'"),
    ("--dtypes", ",", "--dtypes must be a non-empty comma-separated list, got ','"),
    ("--profile", "huge", "unknown profile 'huge'"),
    ("--sizes", "10,x", "--sizes must be comma-separated positive integers"),
    ("--sizes", "0", "--sizes must be comma-separated positive integers"),
    ("--sizes", "ten", "--sizes must be comma-separated positive integers"),
    ("--cpu-devices", "-1", "--cpu-devices must be a whole number >= 0"),
    ("--max-call-s", "0", "--max-call-s must be a positive number of seconds, got '0'"),
    ("--max-call-s", "inf", "--max-call-s must be a positive number of seconds"),
    ("--max-call-s", "soon", "--max-call-s must be a positive number of seconds, got 'soon'"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_OPTIONS)
def test_bench_rejects_bad_arguments(tmp_path, capsys, option, value, message):
    out = tmp_path / "results"
    assert cli.main(["bench", "--out", str(out), f"{option}={value}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bench_rejects_a_bad_run_id(tmp_path, capsys):
    out = tmp_path / "results"
    assert cli.main(["bench", "--out", str(out), "--run-id", "../elsewhere"]) == 2
    assert "--run-id '../elsewhere'" in capsys.readouterr().err
    assert not out.exists()


def test_both_front_ends_add_every_option_as_text():
    """pytest and calcjax bench add the same options from one definition and take them as typed."""
    from calcjax._bench.options import OPTIONS, add_to_pytest

    added = []

    class Group:
        def addoption(self, *flags, **kwargs):
            added.extend(flags)

    add_to_pytest(Group())
    parser = cli.build_parser()
    for o in OPTIONS:
        assert set(o.flags) <= set(added)
        for flag in o.flags:
            args = parser.parse_args(["bench", flag] if o.flag else ["bench", flag, "1e3"])
            assert getattr(args, o.dest) == (True if o.flag else "1e3")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--sizes", "1e3,10"], ["--sizes=1000,10"]),
        (["--cpu-devices", "0"], []),  # 0: JAX's default, so nothing is forced
        (["--cpu-devices", "2"], ["--cpu-devices=2"]),
        (["--full", "--dtype", "float32"], ["--profile=full", "--dtypes=float32"]),
    ],
)
def test_bench_passes_the_options_on_as_checked(tmp_path, argv, expected):
    args = cli.build_parser().parse_args(["bench", *argv])
    cmd = bench_command.pytest_command(args, ROOT / "bench", tmp_path / "x.json", "cpu")
    for part in expected:
        assert part in cmd
    if argv == ["--cpu-devices", "0"]:
        assert not [c for c in cmd if c.startswith("--cpu-devices")]


def test_bench_refuses_an_existing_run_id(tmp_path, capsys):
    run = tmp_path / "results" / "mine"
    run.mkdir(parents=True)
    (run / "raw.json").write_text("{}")
    argv = ["bench", "--device", "cpu", "--allow-dirty", "--out", str(run.parent), "--run-id", "mine"]
    assert cli.main(argv) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert (run / "raw.json").read_text() == "{}"
    assert sorted(p.name for p in run.iterdir()) == ["raw.json"]


@pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU")
def test_bench_gpu_without_gpu_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the command sets it when unset
    out = tmp_path / "results"
    assert cli.main(["bench", "--device", "gpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no GPU is available" in err
    assert "cpu: " in err  # lists what is available
    assert not out.exists()


def test_new_run_dirs_never_collide(tmp_path):
    first = bench_command.new_run_dir(tmp_path, None, "cpu", "quick")
    second = bench_command.new_run_dir(tmp_path, None, "cpu", "quick")
    assert first != second
    assert first.is_dir()
    assert second.is_dir()
    assert first.name.endswith("-cpu-quick")
    assert second.name.startswith(first.name[:9])  # the same UTC date (or the next second)


def test_pytest_command(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(
        ["bench", "--quick", "--dtypes", "float64", "--max-call-s", "60", "--", "-k", "quadratic"]
    )
    cmd = bench_command.pytest_command(args, ROOT / "bench", tmp_path / "x.json", "cpu")
    assert cmd[:3] == [sys.executable, "-m", "pytest"]
    for part in [
        "--benchmark-only",
        "--profile=quick",
        "--device=auto",
        "--dtypes=float64",
        "--cpu-devices=4",
        "--max-call-s=60.0",
    ]:
        assert part in cmd
    assert f"--benchmark-json={tmp_path / 'x.json'}" in cmd
    assert cmd[-2:] == ["-k", "quadratic"]
    assert bench_command.find_suite() == ROOT / "bench"


# --------------------------------------------------------------------------- pytest options


@pytest.mark.slow
@pytest.mark.parametrize(("option", "value", "message"), BAD_OPTIONS[::3])
def test_bad_pytest_option_is_the_same_usage_error(option, value, message):
    """``pytest bench`` refuses what ``calcjax bench`` refuses, with the same message."""
    proc = _pytest("bench", "--collect-only", "-q", f"{option}={value}")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr


@pytest.mark.slow
def test_pytest_accepts_what_calcjax_bench_accepts():
    proc = _pytest("bench/test_gradient.py", "--collect-only", "-q", "--sizes=1e1", "--cpu-devices=0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "n10-" in proc.stdout


@pytest.mark.slow
def test_max_call_s_sets_the_time_limit():
    # a limit no case can meet skips them all, naming the limit and how to raise it
    proc = _pytest(
        "bench/test_gradient.py", "-q", "-rs", "--max-call-s=1e-9", "-k", "test_gradient and fd-forward"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " skipped" in proc.stdout.splitlines()[-1]
    assert (
        "per call > 1.00 ns allowed by the 'ci' profile (--max-call-s or --full allows more)" in proc.stdout
    )


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_bench_end_to_end(tmp_path):
    """``calcjax bench`` on a slice of the ci profile: raw JSON in a new run directory, the record
    schema, machine facts, and ``pytest-benchmark compare`` reading the file."""
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "calcjax.cli", "bench", "--profile", "ci", "--device", "cpu"]
    cmd += ["--allow-dirty", "--out", str(out), "--run-id", "e2e", "--", "-k", "quadratic and not estimate"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = out / "e2e"
    assert (run / "raw.json").is_file()
    assert not (run / ".raw.json.partial").exists()
    raw = json.loads((run / "raw.json").read_text())
    assert MACHINE_FIELDS <= set(raw["machine_info"])
    assert raw["machine_info"]["x64"] is True
    suites = set()
    for record in raw["benchmarks"]:
        extra = record["extra_info"]
        assert BASE_FIELDS <= set(extra), record["name"]
        assert extra["backend"] == "cpu"
        assert record["stats"]["rounds"] >= 1
        assert record["group"]
        suites.add(extra["suite"])
    assert {"gradient", "feval", "accuracy", "sharding"} <= suites
    gradient = [r["extra_info"] for r in raw["benchmarks"] if r["extra_info"]["suite"] == "gradient"]
    assert {"fd-central", "ad-reverse"} <= {e["method"] for e in gradient}
    assert all(e["rel_error"] < 1e-2 for e in gradient if e["method"] in ("fd-central", "ad-reverse"))
    assert any(e["peak_source"] == "xla_memory_analysis" and e["peak_bytes"] > 0 for e in gradient)
    compare = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(run / "raw.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert compare.returncode == 0, compare.stderr
    assert "test_gradient" in compare.stdout


def test_device_choices_are_calcjax_devices():
    from calcjax._bench.options import DEVICES
    from calcjax._devices import DEVICE_CHOICES

    assert DEVICES == DEVICE_CHOICES
