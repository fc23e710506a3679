"""The benchmark suite's machinery, importable: a pytest plugin and what it is made of.

- :mod:`~calcjax._bench.options`: the options, shared by ``pytest bench`` and ``calcjax bench``;
- :mod:`~calcjax._bench.profiles`: what each profile runs;
- :mod:`~calcjax._bench.plugin`: the pytest hooks (loaded by the root ``conftest.py``);
- :mod:`~calcjax._bench.cases`: each benchmark's cases and the run order;
- :mod:`~calcjax._bench.measure`: compile apart, warm up, peak memory, error;
- :mod:`~calcjax._bench.budget`: what a case may cost, and the calibrated cost model;
- :mod:`~calcjax._bench.harness`: the ``bench`` fixture's helper (instances, cases, timing, records);
- :mod:`~calcjax._bench.runlog`: what a run tells as it goes (records streamed, progress, skip summary);
- :mod:`~calcjax._bench.tolerances`: the one tolerance table (the tests' and the test profile's bounds).

The benchmarks themselves are ``bench/`` in the source tree.
"""
