"""Shared fixtures of the unit tests: the dtypes and the one tolerance table.

x64 is already on (the root ``conftest.py`` switches it on at start-up), so
float32 and float64 run side by side; every input is cast explicitly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from calcjax._bench.tolerances import Tolerances
from calcjax._schema import DTYPES


@pytest.fixture(scope="session")
def tol() -> Tolerances:
    """The tolerance table."""
    return Tolerances()


@pytest.fixture(scope="session", params=DTYPES)
def dtype(request: pytest.FixtureRequest) -> str:
    """Each floating dtype in turn."""
    return request.param


def flat64(tree: Any) -> np.ndarray:
    """A pytree (or array) flattened to one float64 NumPy vector."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.asarray(ravel_pytree([jnp.asarray(t, jnp.float64) for t in leaves])[0])


@pytest.fixture(scope="session")
def flatten():
    """``flatten(tree) -> float64 vector``, to compare pytree gradients with flat references."""
    return flat64
