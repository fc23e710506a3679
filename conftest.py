"""Shared pytest set-up for tests/, bench/ and the doctests in calcjax/.

x64 is switched on once, at start-up, before any test runs: float32 and float64
then both run in one process, every input cast explicitly. The benchmark
suite's options, profiles and hooks are the plugin :mod:`calcjax._bench.plugin`.
"""

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import calcjax  # noqa: E402

pytest_plugins = ["calcjax._bench.plugin"]


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["calcjax"] = calcjax
    doctest_namespace["jax"] = jax
