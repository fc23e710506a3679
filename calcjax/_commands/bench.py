"""``calcjax bench``: run the benchmark suite, keep its raw JSON, write the reports.

The suite is ``bench/`` in calcjax's source tree (install from a checkout with
``pip install -e .``); it runs under pytest in a child process, with its own
progress lines. pytest-benchmark's JSON goes to ``<out>/<run-id>/raw.json``,
written to a temporary file and renamed when the run is over, so a run never
leaves half a file and never overwrites another run: the run id is
``<UTC date-time>-<device>-<profile>`` (a suffix is added if it exists; an
explicit ``--run-id`` that exists is refused). Then :mod:`calcjax.report`
writes the CSV, tables and plots beside it and the headline table is printed.

This module imports only the standard library at import time: JAX starts when
the command runs, never when ``calcjax --help`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from calcjax._errors import UsageError
from calcjax._schema import DTYPES, PARTIAL_NAME, RAW_NAME

PROFILES = ("quick", "default", "full", "ci")
DEVICES = ("cpu", "gpu", "auto")
LOG_NAME = "pytest.log"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Host CPU devices forced for a CPU run, so the sharding suite can use 1, 2 and 4.
DEFAULT_CPU_DEVICES = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to run: cpu, gpu, or auto (a GPU if JAX sees one). Default: auto.",
    )
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick",
        dest="profile",
        action="store_const",
        const="quick",
        help="a fast look: n = 100, 1000, the headline methods (about a minute on 2 CPU cores)",
    )
    profile.add_argument(
        "--full",
        dest="profile",
        action="store_const",
        const="full",
        help="everything feasible, up to n = 1e6 (long)",
    )
    profile.add_argument(
        "--profile",
        dest="profile",
        choices=PROFILES,
        help="quick, default or full (ci: tiny sizes, for testing the suite)",
    )
    parser.set_defaults(profile="default")
    parser.add_argument(
        "--dtypes",
        "--dtype",
        dest="dtypes",
        default=None,
        metavar="LIST",
        help="comma-separated dtypes from float32,float64 (default: accuracy in both, timings in "
        "float64; --full times both)",
    )
    parser.add_argument(
        "--sizes", default=None, metavar="LIST", help="comma-separated n of the gradient suite (e.g. 10,1000)"
    )
    parser.add_argument(
        "--max-call-s",
        type=float,
        default=None,
        metavar="S",
        help="run every case predicted to take at most S seconds per call (default: the profile's "
        "limit, e.g. 1 s in default, 10 s in --full)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="results directory (default: results)",
    )
    parser.add_argument(
        "--run-id",
        default=None,
        metavar="ID",
        help="name of the run directory (default: <UTC date-time>-<device>-<profile>); must be new",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=DEFAULT_CPU_DEVICES,
        metavar="N",
        help=f"on a CPU, force N host devices for the sharding suite (default {DEFAULT_CPU_DEVICES}; "
        "0: JAX's default). They share the machine's cores.",
    )
    parser.add_argument(
        "pytest_args",
        nargs="*",
        metavar="-- PYTEST_ARGS",
        help="extra pytest arguments after --, e.g. -- -k quadratic",
    )


def find_suite() -> Path:
    """``bench/`` of the source tree calcjax is installed from (editable install or checkout)."""
    import calcjax

    root = Path(calcjax.__file__).resolve().parent.parent
    bench = root / "bench"
    if (bench / "conftest.py").is_file() and (root / "conftest.py").is_file():
        return bench

    raise UsageError(
        f"the benchmark suite (bench/) is not next to the installed calcjax ({root}): it ships with "
        "the source tree, so install calcjax from a checkout (git clone ...; pip install -e .)"
    )


def _check_args(args: argparse.Namespace) -> None:

    if args.dtypes is not None:
        names = [t.strip() for t in args.dtypes.split(",") if t.strip()]
        bad = [t for t in names if t not in DTYPES]
        if not names or bad:
            raise UsageError(
                f"--dtypes: unknown dtype {', '.join(bad) or repr(args.dtypes)}; valid: float32,float64"
            )
        args.dtypes = ",".join(names)
    if args.sizes is not None:
        try:
            sizes = [int(t) for t in args.sizes.split(",") if t.strip()]
        except ValueError:
            raise UsageError(
                f"--sizes must be comma-separated positive integers, got {args.sizes!r}"
            ) from None
        if not sizes or min(sizes) < 1:
            raise UsageError(f"--sizes must be comma-separated positive integers, got {args.sizes!r}")
    if args.run_id is not None and not _RUN_ID.fullmatch(args.run_id):
        raise UsageError(
            f"--run-id {args.run_id!r}: use letters, digits, '.', '_' and '-' (not starting with '.' or '-')"
        )
    if args.cpu_devices < 0:
        raise UsageError(f"--cpu-devices must be >= 0, got {args.cpu_devices}")
    if args.max_call_s is not None and not 0 < args.max_call_s < float("inf"):
        raise UsageError(f"--max-call-s must be a positive number of seconds, got {args.max_call_s}")


def _platform(spec: str) -> str:
    """The platform ``--device`` means here (``cpu`` or ``gpu``), or a usage error listing what exists."""

    if spec == "cpu":
        return "cpu"
    # Only looking: this process must not take the GPU's memory from the suite's process.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from calcjax._devices import DeviceError, resolve_device

    try:
        return resolve_device(spec).platform
    except DeviceError as err:
        raise UsageError(str(err)) from None


def new_run_dir(out: Path, run_id: str | None, platform: str, profile: str) -> Path:
    """Create and return a new run directory; never an existing one."""

    out.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        path = out / run_id
        try:
            path.mkdir()
        except FileExistsError:
            raise UsageError(
                f"run {path} exists; runs are never overwritten: choose another --run-id"
            ) from None
        return path
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{platform}-{profile}"
    for k in range(1, 1000):
        path = out / (base if k == 1 else f"{base}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UsageError(f"could not find a free run id like {base} in {out}")  # pragma: no cover


def pytest_command(args: argparse.Namespace, bench: Path, json_path: Path, platform: str) -> list[str]:
    root = bench.parent
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(bench),
        "--rootdir",
        str(root),
        "-c",
        str(root / "pyproject.toml"),
        "-p",
        "no:cacheprovider",
        "-rs",
        "--benchmark-only",
        "--benchmark-quiet",
        f"--benchmark-json={json_path}",
        f"--profile={args.profile}",
        f"--device={args.device}",
    ]
    if args.dtypes:
        cmd.append(f"--dtypes={args.dtypes}")
    if args.sizes:
        cmd.append(f"--sizes={args.sizes}")
    if args.max_call_s is not None:
        cmd.append(f"--max-call-s={args.max_call_s}")
    if platform == "cpu" and args.cpu_devices:
        cmd.append(f"--cpu-devices={args.cpu_devices}")
    return [*cmd, *args.pytest_args]


def _stream(cmd: list[str], log_path: Path, env: dict[str, str]) -> int:
    """Run ``cmd``, its output shown as it comes and kept in ``log_path``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        try:
            while chunk := os.read(proc.stdout.fileno(), 4096):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                log.write(chunk)
            return proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise


