"""The ``bench`` fixture's helper: problem instances, cases under a time and memory budget, records.

What the profile cannot afford (predicted time of one call over its
``max_call_s``), what does not fit (predicted memory over the device budget)
and what the registry rules out (missing package, ``max_n``) is skipped with
the reason. ``benchmark.extra_info`` of every record holds
:data:`calcjax._schema.BASE_FIELDS`.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from calcjax._bench.budget import Budget, memory_bytes, more_time_hint
from calcjax._bench.cases import FUNCTIONS, STENCILS
from calcjax._bench.measure import (
    Case,
    compiled_case,
    flat_np,
    numpy_case,
    rel_error,
    traced_peak,
    xla_peak_bytes,
)
from calcjax._bench.tolerances import Tolerances
from calcjax._complex_safety import complex_step_culprits
from calcjax._devices import device_info
from calcjax._methods import METHODS
from calcjax._problems import PROBLEMS
from calcjax._schema import BASE_FIELDS

__all__ = ["Bench"]

#: Bytes of points in one ``feval`` batch (at least 16 points, at most the max), per platform:
#: a CPU is at full speed with a few MiB, an accelerator needs far more work to fill it.
FEVAL_BATCH_BYTES = {"cpu": 16 * 2**20, "gpu": 256 * 2**20, "tpu": 256 * 2**20}
#: A case whose warm-up call takes more than this many times the profile's per-call limit is skipped.
WARM_SLACK = 3.0
#: The one tolerance table (the unit tests' ``tol`` fixture), for the test profile's checks.
TOLERANCES = Tolerances()
FEVAL_BATCH_MAX = {"cpu": 4096, "gpu": 65536, "tpu": 65536}


class Bench:
    """Session-wide helper behind the ``bench`` fixture: instances, cases, timing, records."""

    def __init__(self, config: pytest.Config) -> None:
        s = config.calcjax_bench
        self.settings = s
        self.profile = s.profile
        self.device = s.device
        self.info = device_info(s.device)
        self.budget = Budget(s.profile, s.device)
        self._instances: OrderedDict[tuple, Any] = OrderedDict()
        self._cases: dict[tuple, Case] = {}
        self._feval: dict[tuple, tuple[Case, int]] = {}
        self._np_time: dict[tuple, float] = {}
        self._memo: dict[tuple, Any] = {}
        self._primed: set[tuple] = set()
        self.functions = FUNCTIONS
        self.stencils = {f"{sc}{o}": (sc, o) for sc, o in STENCILS}  # "central2" -> ("central", 2)

    def check_budget(
        self, what: str, *, seconds: float = 0.0, nbytes: float = 0.0, max_s: float | None = None
    ) -> None:
        """Skip (with the reason) what the profile's time or the device's memory cannot afford."""
        self.budget.check(what, seconds=seconds, nbytes=nbytes, max_s=max_s)

    # ----------------------------------------------------------------- problems

    def instance(self, problem: str, n: int, dtype: str):
        """The problem at (at least) ``n`` parameters, on the device; the last few are kept."""
        p = PROBLEMS[problem]
        size = max(n, p.min_n) if p.scalable else None
        key = (problem, size, dtype)
        if key in self._instances:
            self._instances.move_to_end(key)
            return self._instances[key]
        itemsize = jnp.dtype(dtype).itemsize
        if p.scalable:
            self.check_budget(f"{problem} data at n={n}", nbytes=p.data_bytes(size) * itemsize / 8)
        inst = p.instance(size, dtype)
        self._instances[key] = inst
        while len(self._instances) > 4:
            self._instances.popitem(last=False)
        return inst

    def memo(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` for the session (e.g. one compiled function for many steps h)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def numpy_f_time(self, problem: str, n: int, dtype: str) -> float:
        """Seconds of one call of the problem's NumPy twin (the median of a few back-to-back calls:
        the best one hides BLAS threads that spin between calls on a busy machine)."""
        key = (problem, n, dtype)
        if key not in self._np_time:
            inst = self.instance(problem, n, dtype)
            times: list[float] = []
            while len(times) < 5 and sum(times) < 0.2:
                start = time.perf_counter()
                inst.f_np(inst.x0_np)
                times.append(time.perf_counter() - start)
            self._np_time[key] = float(np.median(times))
        return self._np_time[key]

    def feval_case(self, problem: str, n: int, dtype: str) -> tuple[Case, int]:
        """``vmap(f)`` over a large batch of distinct points: (case, batch size)."""
        key = (problem, n, dtype)
        if key not in self._feval:
            inst = self.instance(problem, n, dtype)
            itemsize = jnp.dtype(dtype).itemsize
            platform = self.device.platform if self.device.platform in FEVAL_BATCH_BYTES else "gpu"
            batch = FEVAL_BATCH_BYTES[platform] // (inst.n * itemsize)
            batch = int(np.clip(batch, 16, FEVAL_BATCH_MAX[platform]))
            self.check_budget(f"{problem} f batch at n={n}", nbytes=2 * batch * inst.n * itemsize)
            scale = 1.0 + 1e-3 * np.linspace(0.0, 1.0, batch)

            def spread(a: jax.Array) -> jax.Array:
                s = jnp.asarray(scale, a.dtype).reshape((batch,) + (1,) * a.ndim)
                return a[None] * s

            points = jax.tree_util.tree_map(spread, inst.x0)
            fn = lambda pts, data: jax.vmap(inst.f_data, in_axes=(0, None))(pts, data)
            self._feval[key] = (compiled_case(fn, points, inst.data), batch)
        return self._feval[key]

    def f_eval_time(self, problem: str, n: int, dtype: str) -> float:
        """Seconds per f-evaluation inside a large batch (from the warm-up of :meth:`feval_case`)."""
        case, batch = self.feval_case(problem, n, dtype)
        return case.warm_s / batch

    # ----------------------------------------------------------------- gradients

    def gradient_case(self, problem: str, name: str, n: int, dtype: str, *, max_s: float | None = None):
        """A registry method's gradient of the problem at ``n``: (case, instance); cached at accuracy n.

        Skips what the registry rules out (``unavailable()``, ``max_n``) and what
        the predicted time or memory rules out.
        """
        method = METHODS[name]
        reason = method.unavailable()
        if reason:
            pytest.skip(reason)
        if method.max_n is not None and n > method.max_n:
            pytest.skip(f"{name} runs only up to n={method.max_n} (registry max_n)")
        key = (problem, name, n, dtype)
        if key in self._cases:
            return self._cases[key], self.instance(problem, n, dtype)
        inst = self.instance(problem, n, dtype)
        if method.scheme == "complex":
            # fd-complex shares products (complex_step_gradient's default) and refuses what that
            # leaves unsafe here (a batched complex matrix product on a GPU): say so, as a skip.
            culprits = complex_step_culprits(inst.f, inst.x0, shared_products=True)
            if culprits:
                pytest.skip(f"{name} on {problem}: not complex-step safe here ({'; '.join(culprits)})")
        itemsize = jnp.dtype(dtype).itemsize
        if method.traceable:
            per_eval = self.f_eval_time(problem, n, dtype)
        else:
            per_eval = self.numpy_f_time(problem, n, dtype)
        model_s, predicted = self.budget.predict(problem, name, inst.n, per_eval)
        limit = self.profile.max_call_s if max_s is None else max_s
        if name in self.profile.long_methods:
            limit = max(limit, self.profile.long_call_s)
        self.check_budget(
            f"{name} on {problem} n={n}",
            seconds=predicted,
            nbytes=memory_bytes(name, inst.n, itemsize),
            max_s=limit,
        )
        if method.traceable:
            fn = lambda x, data: method.fn(functools.partial(inst.f_data, data=data), x)
            case = compiled_case(fn, inst.x0, inst.data, expected_s=predicted)
        else:
            self._prime(name, dtype)
            case = numpy_case(method.fn, inst.f_np, inst.x0_np, expected_s=predicted)
        if case.result is not None:
            self.budget.calibrate(problem, name, case.warm_s, model_s)
        if case.warm_s > WARM_SLACK * limit:
            # The warm-up says what the prediction missed (a busy machine, a cold cache): the
            # timed rounds would cost many times the limit, so the case is skipped after all.
            pytest.skip(
                f"{name} on {problem} n={n}: warm-up took {case.warm_s:.3g} s per call, over "
                f"{WARM_SLACK:g}x the {limit:.3g} s allowed by the {self.profile.name!r} profile "
                f"{more_time_hint(self.profile.name)}"
            )
        if n == self.profile.accuracy_n:
            self._cases[key] = case  # shared by the accuracy and gradient suites
        return case, inst

    def _prime(self, name: str, dtype: str) -> None:
        """Run a NumPy method once on a tiny problem, so that its imports and one-off set-up
        are not counted in the peak memory ``tracemalloc`` sees."""
        if (name, dtype) not in self._primed:
            METHODS[name].fn(lambda w: float(np.sum(w * w)), np.ones(4, dtype))
            self._primed.add((name, dtype))

    # ----------------------------------------------------------------- timing and records

    def rounds_for(self, seconds: float, *, min_rounds: int = 1) -> int:
        by_time = int(min(self.profile.max_rounds, self.profile.target_s / max(seconds, 1e-9)))
        return max(1, min_rounds, by_time)

    def measure(
        self, benchmark: Any, case: Case, *, rounds: int | None = None, headline: bool = False
    ) -> Any:
        """Time ``case.call`` with pytest-benchmark (compiled and warmed up already); return the
        warm-up's result, or the timed call's when there was no warm-up.

        ``headline``: a headline timing (gradient, feval): at least the profile's ``min_rounds``.
        """
        if benchmark.disabled:  # run as a test: one call
            result = benchmark.pedantic(case.call)
        else:
            least = self.profile.min_rounds if headline else 1
            rounds = rounds or self.rounds_for(case.warm_s, min_rounds=least)
            result = benchmark.pedantic(case.call, rounds=rounds, iterations=1, warmup_rounds=0)
        return result if case.result is None else case.result

    def record(self, benchmark: Any, *, suite: str, group: str | None = None, **fields: Any) -> None:
        """Fill ``benchmark.extra_info``: the base fields (``None`` where not given), then the rest."""
        info = dict.fromkeys(BASE_FIELDS)
        info.update(self.info)
        info.update(suite=suite, **fields)
        for key, value in info.items():
            if isinstance(value, np.generic):
                info[key] = value.item()
        benchmark.extra_info.update(info)
        benchmark.group = group or suite
        if getattr(benchmark, "stats", None) is not None:  # measured already: its record keeps the group
            benchmark.stats.group = benchmark.group

    def check_error(self, err: float, method: Any, dtype: str, what: str) -> None:
        """In the test profile (``ci``), a method's error must be within its documented bound
        (:class:`~calcjax._bench.tolerances.Tolerances`): a wrong gradient fails the test."""
        if self.profile.name != "ci":
            return
        bound = TOLERANCES.method(method, dtype)
        assert err <= bound, (
            f"{what} ({dtype}): relative error {err:.3g} > its bound {bound:.3g} "
            f"(scheme {method.scheme}, order {method.order}; calcjax._bench.tolerances)"
        )

    def case_fields(self, case: Case) -> dict[str, Any]:
        return {"compile_s": case.compile_s, "peak_bytes": case.peak_bytes, "peak_source": case.peak_source}

    def record_gradient(
        self,
        benchmark: Any,
        *,
        suite: str,
        group: str,
        problem: str,
        n: int,
        inst: Any,
        method: str,
        dtype: str,
        result: Any,
        case: Case,
    ) -> None:
        """Score a registry method's gradient against the analytic reference and record it."""
        err = rel_error(result, inst.reference_gradient())
        assert np.isfinite(err), f"{method} gave a non-finite gradient on {problem} ({dtype})"
        m = METHODS[method]
        self.check_error(err, m, dtype, f"{method} on {problem} n={n}")
        self.record(
            benchmark,
            suite=suite,
            group=group,
            problem=problem,
            n=n,
            n_params=inst.n,
            method=method,
            family=m.family,
            scheme=m.scheme,
            order=m.order,
            dtype=dtype,
            f_evals=m.evals(inst.n),
            rel_error=err,
            reference="analytic",
            **self.case_fields(case),
        )

    # The module-level helpers, for the test modules.
    compiled_case = staticmethod(compiled_case)
    numpy_case = staticmethod(numpy_case)
    traced_peak = staticmethod(traced_peak)
    xla_peak_bytes = staticmethod(xla_peak_bytes)
    rel_error = staticmethod(rel_error)
    flat_np = staticmethod(flat_np)
    Case = Case
