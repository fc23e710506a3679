"""The ``gradcheck`` suite: calcjax.check_gradient beside jax.test_util.check_grads.

On :mod:`calcjax._gradcheck_corpus` (planted gradient bugs and correct gradients,
per dtype), each benchmark is one tool on one kind of case: the detection rate
(bugs at least 10x the FD error estimate) or the false-failure rate (correct
gradients), and the f-evaluations per check. The rows come from
:func:`calcjax._gradcheck_corpus.table_rows`, computed once per dtype; the timed
call is the tool checking the first correct gradient, one round. Only ``--full``
runs it (the profile's ``gradcheck_count`` and ``gradcheck_bug_limit``: 200
correct gradients and every bug kind per dtype, minutes; every check compiles).
``torch.autograd.gradcheck`` is not a dependency and is not run.
"""

from __future__ import annotations

import time
import warnings

import pytest

from calcjax import _gradcheck_corpus as gc

_RUNNERS = {"calcjax": gc.run_calcjax, "check_grads": gc.run_check_grads}


def _rows(bench, dtype):
    p = bench.profile

    def make():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # check_grads' and the planted bugs' own warnings
            return gc.table_rows([dtype], count=p.gradcheck_count, bug_limit=p.gradcheck_bug_limit)

    return bench.memo(("gradcheck", dtype, p.gradcheck_count, p.gradcheck_bug_limit), make)


@pytest.mark.bench_cases("gradcheck")
def test_gradcheck(benchmark, bench, dtype, kind, tool):
    rows = _rows(bench, dtype)
    row = next(r for r in rows if r["tool"] == tool and r["kind"] == kind)
    first = gc.correct_cases(dtype, 1)[0]
    run = _RUNNERS[tool]

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run(first)

    start = time.perf_counter()
    result = call()
    case = bench.Case(call, result, time.perf_counter() - start, 0.0, None, None)
    bench.measure(benchmark, case, rounds=1)
    bench.record(
        benchmark,
        suite="gradcheck",
        group=f"gradcheck {dtype}",
        problem=kind,
        n=row["cases"],
        method=tool,
        dtype=dtype,
        f_evals=round(row["f_evals_per_check"]),
        reference="planted bugs / jax.grad" if kind == "bug" else "jax.grad",
        kind=kind,
        cases=row["cases"],
        resolvable=row.get("resolvable"),
        detected=row.get("detected"),
        culprit_named=row.get("culprit_named"),
        false_failures=row.get("false_failures"),
        rate=row["rate"],
        f_evals_per_check=row["f_evals_per_check"],
        f_evals_locate=row.get("f_evals_locate"),
        **bench.case_fields(case),
    )
