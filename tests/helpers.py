"""Test data shared by several test modules: a synthetic benchmark run, written like the suite writes one.

``make_raw()`` gives pytest-benchmark JSON with calcjax records of every suite
(gradient, feval, accuracy, vcurve, estimate, descent, sharding), times from a
cost model and errors from the textbook error curves; ``write_run`` puts it in a
run directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from calcjax._schema import LOSSES_FIELD, RAW_NAME

GRAD_METHODS = {
    # method: (max n, seconds per call as a function of n)
    "ad-reverse": (None, lambda n: 6e-6 + 2e-9 * n),
    "ad-forward": (None, lambda n: 8e-6 + 4e-9 * n * n),
    "fd-forward": (None, lambda n: 1e-5 + 1.1e-9 * n * n),
    "fd-central": (None, lambda n: 1e-5 + 2e-9 * n * n),
    "fd-central-blackbox": (None, lambda n: 1e-5 + 3e-9 * n * n),
    "numpy-loop": (10_000, lambda n: 2 * n * (3e-6 + 1.1e-9 * n)),
    "scipy-approx-fprime": (10_000, lambda n: n * (4e-6 + 1.1e-9 * n)),
    "jax-vmap-naive": (1_000, lambda n: 2e-5 + 8e-9 * n * n),
    "jax-lax-map": (None, lambda n: 3e-5 + 6e-9 * n * n),
    "numdifftools": (100, lambda n: n * 8e-4),
}
PROBLEMS = {"quadratic": 1.0, "rosenbrock": 1.6}  # time factor
SIZES = (10, 100, 1_000, 10_000)


def _stats(t: float, rounds: int = 7) -> dict:
    data = [t * (0.97 + 0.01 * i) for i in range(rounds)]
    return {
        "min": min(data),
        "max": max(data),
        "mean": sum(data) / rounds,
        "stddev": t * 0.02,
        "rounds": rounds,
        "median": t,
        "iqr": t * 0.03,
        "q1": t * 0.985,
        "q3": t * 1.015,
        "iqr_outliers": 0,
        "stddev_outliers": 1,
        "outliers": "1;0",
        "ld15iqr": min(data),
        "hd15iqr": max(data),
        "ops": 1 / t,
        "total": sum(data),
        "iterations": 1,
        "data": data,
    }


def _record(name: str, t: float, **extra) -> dict:
    return {
        "group": extra.get("suite"),
        "name": name,
        "fullname": f"bench/test_{extra.get('suite')}.py::{name}",
        "params": {k: extra[k] for k in ("problem", "n", "method", "dtype") if k in extra},
        "param": "-".join(str(extra[k]) for k in ("problem", "n", "method", "dtype") if k in extra),
        "extra_info": extra,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "warmup": False},
        "stats": _stats(t),
    }


def make_raw(device: str = "cpu", speed: float = 1.0, date: str = "2026-11-26T10:00:00.000000+00:00") -> dict:
    """A small, realistic pytest-benchmark JSON with every suite calcjax's reports read."""
    gpu = device == "gpu"
    kind = "NVIDIA H100 80GB HBM3" if gpu else "cpu"
    common = {"device": device, "backend": device, "device_kind": kind, "device_count": 1}
    out = []
    for problem, factor in PROBLEMS.items():
        for dtype in ("float32", "float64"):
            for n in SIZES:
                for method, (max_n, model) in GRAD_METHODS.items():
                    if max_n is not None and n > max_n:
                        continue
                    if dtype == "float32" and method in ("numdifftools", "jax-vmap-naive"):
                        continue
                    fd = method.startswith(("fd", "numpy", "scipy", "jax", "numdiff"))
                    err = 0.0 if method.startswith("ad") else (3e-10 if dtype == "float64" else 4e-4)
                    if method == "numpy-loop" and dtype == "float32":
                        err = 0.5 + n * 1e-4
                    extra = {
                        "suite": "gradient",
                        "problem": problem,
                        "n": n,
                        "method": method,
                        "dtype": dtype,
                        **common,
                        "compile_s": 0.05 if not method.startswith(("numpy", "scipy", "numdiff")) else 0.0,
                        "f_evals": 2 * n if fd else 0,
                        "rel_error": err,
                        "reference": "analytic",
                        "peak_bytes": 2 * 64 * n * 8 if fd else 3 * n * 8,
                        "peak_source": "xla" if "numpy" not in method else "tracemalloc",
                    }
                    t = model(n) * factor * speed * (0.6 if dtype == "float32" else 1.0)
                    out.append(_record(f"test_gradient[{problem}-{n}-{method}-{dtype}]", t, **extra))
            out.append(
                _record(
                    f"test_feval[{problem}-10000-{dtype}]",
                    256 * 1.5e-6 * factor * speed,
                    suite="feval",
                    problem=problem,
                    n=10_000,
                    dtype=dtype,
                    batch=256,
                    **common,
                    compile_s=0.02,
                )
            )
    for dtype, errs in (
        ("float32", {"fd-central": 3e-4, "numpy-loop": 1.3}),
        ("float64", {"fd-central": 2e-10}),
    ):
        for method, err in {"ad-reverse": 0.0, **errs}.items():
            out.append(
                _record(
                    f"test_accuracy[quadratic-1000-{method}-{dtype}]",
                    1e-4,
                    suite="accuracy",
                    problem="quadratic",
                    n=1000,
                    method=method,
                    dtype=dtype,
                    rel_error=err,
                    reference="analytic",
                    **common,
                )
            )
    for dtype, eps in (("float32", 1.2e-7), ("float64", 2.2e-16)):
        for order in (2, 4):
            for k in range(1, 15):
                h = 10.0**-k
                err = min(1.0, 0.5 * h**order + eps / h)
                out.append(
                    _record(
                        f"test_vcurve[exp-central-{order}-{dtype}-{h:.0e}]",
                        2e-5,
                        suite="vcurve",
                        problem="exp",
                        method=f"fd-central{'' if order == 2 else order}",
                        dtype=dtype,
                        scheme="central",
                        order=order,
                        h=h,
                        abs_error=err * math.e,
                        rel_error=err,
                        **common,
                    )
                )
            best = eps ** (1 / (order + 1))
            out.append(
                _record(
                    f"test_vcurve[exp-central-{order}-{dtype}-auto]",
                    2e-5,
                    suite="vcurve",
                    problem="exp",
                    dtype=dtype,
                    scheme="central",
                    order=order,
                    h="auto",
                    abs_error=2 * eps / best,
                    rel_error=2 * eps / best * 1.0001,
                    **common,
                )
            )
    descent = {
        "tutorial-loop": 4e-6,
        "python-loop-jit-step": 2e-5,
        "fori-bare": 2e-8,
        "calcjax-ad": 3e-8,
        "calcjax-fd": 5e-8,
    }
    for method, per_step in descent.items():
        for steps in (10, 10_000):
            if method == "tutorial-loop" and steps == 10_000 and gpu:
                continue
            extra = {
                "suite": "descent",
                "problem": "square",
                "n": 1,
                "method": method,
                "dtype": "float64",
                "steps": steps,
                "final_loss": 25 * 0.64**steps if steps == 10 else 0.0,
                **common,
                "compile_s": 0.1,
            }
            if method == "calcjax-ad" and steps == 10:
                extra[LOSSES_FIELD] = [25 * 0.64**i for i in range(11)]
            out.append(_record(f"test_descent[{method}-{steps}]", per_step * steps * speed, **extra))
    for devices in (1, 2, 4):
        out.append(
            _record(
                f"test_sharding[quadratic-10000-{devices}]",
                0.2 / devices**0.5 * speed,
                suite="sharding",
                problem="quadratic",
                n=10_000,
                method="fd-central",
                dtype="float64",
                devices=devices,
                **{**common, "device_count": devices},
            )
        )
    for case, method, est, true in (
        ("x**2 at 3", "fd-richardson", 1e-13, 2e-14),
        ("exp(10x) at 1", "fd-richardson", 1e-9, 4e-9),
        ("x**2 at 3", "numdifftools", 1e-15, 2.5e-14),
    ):
        out.append(
            _record(
                f"test_estimate[{case}-{method}]",
                1e-4,
                suite="estimate",
                case=case,
                method=method,
                dtype="float64",
                estimate=est,
                true_error=true,
                **common,
            )
        )
    out.append(
        _record(
            "test_derivative[square-central-2]",
            4e-6,
            suite="derivative",
            problem="square",
            method="fd-central",
        )
    )
    out[-1]["extra_info"].update(dtype="float64", scheme="central", order=2, rel_error=1e-11, **common)
    # Someone else's benchmark in the same file: no calcjax extra_info, left out of the tables.
    out.append(_record("test_unrelated", 1e-3))
    out[-1]["extra_info"] = {}
    return {
        "machine_info": {
            "node": "build-host",
            "processor": "x86_64",
            "machine": "x86_64",
            "python_version": "3.11.7",
            "python_build": ["main", "May  9 2026"],
            "system": "Linux",
            "cpu": {"brand_raw": "AMD EPYC 7B13", "count": 2, "arch": "X86_64"},
            # What calcjax's bench plugin adds through pytest_benchmark_update_machine_info:
            "calcjax_version": "0.1.0",
            "jax_version": "0.10.2",
            "jaxlib_version": "0.10.2",
            "backend": device,
            "device": f"{device}:0",
            "device_kind": kind,
            "device_count": 1,
            "forced_host_devices": None,
            "x64": True,
            "cpu_model": "AMD EPYC 7B13",
            "cpu_cores": 2,
            "python": "3.11.7",
            "profile": "default",
            "dtypes": "float32,float64",
        },
        "commit_info": {"id": "dc2c17b", "dirty": False, "project": "calcjax", "branch": "main"},
        "benchmarks": out,
        "datetime": date,
        "version": "5.3.1",
    }


def write_run(results: Path, run_id: str, raw: dict | str) -> Path:
    run_dir = results / run_id
    run_dir.mkdir(parents=True)
    (run_dir / RAW_NAME).write_text(raw if isinstance(raw, str) else json.dumps(raw, indent=1))
    return run_dir


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
