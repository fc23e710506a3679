"""A real Dask cluster (``distributed.LocalCluster``, 2 worker processes): same numbers as serial.

Skipped without the ``dask`` extra. Few and short: a cluster takes seconds to start on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import calcjax

distributed = pytest.importorskip("distributed", reason="needs the dask extra: pip install calcjax[dask]")

sys.path.insert(0, str(Path(__file__).parent))  # workers import the helpers by name
import blackbox_helpers as bh  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_dask_cluster_equals_serial_bit_for_bit(client):
    x = np.linspace(-1.0, 1.0, 30)
    serial = calcjax.gradient(bh.issue_loss, x)
    on_dask = calcjax.gradient(bh.issue_loss, x, workers=client)
    assert on_dask.dtype == serial.dtype
    assert on_dask.tobytes() == serial.tobytes()
    assert np.linalg.norm(on_dask - bh.issue_loss_grad(x)) < 1e-9 * np.linalg.norm(bh.issue_loss_grad(x))


def test_dask_sends_closures_with_cloudpickle(client):
    scale = np.arange(1.0, 7.0)
    g = calcjax.gradient(lambda x: float(np.sum(scale * np.asarray(x) ** 2)), np.ones(6), workers=client)
    assert np.max(np.abs(g - 2 * scale)) < 1e-8


def test_an_exception_on_a_dask_worker_is_the_users_own(client):
    with pytest.raises(bh.SimulatorError, match="diverged") as info:
        calcjax.gradient(bh.fails_above, np.array([0.1, 0.2, 0.3, 0.5, 0.1]), workers=client)
    assert any("evaluation 7" in note for note in getattr(info.value, "__notes__", []))
