"""``calcjax bench``: run the benchmark suite, keep its raw JSON, write the reports.

The suite is ``bench/`` in calcjax's source tree (install from a checkout with
``pip install -e .``); it runs under pytest in a child process, with its own
progress lines. pytest-benchmark's JSON goes to ``<out>/<run-id>/raw.json``,
written to a temporary file and renamed when the run is over, so a run never
leaves half a file and never overwrites another run: the run id is
``<UTC date-time>-<device>-<profile>`` (a suffix is added if it exists; an
explicit ``--run-id`` that exists is refused). Then :mod:`calcjax.report`
writes the CSV, tables and plots beside it and the headline table is printed.

Provenance: a run whose measured sources (:data:`calcjax._provenance.MEASURED`)
differ from the commit is refused unless ``--allow-dirty``; the suite records the
commit and a hash of the sources at its start and end (a copied tree names its
commit through ``CALCJAX_SOURCE_COMMIT``). While it runs, each record is appended
to ``records.jsonl`` as its test finishes and the output (one progress line, a
skip summary; the full skip list and everything else in ``pytest.log``) is
written to the log as it comes, so a run killed half-way can be rebuilt with
``calcjax report RUN --partial``. SIGTERM is handled like Ctrl-C: the suite is
stopped and the unfinished run folder removed.

This module imports only the standard library at import time: JAX starts when
the command runs, never when ``calcjax --help`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from calcjax._bench.options import BenchOptions, OptionError, add_to_argparse, resolve
from calcjax._errors import UsageError
from calcjax._files import check_writable_dir
from calcjax._schema import PARTIAL_NAME, RAW_NAME, RECORDS_NAME

LOG_NAME = "pytest.log"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Host CPU devices forced for a CPU run, so the sharding suite can use 1, 2 and 4.
DEFAULT_CPU_DEVICES = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # The suite's own options, the same as pytest's (one definition, one check: options.resolve).
    add_to_argparse(parser, defaults={"cpu_devices": str(DEFAULT_CPU_DEVICES)})
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
        "--allow-dirty",
        action="store_true",
        help="run although the measured sources (calcjax/, bench/, conftest.py, pyproject.toml) have "
        "uncommitted changes; the run records which files (every table says so)",
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


def _check_args(args: argparse.Namespace) -> BenchOptions:
    """The suite's options checked as ``pytest bench`` checks them, and ``--run-id``."""
    try:
        opts = resolve(lambda dest: getattr(args, dest), benchmark_only=True)
    except OptionError as err:
        raise UsageError(str(err)) from None
    if args.run_id is not None and not _RUN_ID.fullmatch(args.run_id):
        raise UsageError(
            f"--run-id {args.run_id!r}: use letters, digits, '.', '_' and '-' (not starting with '.' or '-')"
        )
    return opts


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


def pytest_command(
    args: argparse.Namespace,
    bench: Path,
    json_path: Path,
    platform: str,
    *,
    tty: bool | None = None,
) -> list[str]:
    """The suite's pytest command line; its records stream beside ``json_path``.

    ``tty``: whether the output is a terminal (progress rewritten in place), default
    ``sys.stdout.isatty()``.
    """
    opts = _check_args(args)
    tty = sys.stdout.isatty() if tty is None else tty
    run_dir = json_path.parent
    if platform != "cpu":
        opts = replace(opts, cpu_devices=None)  # host devices are forced for a CPU run only
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
        "-o",
        "console_output_style=classic",
        # pytest-benchmark warns when nothing ran (-k matching nothing); under filterwarnings=error
        # that is a traceback. The command says so itself, in one line.
        "-W",
        "ignore:Not saving anything:pytest_benchmark.logger.PytestBenchmarkWarning",
        "--benchmark-only",
        "--benchmark-quiet",
        f"--benchmark-json={json_path}",
        f"--records-jsonl={run_dir / RECORDS_NAME}",
        f"--skip-log={run_dir / LOG_NAME}",  # the full list, appended to the log
        f"--progress={'tty' if tty else 'plain'}",
        *opts.argv(),
    ]
    return [*cmd, *args.pytest_args]


def _stream(cmd: list[str], log_path: Path, env: dict[str, str]) -> int:
    """Run ``cmd``, its output shown as it comes and kept in ``log_path``."""
    # Unbuffered all the way: the child writes as it goes, the log is written chunk by chunk.
    env = {**env, "PYTHONUNBUFFERED": "1"}
    # Appending (O_APPEND): the suite appends its full list of skips to the same file.
    with open(log_path, "ab", buffering=0) as log:
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a CI cancel, ``kill``): stopped and cleaned up like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only)."""

    def handler(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _check_provenance(allow_dirty: bool) -> None:
    """Refuse a run from uncommitted measured sources unless ``--allow-dirty``."""
    from calcjax import _provenance

    snap = _provenance.capture(find_suite().parent)
    _provenance.check_clean(snap, allow_dirty=allow_dirty)
    if snap.dirty:
        print(f"calcjax bench: --allow-dirty: {len(snap.dirty_files or [])} measured file(s) uncommitted")


def run(args: argparse.Namespace) -> int:

    opts = _check_args(args)
    check_writable_dir(args.out, f"--out {args.out}")  # before the suite runs, not after
    bench = find_suite()
    # The suite's process gets the environment as the user set it (before _platform looks), less
    # the marks of a pytest-xdist worker (calcjax bench called from a test): pytest-benchmark
    # would take them as its own and turn benchmarks off.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
    platform = _platform(opts.device)
    if platform == "cpu":
        env.setdefault("JAX_PLATFORMS", "cpu")
    _check_provenance(args.allow_dirty)
    out_is_new = not args.out.exists()
    run_dir = new_run_dir(args.out, args.run_id, platform, opts.profile)
    partial = run_dir / PARTIAL_NAME
    cmd = pytest_command(args, bench, partial, platform)
    print(f"calcjax bench: run {run_dir.name} ({opts.profile} profile, --device {opts.device} -> {platform})")
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    log_path = run_dir / LOG_NAME
    try:
        with _sigterm_as_interrupt():
            code = _stream(cmd, log_path, env)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        if out_is_new:
            with contextlib.suppress(OSError):
                args.out.rmdir()
        raise
    wall = time.perf_counter() - start
    records = run_dir / RECORDS_NAME
    if code not in (0, 1, 5) and not partial.is_file() and records.is_file() and records.stat().st_size:
        # pytest itself died (a crash in a compiler, out of memory): keep what finished
        done = sum(1 for line in records.read_text().splitlines() if line.strip()) - 1  # less the header
        raise UsageError(
            f"pytest exited with status {code} after {done} benchmark(s) finished; they are kept in "
            f"{run_dir} (rebuild their tables with: calcjax report {run_dir} --partial)"
        )
    if code not in (0, 1) or not partial.is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        if out_is_new:
            with contextlib.suppress(OSError):
                args.out.rmdir()  # made for this run, and empty
        if code == 5 or (code in (0, 1) and not partial.is_file()):
            raise UsageError(
                "no benchmark ran (no case matched the options or -k/-m given); nothing was written"
            )
        raise UsageError(f"pytest exited with status {code}; nothing was written (see the output above)")
    raw = run_dir / RAW_NAME
    os.replace(partial, raw)
    (run_dir / RECORDS_NAME).unlink(missing_ok=True)  # raw.json holds every record now
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
    page = run_dir / "index.html"
    page = page if page.is_file() else run_dir.parent / "README.md"
    print(f"calcjax bench: next: open {page} for every table;")
    print("               `calcjax compare FILE.py:FUNCTION` ranks the methods on your own function")
    return True
