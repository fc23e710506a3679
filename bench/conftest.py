"""The benchmark suite. Its machinery is the pytest plugin :mod:`calcjax._bench.plugin` (loaded by
the root ``conftest.py``): options and profiles, the ``bench`` fixture
(:class:`calcjax._bench.harness.Bench`), each benchmark's cases (``@pytest.mark.bench_cases``)
and the run order. Every record's ``extra_info`` follows :mod:`calcjax._schema`.
"""