def run(args: argparse.Namespace) -> int:

    _check_args(args)
    bench = find_suite()
    # The suite's process gets the environment as the user set it (before _platform looks), less
    # the marks of a pytest-xdist worker (calcjax bench called from a test): pytest-benchmark
    # would take them as its own and turn benchmarks off.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
    platform = _platform(args.device)
    if platform == "cpu":
        env.setdefault("JAX_PLATFORMS", "cpu")
    run_dir = new_run_dir(args.out, args.run_id, platform, args.profile)
    partial = run_dir / PARTIAL_NAME
    cmd = pytest_command(args, bench, partial, platform)
    print(f"calcjax bench: run {run_dir.name} ({args.profile} profile, --device {args.device} -> {platform})")
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    try:
        code = _stream(cmd, run_dir / LOG_NAME, env)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    wall = time.perf_counter() - start
    if code not in (0, 1) or not partial.is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        what = "no benchmark ran" if code in (0, 1, 5) else f"pytest exited with status {code}"
        raise UsageError(f"{what}; nothing was written (see the output above)")
    raw = run_dir / RAW_NAME
    os.replace(partial, raw)
    print(f"\ncalcjax bench: suite finished in {wall:.0f} s; raw pytest-benchmark JSON: {raw}")
    if code == 1:
        print("calcjax bench: some benchmarks FAILED (see above); their records are missing", file=sys.stderr)
    reported = _report(run_dir)
    print(f"calcjax bench: total {time.perf_counter() - start:.0f} s")
    return code or (0 if reported else 1)


def _report(run_dir: Path) -> bool:
    """CSV, tables and plots through :mod:`calcjax.report`; False when they could not be written."""
    from calcjax import report
    from calcjax.report._load import reading_once

    try:
        with reading_once():
            report.build_reports(run_dir)
            report.write_index(run_dir.parent)
            print("\n" + report.headline_table(run_dir))
    except report.ReportError as err:
        print(f"calcjax bench: reports not written: {err}", file=sys.stderr)
        return False
    print(f"calcjax bench: reports in {run_dir} (rebuild with: calcjax report {run_dir})")
    return True
