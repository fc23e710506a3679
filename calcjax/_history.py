"""History across runs: each benchmark's time, run after run, with step changes marked.

Runs are only comparable on the same machine, device and profile, so the
history is grouped by :data:`GROUP` and ordered by the run's date. Between two
consecutive runs of a group a benchmark's step is judged by the regression gate
(:func:`calcjax._gate.compare_rounds`) where both runs kept enough rounds, and
by its ratio alone otherwise, against :data:`RATIO_ONLY_FACTOR` (a ratio without
rounds cannot tell a change from a noisy machine, so it needs a larger step).

:func:`history_frame` flattens loaded runs into the tidy input; :func:`history`
gives the output table. Which benchmarks count as headline is the caller's
choice: filter the input frame first.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({
    ...     "run_id": ["r1", "r2"], "datetime": ["2026-11-26T10:00:00+00:00", "2026-11-27T10:00:00+00:00"],
    ...     "machine": "m", "device": "cpu", "profile": "default", "commit": ["a" * 40, "b" * 40],
    ...     "suite": "gradient", "method": "fd", "time": [1.0, 2.0]})
    >>> history(frame, key=("suite", "method"))[["run_id", "ratio", "step", "basis"]].values.tolist()
    [['r1', nan, 'first', ''], ['r2', 2.0, 'slower', 'ratio only']]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from calcjax import _gate, _provenance

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GROUP", "RATIO_ONLY_FACTOR", "device_label", "history", "history_frame", "machine_label"]

#: Runs are compared only within one machine, device and profile.
GROUP = ("machine", "device", "profile")
#: Ratio of times beyond which a step without rounds is marked (a judgement by eye, flagged as such).
RATIO_ONLY_FACTOR = 1.5


def machine_label(machine_info: dict[str, Any]) -> str:
    """The machine a run ran on, as history groups it: CPU model and core count.

    Example:
        >>> machine_label({"cpu_model": "AMD EPYC", "cpu_cores": 2})
        'AMD EPYC ×2'
    """
    cpu = machine_info.get("cpu") if isinstance(machine_info.get("cpu"), dict) else {}
    model = machine_info.get("cpu_model") or cpu.get("brand_raw") or "unknown CPU"
    cores = machine_info.get("cpu_cores") or cpu.get("count")
    return f"{model} ×{cores}" if cores else str(model)


def device_label(machine_info: dict[str, Any]) -> str:
    """The device a run timed on: kind and count.

    Example:
        >>> device_label({"device_kind": "NVIDIA H100 80GB HBM3", "device_count": 1})
        'NVIDIA H100 80GB HBM3 ×1'
    """
    kind = machine_info.get("device_kind") or machine_info.get("backend") or "unknown device"
    count = machine_info.get("device_count")
    return f"{kind} ×{count}" if count not in (None, "") else str(kind)


def history_frame(runs: Iterable[Any], *, key: Sequence[str] = _gate.KEY) -> pd.DataFrame:
    """One row per record of every run, with what history needs.

    Args:
      runs: loaded runs, each with ``run_id``, ``raw`` (pytest-benchmark's JSON) and
        ``records`` (flat dicts with the ``key`` fields, ``time`` and ``stats``), like
        the report's ``Run``; ``machine`` (a dict) is used when the run has it.
      key: the fields that identify a benchmark.

    Returns:
      Columns ``run_id``, ``datetime``, ``machine``, ``device``, ``profile``, ``commit``,
      ``source_hash``, the ``key`` fields, ``time`` (median seconds), ``rounds`` (how
      many) and ``rounds_s`` (the per-round times as a tuple, ``None`` when not kept).
    """
    import pandas as pd

    rows = []
    for run in runs:
        raw = run.raw
        info = dict(getattr(run, "machine", None) or raw.get("machine_info") or {})
        prov = _provenance.read(raw)
        common = {
            "run_id": run.run_id,
            "datetime": raw.get("datetime"),
            "machine": machine_label(info),
            "device": device_label(info),
            "profile": info.get("profile") or "unknown",
            "commit": prov.commit,
            "source_hash": prov.source_hash,
        }
        for r in run.records:
            data, median, count = _gate.rounds_of(r)
            rows.append(
                {
                    **common,
                    **{k: r.get(k) for k in key},
                    "time": median,
                    "rounds": count,
                    "rounds_s": tuple(data) if data is not None else None,
                }
            )
    columns = ["run_id", "datetime", "machine", "device", "profile", "commit", "source_hash", *key]
    return pd.DataFrame.from_records(rows, columns=[*columns, "time", "rounds", "rounds_s"])


def history(
    frame: pd.DataFrame,
    *,
    key: Sequence[str] = _gate.KEY,
    factor: float = _gate.FACTOR,
    alpha: float = _gate.ALPHA,
    ratio_only_factor: float = RATIO_ONLY_FACTOR,
) -> pd.DataFrame:
    """Each benchmark's time across runs, per machine, device and profile, in time order.

    Args:
      frame: rows like :func:`history_frame`'s (``rounds_s`` may be missing; ``key``
        fields missing from it count as empty).
      key: fields that identify a benchmark.
      factor, alpha: the gate's rule for steps where both runs kept rounds.
      ratio_only_factor: the ratio beyond which a step without rounds is marked.

    Returns:
      One row per (group, benchmark, run) in time order, with the :data:`GROUP` and
      ``key`` columns, ``run_id``, ``datetime``, ``commit``, ``time``, ``rounds``,
      ``ratio`` (this run's time ÷ the previous run's), ``p_value``, ``step``
      (``"first"``, ``"same"``, ``"slower"`` or ``"faster"``) and ``basis``
      (``"test"``: the gate judged it; ``"ratio only"``; ``""`` for the first run).

    Raises:
      ValueError: a required column is missing, or a factor is not a finite number above 1.
    """
    import pandas as pd

    for name, value in (("factor", factor), ("ratio_only_factor", ratio_only_factor)):
        if not (math.isfinite(value) and value > 1):
            raise ValueError(f"{name} must be a finite number above 1, got {value!r}")
    missing = [c for c in ("run_id", "datetime", *GROUP, "commit", "time") if c not in frame.columns]
    if missing:
        raise ValueError(f"history needs columns {missing} (see history_frame)")
    df = frame.copy()
    for k in key:
        if k not in df.columns:
            df[k] = None
    if "rounds_s" not in df.columns:
        df["rounds_s"] = None
    df["_when"] = pd.to_datetime(df["datetime"], utc=True, errors="coerce", format="ISO8601")
    df = df.sort_values(["_when", "run_id"], kind="stable", na_position="first")
    group_cols = [*GROUP, *key]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in df.to_dict("records"):
        runs = groups.setdefault(tuple(_gate._key_value(rec[c]) for c in group_cols), [])
        if all(r["run_id"] != rec["run_id"] for r in runs):  # a run's first record of a benchmark
            runs.append(rec)
    rows = []
    for records in groups.values():
        prev = None
        for rec in records:
            rounds = _rounds(rec)
            row = {
                **{c: rec[c] for c in group_cols},
                "run_id": rec["run_id"],
                "datetime": rec["datetime"],
                "commit": rec["commit"],
                "time": float(rec["time"]),
                "rounds": _count(rec, rounds),
                "ratio": math.nan,
                "p_value": math.nan,
                "step": "first",
                "basis": "",
            }
            if prev is not None:
                row.update(_step(prev, rec, rounds, factor, alpha, ratio_only_factor))
            rows.append(row)
            prev = (rec, rounds)
    columns = [
        *group_cols,
        "run_id",
        "datetime",
        "commit",
        "time",
        "rounds",
        "ratio",
        "p_value",
        "step",
        "basis",
    ]
    return pd.DataFrame.from_records(rows, columns=columns)


def _count(rec: dict[str, Any], rounds: np.ndarray | None) -> int:
    count = rec.get("rounds")
    if count is not None and not (isinstance(count, float) and math.isnan(count)):
        return int(count)
    return len(rounds) if rounds is not None else 1


def _rounds(rec: dict[str, Any]) -> np.ndarray | None:
    data = rec.get("rounds_s")
    if data is None or (isinstance(data, float) and math.isnan(data)) or len(data) == 0:
        return None
    return np.asarray(data, dtype=np.float64)


def _step(
    prev: tuple[dict[str, Any], np.ndarray | None],
    rec: dict[str, Any],
    rounds: np.ndarray | None,
    factor: float,
    alpha: float,
    ratio_only_factor: float,
) -> dict[str, Any]:
    before, before_rounds = prev
    t0, t1 = float(before["time"]), float(rec["time"])
    if before_rounds is not None and rounds is not None:
        v = _gate.compare_rounds(before_rounds, rounds, factor=factor, alpha=alpha, median_a=t0, median_b=t1)
        if v.verdict != _gate.NO_STATISTICS:
            return {"ratio": v.ratio, "p_value": v.p_value, "step": v.verdict, "basis": "test"}
    ratio = t1 / t0
    step = "slower" if ratio > ratio_only_factor else "faster" if ratio < 1 / ratio_only_factor else "same"
    return {"ratio": ratio, "p_value": math.nan, "step": step, "basis": "ratio only"}
