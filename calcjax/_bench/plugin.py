"""The benchmark suite's pytest plugin: options, device, profile, machine facts, cases, run order.

Loaded by the root ``conftest.py`` (``pytest_plugins``), so ``pytest bench`` and
``calcjax bench`` (which runs ``pytest bench``) share it. What it does:

- adds the options of :mod:`calcjax._bench.options` and checks them there, so
  ``calcjax bench`` accepts exactly what ``pytest bench`` accepts;
- starts JAX on the chosen ``--device`` (``auto``: a GPU when JAX sees one; a GPU
  asked for where there is none is a usage error that lists what is available);
- picks the profile (:mod:`calcjax._bench.profiles`). Without one, ``pytest
  --benchmark-only`` runs ``default`` and a plain ``pytest`` runs ``ci``: tiny
  sizes, each benchmark run once as a test (``--benchmark-disable``);
- parametrises each benchmark marked ``@pytest.mark.bench_cases(name)`` with the
  cases :mod:`calcjax._bench.cases` builds for it, and runs them in the order
  given there;
- puts machine facts (JAX/jaxlib versions, backend, device kind and count, x64,
  CPU, Python) into pytest-benchmark's ``machine_info``;
- records the provenance of the measured sources at the start and end of a run
  that writes JSON (:mod:`calcjax._provenance`), in the JSON and every record;
- under ``calcjax bench`` (:mod:`calcjax._bench.runlog`): streams each record to a
  JSON Lines file as its test finishes, shows one progress line instead of pytest's
  dots, and ends with a short skip summary (the full list goes to a file).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, replace

import jax
import pytest

import calcjax
from calcjax._bench.cases import case_table, collection_rank
from calcjax._bench.options import OptionError, add_to_pytest, resolve
from calcjax._bench.profiles import PROFILES, Profile
from calcjax._bench.runlog import Progress, RecordStream, skip_summary
from calcjax._schema import DTYPES

__all__ = ["BenchSettings"]


@dataclass(frozen=True)
class BenchSettings:
    """The resolved options, on ``config.calcjax_bench``: read by the case tables and the harness."""

    device: jax.Device
    profile: Profile
    dtypes: tuple[str, ...]
    timing_dtypes: tuple[str, ...]
    cpu_devices: int | None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("calcjax", "calcjax benchmark suite")
    add_to_pytest(group)
    # Set by ``calcjax bench`` for the suite's process (they work with ``pytest bench`` too).
    group.addoption(
        "--records-jsonl",
        dest="records_jsonl",
        default=None,
        metavar="PATH",
        help="append each benchmark's record to PATH (JSON Lines) as its test finishes",
    )
    group.addoption(
        "--progress",
        dest="progress",
        default=None,
        choices=("tty", "plain"),
        help="one progress line (elapsed, estimate left) instead of pytest's dots: rewritten in place "
        "(tty) or printed now and then as plain lines (plain)",
    )
    group.addoption(
        "--skip-log",
        dest="skip_log",
        default=None,
        metavar="PATH",
        help="print a short skip summary by reason and write the full list of skips to PATH",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Check the options, start JAX on the chosen device and pick the profile.

    Runs before pytest-benchmark's own ``pytest_configure``: the ``ci`` profile
    turns benchmarks off (``--benchmark-disable``) unless they were asked for.
    """
    from calcjax._devices import DeviceError, resolve_device

    config.addinivalue_line("markers", "bench_cases(name): parametrise a benchmark with the cases of `name`")
    try:
        opts = resolve(
            config.getoption, benchmark_only=bool(config.getoption("benchmark_only", default=False))
        )
    except OptionError as err:
        raise pytest.UsageError(str(err)) from None
    if opts.cpu_devices is not None:
        jax.config.update("jax_num_cpu_devices", opts.cpu_devices)
    if opts.device == "cpu":
        jax.config.update("jax_platforms", "cpu")  # do not start (and grab memory on) a GPU
    try:
        device = resolve_device(opts.device)
    except (ValueError, DeviceError) as err:
        raise pytest.UsageError(f"--device: {err}") from None
    jax.config.update("jax_default_device", device)

    profile = PROFILES[opts.profile]
    if profile.name == "full" and device.platform != "cpu":
        # An accelerator's full run goes to n = 1e7 (jax.grad; FD where it fits the time and memory).
        profile = replace(profile, sizes=(*profile.sizes, 10_000_000))
    dtypes = DTYPES if opts.dtypes is None else opts.dtypes
    timing = profile.timing_dtypes if opts.dtypes is None else opts.dtypes
    if opts.sizes is not None:
        profile = replace(profile, sizes=opts.sizes)
    if opts.max_call_s is not None:
        limit = opts.max_call_s
        profile = replace(
            profile,
            max_call_s=limit,
            long_call_s=max(limit, profile.long_call_s),
            accuracy_max_call_s=limit,
        )
    config.calcjax_bench = BenchSettings(device, profile, dtypes, timing, opts.cpu_devices)
    _start_run_log(config)

    wants_timing = any(
        config.getoption(opt, default=None)
        for opt in ("benchmark_only", "benchmark_enable", "benchmark_json", "benchmark_save")
    )
    if profile.name == "ci" and not wants_timing:
        config.option.benchmark_disable = True
    # Plain ``benchmark(fn)`` calls (not the suite's pedantic recipe) get the profile's time too.
    given = config.invocation_params.args
    if profile.target_s > 0 and not any(str(a).startswith("--benchmark-max-time") for a in given):
        config.option.benchmark_max_time = profile.target_s


