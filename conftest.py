"""Shared pytest set-up for tests/, bench/ and the doctests in calcjax/.

x64 is switched on once, at start-up, before any test runs: float32 and float64
then both run in one process, every input cast explicitly.

The options below choose what the benchmark suite (``bench/``) runs and where:

- ``--device cpu|gpu|auto``: the device every array is put on (``auto``: a GPU
  when JAX sees one). A GPU asked for where there is none is a usage error that
  lists what is available.
- ``--dtypes float32,float64``: the dtypes to run. Default: both in the accuracy
  suites; the timing suites take the profile's (float64 in quick and default).
- ``--profile ci|quick|default|full`` (``--quick``, ``--full``): sizes and time
  budgets, see :data:`PROFILES`. Without a profile, ``pytest --benchmark-only``
  runs ``default`` and a plain ``pytest`` runs ``ci``: tiny sizes, each benchmark
  run once as a test (``--benchmark-disable``), so the test command stays fast.
- ``--sizes 10,100``: the gradient suite's n, overriding the profile's.
- ``--cpu-devices N``: N host CPU devices (forced), for the sharding suite.

Machine facts (JAX/jaxlib versions, backend, device kind and count, x64, CPU,
Python) go into pytest-benchmark's ``machine_info`` through its hook.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, replace

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import calcjax  # noqa: E402

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Profile:
    """What one benchmark profile runs, and the time it may spend.

    Attributes:
      name: ``ci``, ``quick``, ``default`` or ``full``.
      sizes: n of the gradient suite (and of ``feval``).
      timing_dtypes: dtypes of the timing suites when ``--dtypes`` is not given
        (the accuracy suites always run every dtype asked for).
      accuracy_n: n of the ``accuracy`` suite.
      derivative_points: how many points one ``derivative`` call differentiates at.
      derivative_functions: the scalar functions of the derivative suite (``None``: all).
      stencils: the (scheme, order) stencils of the derivative and V-curve suites (``None``: all).
      vcurve_h: step sizes of the V-curve.
      descent: (n, steps) pairs of the descent suite.
      sharding_n: n of the sharding suite.
      memory_n: n of the memory suite (compile only: XLA's memory analysis at sizes too
        slow to run).
      methods: the gradient methods timed (``None``: every registry method).
      thin: run a covering subset of the cases (every method, problem and dtype at
        least once) instead of every combination: the ``ci`` profile's way to stay fast.
      max_call_s: a case whose single call is predicted to take longer is skipped.
      long_methods, long_call_s: gradient methods allowed up to ``long_call_s`` per call
        instead (the full profile's n = 1e5 point for calcjax's FD and the NumPy loop).
      accuracy_max_call_s: the same for the accuracy suite (it times one round only).
      target_s: seconds of timed calls per benchmark (rounds follow from it).
      max_rounds: at most this many timed rounds.
    """

    name: str
    sizes: tuple[int, ...]
    timing_dtypes: tuple[str, ...]
    accuracy_n: int
    derivative_points: tuple[int, ...]
    derivative_functions: tuple[str, ...] | None
    stencils: tuple[tuple[str, int], ...] | None
    vcurve_h: tuple[float, ...]
    descent: tuple[tuple[int, int], ...]
    sharding_n: tuple[int, ...]
    memory_n: tuple[int, ...]
    methods: tuple[str, ...] | None
    thin: bool
    max_call_s: float
    long_methods: tuple[str, ...]
    long_call_s: float
    accuracy_max_call_s: float
    target_s: float
    max_rounds: int


_DECADES = tuple(10.0**-k for k in range(1, 15))  # 1e-1 ... 1e-14
#: The quick profile's gradient methods: the headline ones and their like-for-like peers.
CORE_METHODS = (
    "ad-reverse",
    "fd-forward",
    "fd-central",
    "numpy-loop",
    "scipy-approx-fprime",
    "jax-vmap-naive",
)
_DESCENT = ((1, 10), (1, 10_000), (10_000, 10), (10_000, 10_000))

#: The profiles. ``ci`` runs every benchmark once, at tiny sizes, as a test.
PROFILES = {
    p.name: p
    for p in [
        Profile(
            "ci",
            sizes=(10,),
            timing_dtypes=DTYPES,
            accuracy_n=10,
            derivative_points=(1,),
            derivative_functions=None,
            stencils=None,
            vcurve_h=(1e-2, 1e-5, 1e-8),
            descent=((1, 10), (10, 10)),
            sharding_n=(10,),
            memory_n=(10,),
            methods=None,
            thin=True,
            max_call_s=0.5,
            long_methods=(),
            long_call_s=0.0,
            accuracy_max_call_s=0.5,
            target_s=0.0,
            max_rounds=1,
        ),
        Profile(
            "quick",
            sizes=(100, 1000),
            timing_dtypes=("float64",),
            accuracy_n=100,
            derivative_points=(1,),
            derivative_functions=("square", "sin"),
            stencils=(("forward", 1), ("central", 2), ("central", 4)),
            vcurve_h=_DECADES,
            descent=_DESCENT,
            sharding_n=(1000,),
            memory_n=(),
            methods=CORE_METHODS,
            thin=False,
            max_call_s=0.3,
            long_methods=(),
            long_call_s=0.0,
            accuracy_max_call_s=1.0,
            target_s=0.05,
            max_rounds=50,
        ),
        Profile(
            "default",
            sizes=(10, 100, 1000, 10_000),
            timing_dtypes=("float64",),
            accuracy_n=1000,
            derivative_points=(1, 10_000),
            derivative_functions=None,
            stencils=None,
            vcurve_h=_DECADES,
            descent=_DESCENT,
            sharding_n=(1000, 10_000),
            memory_n=(1_000_000,),
            methods=None,
            thin=False,
            max_call_s=1.0,
            long_methods=(),
            long_call_s=0.0,
            accuracy_max_call_s=2.0,
            target_s=0.1,
            max_rounds=100,
        ),
        Profile(
            "full",
            sizes=(10, 100, 1000, 10_000, 100_000, 1_000_000),
            timing_dtypes=DTYPES,
            accuracy_n=1000,
            derivative_points=(1, 10_000, 1_000_000),
            derivative_functions=None,
            stencils=None,
            vcurve_h=_DECADES,
            descent=_DESCENT,
            sharding_n=(1000, 10_000),
            memory_n=(100_000, 1_000_000),
            methods=None,
            thin=False,
            max_call_s=10.0,
            long_methods=("fd-forward", "fd-central", "numpy-loop"),
            long_call_s=300.0,
            accuracy_max_call_s=30.0,
            target_s=0.5,
            max_rounds=200,
        ),
    ]
}


@dataclass(frozen=True)
class BenchSettings:
    """The resolved options, on ``config.calcjax_bench``: read by ``bench/conftest.py``."""

    device: jax.Device
    profile: Profile
    dtypes: tuple[str, ...]
    timing_dtypes: tuple[str, ...]
    cpu_devices: int | None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("calcjax", "calcjax benchmark suite")
    group.addoption(
        "--device",
        default="auto",
        help="device to run on: cpu, gpu or auto (a GPU if JAX sees one). Default: auto.",
    )
    group.addoption(
        "--dtypes",
        default=None,
        help="comma-separated dtypes, from float32,float64. Default: both, except that the quick and "
        "default profiles time float64 only (their accuracy suites run both).",
    )
    group.addoption(
        "--profile",
        default=None,
        help="benchmark sizes and budgets: ci, quick, default or full. Default: 'default' with "
        "--benchmark-only, else 'ci' (tiny sizes, each benchmark run once as a test).",
    )
    group.addoption("--quick", action="store_true", default=False, help="shorthand for --profile quick")
    group.addoption("--full", action="store_true", default=False, help="shorthand for --profile full")
    group.addoption(
        "--sizes", default=None, help="comma-separated n of the gradient suite, overriding the profile's"
    )
    group.addoption(
        "--max-call-s",
        default=None,
        help="skip a case only when one call is predicted to take longer than this many seconds "
        "(every timing suite), instead of the profile's limit",
    )
    group.addoption(
        "--cpu-devices",
        default=None,
        help="force this many host CPU devices (for the sharding suite on a CPU). Default: JAX's own.",
    )


def _parse_list(text: str, what: str, convert, valid=None) -> tuple:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise pytest.UsageError(f"{what} must be a non-empty comma-separated list, got {text!r}")
    out = []
    for item in items:
        try:
            value = convert(item)
        except ValueError:
            raise pytest.UsageError(f"{what}: {item!r} is not valid") from None
        if valid is not None and value not in valid:
            raise pytest.UsageError(f"{what}: unknown value {item!r}; valid: {', '.join(valid)}")
        if value not in out:
            out.append(value)
    return tuple(out)


def _positive_int(text: str) -> int:
    """``"1000"`` or ``"1e6"`` as an int >= 1; ``ValueError`` otherwise."""
    value = float(text) if "e" in text.lower() else int(text)
    if value < 1 or value != int(value):
        raise ValueError(text)
    return int(value)


def _profile_name(config: pytest.Config) -> str:
    chosen = [
        name
        for name, given in [
            (config.getoption("profile"), config.getoption("profile") is not None),
            ("quick", config.getoption("quick")),
            ("full", config.getoption("full")),
        ]
        if given
    ]
    if len(set(chosen)) > 1:
        raise pytest.UsageError(f"choose one profile, got {' and '.join(sorted(set(chosen)))}")
    if chosen:
        name = chosen[0]
        if name not in PROFILES:
            raise pytest.UsageError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
        return name
    return "default" if config.getoption("benchmark_only", default=False) else "ci"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Check the options, start JAX on the chosen device and pick the profile.

    Runs before pytest-benchmark's own ``pytest_configure``: the ``ci`` profile
    turns benchmarks off (``--benchmark-disable``) unless they were asked for.
    """
    from calcjax._devices import DeviceError, resolve_device

    cpu_devices = config.getoption("cpu_devices")
    if cpu_devices is not None:
        try:
            cpu_devices = _positive_int(str(cpu_devices))
        except ValueError:
            raise pytest.UsageError(
                f"--cpu-devices must be a positive integer, got {cpu_devices!r}"
            ) from None
        jax.config.update("jax_num_cpu_devices", cpu_devices)
    spec = config.getoption("device")
    if spec == "cpu":
        jax.config.update("jax_platforms", "cpu")  # do not start (and grab memory on) a GPU
    try:
        device = resolve_device(spec)
    except (ValueError, DeviceError) as err:
        raise pytest.UsageError(f"--device: {err}") from None
    jax.config.update("jax_default_device", device)

    profile = PROFILES[_profile_name(config)]
    if profile.name == "full" and device.platform != "cpu":
        # An accelerator's full run goes to n = 1e7 (jax.grad; FD where it fits the time and memory).
        profile = replace(profile, sizes=(*profile.sizes, 10_000_000))
    dtypes_opt = config.getoption("dtypes")
    dtypes = DTYPES if dtypes_opt is None else _parse_list(dtypes_opt, "--dtypes", str, DTYPES)
    timing = profile.timing_dtypes if dtypes_opt is None else dtypes
    if config.getoption("sizes") is not None:
        sizes = _parse_list(config.getoption("sizes"), "--sizes", _positive_int)
        profile = replace(profile, sizes=sizes)
    if config.getoption("max_call_s") is not None:
        text = str(config.getoption("max_call_s"))
        try:
            limit = float(text)
        except ValueError:
            limit = float("nan")
        if not limit > 0 or limit == float("inf"):
            raise pytest.UsageError(f"--max-call-s must be a positive number of seconds, got {text!r}")
        profile = replace(
            profile,
            max_call_s=limit,
            long_call_s=max(limit, profile.long_call_s),
            accuracy_max_call_s=limit,
        )
    config.calcjax_bench = BenchSettings(device, profile, dtypes, timing, cpu_devices)

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


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["calcjax"] = calcjax
    doctest_namespace["jax"] = jax
