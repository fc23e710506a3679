"""The worker process of ``calcjax ab``: one code version's benchmarks, timed one round on request.

``calcjax ab`` starts this file as a script, once per version, with ``PYTHONPATH``
pointing at that version's source tree: every ``calcjax`` import below is that
version's, not the driver's. It speaks JSON lines on its standard output (what
the measured code prints goes to standard error) and reads requests on its
standard input:

- ``{"op": "setup", "cases": [[problem, n, dtype, method], ...], "slowdown": {method:
  factor}, "clock": "auto" | "wall" | "cpu"}``: build and compile every case apart, warm each
  one up; answers ``{"ok": true, "warm_s":
  [...], "skipped": {index: reason}, "root": ..., "clock": the clock used}``.
- ``{"op": "time", "case": i, "calls": k}``: one round, ``k`` calls back to back;
  answers ``{"ok": true, "seconds": time of one call}``.
- ``{"op": "quit"}``.

The slowdown test hook (:func:`calcjax._gate.slowed`) applies to the methods the
setup request names: ``calcjax ab`` reads :data:`calcjax._gate.ENV_SLOWDOWN` and
sends it to the B side only.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # the script's folder is the driver's calcjax/_commands, not a package root


#: The clocks a worker can time with: wall time, or the CPU time of the whole process (all threads).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _clock(name: str) -> str:
    """``auto``: CPU time where JAX computes on the CPU (a busy machine's waits for a core are not
    the code's time), wall time on an accelerator (its work is not this process's CPU time)."""
    if name != "auto":
        return name
    import jax

    return "cpu" if jax.default_backend() == "cpu" else "wall"


def _build(
    cases: list[list], slowdown: dict[str, float], clock=time.perf_counter
) -> tuple[list, list[float], dict[int, str]]:
    import functools

    import jax
    import numpy as np

    if any(str(c[2]) == "float64" for c in cases):
        jax.config.update("jax_enable_x64", True)
    import calcjax
    from calcjax._bench.measure import compiled_case, flat_np, numpy_case

    calls, warm, skipped = [], [], {}
    for i, (problem, n, dtype, name) in enumerate(cases):
        call, seconds = None, float("nan")
        method, spec = calcjax.METHODS.get(name), calcjax.PROBLEMS.get(problem)
        reason = (
            f"no method {name!r} in this version"
            if method is None
            else f"no problem {problem!r} in this version"
            if spec is None
            else method.unavailable()
        )
        if not reason and method.max_n is not None and n > method.max_n:
            reason = f"{name} runs only up to n={method.max_n}"
        if reason:
            skipped[i] = reason
        else:
            inst = spec.instance(max(int(n), spec.min_n) if spec.scalable else None, dtype)
            if method.traceable:
                fn = lambda x, data, m=method, inst=inst: m.fn(functools.partial(inst.f_data, data=data), x)
                case = compiled_case(fn, inst.x0, inst.data)
            else:
                case = numpy_case(method.fn, inst.f_np, inst.x0_np)
            if not np.all(np.isfinite(flat_np(case.result))):
                raise RuntimeError(f"{name} on {problem} n={n} {dtype} gives a non-finite gradient")
            call, seconds = case.call, case.warm_s
            if name in slowdown:
                from calcjax._gate import slowed  # the hook of the version measured here

                call = slowed(call, slowdown[name], clock=clock)
                call()
        calls.append(call)
        warm.append(seconds)
    return calls, warm, skipped


def _round(call, calls: int, clock=time.perf_counter) -> float:
    """One round: ``calls`` calls back to back, garbage collection off; the time of one call."""
    was = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        for _ in range(calls):
            call()
        return (clock() - start) / calls
    finally:
        if was:
            gc.enable()


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the measured code prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    calls: list = []
    clock = "wall"

    def answer(**fields) -> None:
        proto.write(json.dumps(fields) + "\n")

    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "setup":
                slowdown = {str(k): float(v) for k, v in req.get("slowdown", {}).items()}
                clock = _clock(req.get("clock", "wall"))
                calls, warm, skipped = _build(req["cases"], slowdown, CLOCKS[clock])
                import calcjax

                root = str(Path(calcjax.__file__).resolve().parent.parent)
                answer(ok=True, warm_s=warm, skipped=skipped, root=root, slowdown=slowdown, clock=clock)
            elif req["op"] == "time":
                answer(ok=True, seconds=_round(calls[req["case"]], int(req["calls"]), CLOCKS[clock]))
            elif req["op"] == "quit":
                answer(ok=True)
                return 0
            else:
                answer(ok=False, error=f"unknown request {req['op']!r}")
        except Exception as err:  # reported to the driver, which stops
            answer(ok=False, error=f"{type(err).__name__}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