def pytest_report_header(config: pytest.Config) -> list[str]:
    s: BenchSettings | None = getattr(config, "calcjax_bench", None)
    if s is None:
        return []
    dev = s.device
    return [
        f"calcjax {calcjax.__version__}, JAX {jax.__version__}: device {dev.platform}:{dev.id} "
        f"({dev.device_kind}, {len(jax.devices(dev.platform))} of its kind; --device "
        f"{config.getoption('device')}), x64 {jax.config.jax_enable_x64}",
        f"calcjax bench profile {s.profile.name}: sizes {','.join(map(str, s.profile.sizes))}, "
        f"dtypes {','.join(s.dtypes)} (timing suites: {','.join(s.timing_dtypes)})",
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Machine facts for every record: JAX and jaxlib, backend, device, x64, CPU, Python."""
    import jaxlib

    s: BenchSettings = config.calcjax_bench
    dev = s.device
    machine_info.update(
        {
            "calcjax_version": calcjax.__version__,
            "jax_version": jax.__version__,
            "jaxlib_version": jaxlib.__version__,
            "backend": dev.platform,
            "device": f"{dev.platform}:{dev.id}",
            "device_kind": dev.device_kind,
            "device_count": len(jax.devices(dev.platform)),
            "forced_host_devices": s.cpu_devices if dev.platform == "cpu" else None,
            "x64": bool(jax.config.jax_enable_x64),
            "cpu_model": _cpu_model(),
            "cpu_cores": os.cpu_count(),
            "python": platform.python_version(),
            "profile": s.profile.name,
            "dtypes": ",".join(s.dtypes),
            "timing_dtypes": ",".join(s.timing_dtypes),
            "thread_env": " ".join(
                f"{k}={os.environ.get(k, 'unset')}"
                for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
            ),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        }
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("bench_cases")
    if marker is not None:
        names, cases, idfn = case_table(marker.args[0], metafunc.config.calcjax_bench)
        metafunc.parametrize(names, cases, ids=[idfn(c) for c in cases])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the benchmarks (tests using ``bench``) in :func:`collection_rank` order; others stay put."""
    slots = [i for i, item in enumerate(items) if "bench" in getattr(item, "fixturenames", ())]

    def rank(i: int) -> int:
        marker = items[i].get_closest_marker("bench_cases")
        return collection_rank(marker.args[0] if marker else None)

    ordered = [items[i] for i in sorted(slots, key=rank)]  # stable: each test's own order is kept
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config):
    """The suite's helper (:class:`calcjax._bench.harness.Bench`): instances, cases, timing, records."""
    from calcjax._bench.harness import Bench

    return Bench(pytestconfig)


# --------------------------------------------------------------------------- provenance, records, progress


