"""Shared pytest set-up for tests/, bench/ and the doctests in calcjax/.

x64 is switched on once, at start-up, before any test runs: float32 and float64
then both run in one process, every input cast explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import calcjax  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["calcjax"] = calcjax
    doctest_namespace["jax"] = jax
