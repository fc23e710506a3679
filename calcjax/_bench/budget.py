"""The benchmark suite's budget: what a case may cost in time and memory, and the cost model that
predicts it, calibrated by the cases already run."""

from __future__ import annotations

import os
from typing import Any

import pytest

from calcjax._fmt import fmt_bytes, fmt_time
from calcjax._methods import METHODS

__all__ = ["Budget", "cost_evals", "memory_bytes"]

#: Fixed cost of one call (dispatch), in the cost model that predicts a case's time.
CALL_OVERHEAD_S = 50e-6
#: A warm-up at least this long calibrates the cost model for larger n of the same case.
CALIBRATE_MIN_S = 5e-3

#: Share of the device's memory a case may be predicted to use.
MEMORY_SHARE = {"cpu": 0.25, "gpu": 0.5, "tpu": 0.5}


def cost_evals(name: str, n: int) -> int:
    """f-evaluations one gradient costs, for predicting its time (not a record field).

    The registry gives AD 0 f-evaluations; forward mode is ``n`` JVPs, each about
    one f-evaluation, so it is predicted as ``n``; reverse mode as a few.
    """
    if name == "ad-forward":
        return n
    if name == "ad-reverse":
        return 3
    return METHODS[name].evals(n)


def memory_bytes(name: str, n: int, itemsize: int) -> int:
    """Predicted bytes of a gradient's working set (data apart)."""
    method = METHODS[name]
    if method.memory is not None:
        return int(method.memory(n, itemsize))
    if name == "ad-forward":  # jax.jacfwd pushes all n tangents at once: an n x n basis
        return n * n * itemsize
    return 4 * n * itemsize


def more_time_hint(profile: str) -> str:
    """What lets a skipped case run: ``--full`` is no advice when the profile is ``full`` already."""
    return "(--max-call-s allows more)" if profile == "full" else "(--max-call-s or --full allows more)"


class Budget:
    """The profile's time limit and the device's memory share, and the calibrated cost model."""

    def __init__(self, profile: Any, device: Any) -> None:
        self.profile = profile
        self.device = device
        self.memory = self._memory()
        #: (problem, method) -> measured time / cost model, from its latest (largest) n so far.
        self._calibration: dict[tuple[str, str], float] = {}

    def _memory(self) -> int:
        share = MEMORY_SHARE.get(self.device.platform, 0.5)
        if self.device.platform != "cpu":
            stats = self.device.memory_stats() or {}
            if stats.get("bytes_limit"):
                return int(share * stats["bytes_limit"])
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            total = 8 * 2**30
        return int(share * total)

    def check(
        self, what: str, *, seconds: float = 0.0, nbytes: float = 0.0, max_s: float | None = None
    ) -> None:
        """Skip (with the reason) what the profile's time or the device's memory cannot afford."""
        if nbytes > self.memory:
            pytest.skip(
                f"{what}: predicted memory {fmt_bytes(nbytes)} > budget {fmt_bytes(self.memory)} "
                f"({MEMORY_SHARE.get(self.device.platform, 0.5):.0%} of the {self.device.platform}'s memory)"
            )
        limit = self.profile.max_call_s if max_s is None else max_s
        if seconds > limit:
            pytest.skip(
                f"{what}: predicted {fmt_time(seconds)} per call > {fmt_time(limit)} allowed by the "
                f"{self.profile.name!r} profile {more_time_hint(self.profile.name)}"
            )

    def predict(self, problem: str, name: str, n: int, per_eval: float) -> tuple[float, float]:
        """Seconds of one gradient call: (the cost model's, the model's calibrated by earlier cases)."""
        model_s = CALL_OVERHEAD_S + cost_evals(name, n) * per_eval
        return model_s, model_s * self._calibration.get((problem, name), 1.0)

    def calibrate(self, problem: str, name: str, warm_s: float, model_s: float) -> None:
        """A warm-up long enough says how far off the cost model is, for this case's larger n."""
        if warm_s >= CALIBRATE_MIN_S:
            self._calibration[(problem, name)] = max(1.0, warm_s / model_s)