class _RunLog:
    """The run's provenance snapshots, record stream, progress and skips (``config.calcjax_runlog``)."""

    def __init__(self, config: pytest.Config) -> None:
        from calcjax import _provenance

        self.config = config
        writes = config.getoption("benchmark_json", default=None) or config.getoption("records_jsonl")
        #: Provenance at the start (only for a run that writes JSON: it reads git).
        self.start = _provenance.capture() if writes else None
        path = config.getoption("records_jsonl")
        self.stream = RecordStream(path) if path else None
        self.mode = config.getoption("progress")
        self.progress: Progress | None = None
        self.skips: list[tuple[str, str]] = []
        self._shown = 0.0
        self._shown_count = 0

    # header of the JSON Lines file: what a partial run needs besides its records
    def header(self) -> dict:
        from calcjax import _provenance

        session = getattr(self.config, "_benchmarksession", None)
        machine = session.get_machine_info() if session is not None else {}
        return {
            "datetime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "machine_info": machine,
            _provenance.RAW_KEY: _provenance.run_block(self.start) if self.start else None,
        }

    def write(self, line: str, *, inplace: bool) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        if inplace:
            tr.write("\r" + line.ljust(100), flush=True)
        else:
            tr.write_line(line, flush=True)


def _start_run_log(config: pytest.Config) -> None:
    config.calcjax_runlog = _RunLog(config)


def _runlog(config: pytest.Config) -> _RunLog | None:
    return getattr(config, "calcjax_runlog", None)


def pytest_collection_finish(session: pytest.Session) -> None:
    log = _runlog(session.config)
    if log is not None and log.mode:
        from pathlib import Path

        from calcjax._bench.runlog import newest_costs

        costs: dict[str, float] = {}
        out = session.config.getoption("benchmark_json", default=None)
        if out:  # the earlier runs beside this one (calcjax bench --out) say what each case costs
            run_dir = Path(str(out)).parent
            costs = newest_costs(run_dir.parent, session.config.calcjax_bench.device.platform, run_dir)
        log.progress = Progress([item.name for item in session.items], costs)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    log = _runlog(item.config)
    if log is None or log.stream is None or call.when != "call":
        return
    report = outcome.get_result()
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    stats = getattr(fixture, "stats", None)
    if report.passed and stats is not None and stats.stats.data:
        from calcjax import _provenance

        record = stats.as_dict(include_data=True)
        record.setdefault("extra_info", {}).update(
            _provenance.record_fields(_provenance.run_block(log.start) if log.start else None)
        )
        log.stream.add(record, log.header)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """With ``--progress``, passed and skipped cases print nothing: the progress line counts them."""
    log = _runlog(config)
    if log is not None and log.mode and report.outcome in ("passed", "skipped"):
        if report.when == "call" or (report.when == "setup" and report.skipped):
            return report.outcome, "", ""
        if report.when in ("setup", "teardown"):
            return "", "", ""
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        config = _CONFIG.get("config")
        log = _runlog(config) if config is not None else None
        if log is not None:
            log.skips.append((report.nodeid, str(report.longrepr[2]).removeprefix("Skipped: ")))


#: The session's config, for hooks that are not given it (pytest_runtest_logreport).
_CONFIG: dict[str, pytest.Config] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config
    log = _runlog(session.config)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if log is not None and log.mode and tr is not None:
        tr.showfspath = False  # no file names between the progress lines


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    config = _CONFIG.get("config")
    log = _runlog(config) if config is not None else None
    if log is None or log.progress is None:
        return
    log.progress.finished(nodeid.split("::")[-1])
    p = log.progress
    now = time.monotonic()
    if log.mode == "tty":
        if now - log._shown >= 0.5 or p.count == p.total:
            log.write(p.line(), inplace=True)
            log._shown = now
    elif now - log._shown >= 30 or p.count - log._shown_count >= max(1, p.total // 20) or p.count == p.total:
        log.write(f"{time.strftime('%H:%M:%S')} {p.line()}", inplace=False)
        log._shown, log._shown_count = now, p.count


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """Stamp the provenance (start and end snapshots) into the JSON and every record."""
    log = _runlog(config)
    if log is None or log.start is None:
        return
    from calcjax import _provenance

    _provenance.stamp(output_json, log.start, _provenance.capture())


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    log = _runlog(config)
    if log is None:
        return
    if log.stream is not None:
        log.stream.close()
    path = config.getoption("skip_log")
    if log.mode == "tty" and log.progress is not None:
        terminalreporter.write("\n")
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as fh:  # appended: calcjax bench's log is this file
        fh.write(f"\n===== skipped cases: {len(log.skips)} =====\n")
        for nodeid, reason in log.skips:
            fh.write(f"SKIPPED {nodeid}: {reason}\n")
        fh.write("=====\n")
    for line in skip_summary((r for _, r in log.skips), log_name=os.path.basename(str(path))):
        terminalreporter.write_line(line)
