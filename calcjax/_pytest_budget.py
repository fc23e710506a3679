"""A pytest plugin: ``--time-budget SECONDS`` skips what is left once the budget is spent.

Benchmarks that ran keep their records and pytest-benchmark still writes its
JSON at the end, so a run on a machine lent for a fixed time always leaves
its results. Load it with ``-p calcjax._pytest_budget`` (``calcjax bench``
loads it itself).
"""

from __future__ import annotations

import time

import pytest

_START: list[float] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="skip the remaining tests once this many seconds have passed (results so far are kept)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    _START[:] = [time.monotonic()]


def pytest_runtest_setup(item: pytest.Item) -> None:
    budget = item.config.getoption("--time-budget")
    if budget is not None and _START and time.monotonic() - _START[0] > budget:
        pytest.skip(f"time budget of {budget:g} s used up")
