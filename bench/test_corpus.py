"""The ``corpus`` suite: calcjax against numdifftools and scipy on the peers' own test cases.

Each benchmark is one method on one case of :mod:`calcjax._corpus` (float64): the
relative error against the case's analytic derivative, the method's own error
estimate (relative; NaN where it gives none) and its f-evaluations per coordinate.
The timed call is the method called as a user calls it (eager; calcjax's include
tracing), one round: the error is the point. Outside ``--full`` only the cases of
:data:`calcjax._bench.cases.CORPUS_QUICK` run.
"""

from __future__ import annotations

import importlib.util
import time
import warnings

import numpy as np
import pytest

from calcjax import _corpus

_BY_NAME = {c.name: c for c in _corpus.CASES}
_NEEDS = {"numdifftools": "numdifftools", "scipy": "scipy"}


@pytest.mark.bench_cases("corpus")
def test_corpus(benchmark, bench, case, method):
    if "float64" not in bench.settings.dtypes:
        pytest.skip("the corpus runs in float64, which --dtypes leaves out")
    package = _NEEDS.get(method)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    c = _BY_NAME[case]

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DomainWarning at a domain edge, the peers' own warnings
            return _corpus.run_method(c, method)

    start = time.perf_counter()
    result = call()
    case_ = bench.Case(call, result, time.perf_counter() - start, 0.0, None, None)
    bench.measure(benchmark, case_, rounds=1)
    exact = c.exact_value()
    scale = max(float(np.max(np.abs(exact))), c.floor, float(np.finfo(np.float64).tiny))
    bench.record(
        benchmark,
        suite="corpus",
        group="corpus",
        problem=case,
        case=case,
        n=int(np.size(exact)),
        method=method,
        dtype="float64",
        f_evals=int(result.nfev),
        rel_error=_corpus.relative_error(result.value, exact, c.floor),
        estimate=result.estimate / scale,
        reference="analytic",
        source=c.source,
        hard=bool(c.hard),
        **bench.case_fields(case_),
    )
