"""The tidy CSV: one row per record, every stat, every extra_info field, the machine facts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from calcjax._schema import (
    FIELDS,
)
from calcjax.report._load import Run

if TYPE_CHECKING:
    import pandas as pd

# benchmarks.csv column order: identity, extra_info (known fields first), stats, machine.
_EXTRA_ORDER = tuple(FIELDS)
_ID_COLUMNS = ("run_id", "name", "fullname", "group", "param")
_STATS_ORDER = (
    "min",
    "max",
    "mean",
    "stddev",
    "median",
    "iqr",
    "q1",
    "q3",
    "ld15iqr",
    "hd15iqr",
    "iqr_outliers",
    "stddev_outliers",
    "outliers",
    "ops",
    "total",
    "rounds",
    "iterations",
)
_STATS_SKIP = frozenset({"data"})  # every timing: large, and already summarised by the stats
_MACHINE_SKIP = frozenset({"node", "cpu", "python_build"})  # host name; big nested blocks


def tidy_frame(run: Run) -> pd.DataFrame:
    """One row per record: identity, every ``extra_info`` field, every stat, machine facts.

    Lists and dicts in ``extra_info`` (a loss history, say) become JSON strings;
    integer fields stay integers when some records lack them.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    extra_keys: set[str] = set()
    stat_keys: set[str] = set()
    machine = _machine_columns(run)
    reserved = set(_ID_COLUMNS) | set(_STATS_ORDER) | set(machine) | {"datetime", "commit"}
    for r in run.records:
        bench = run.raw["benchmarks"][r["_index"]]
        row: dict[str, Any] = {"run_id": run.run_id}
        for key in _ID_COLUMNS[1:]:
            row[key] = bench.get(key)
        for key, value in bench["extra_info"].items():
            col = f"extra_{key}" if key in reserved else key
            row[col] = json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
            extra_keys.add(col)
        for key, value in bench["stats"].items():
            if key not in _STATS_SKIP:
                row[key] = value
                stat_keys.add(key)
        row.update(machine)
        rows.append(row)
    columns = [
        *_ID_COLUMNS,
        *[k for k in _EXTRA_ORDER if k in extra_keys],
        *sorted(extra_keys - set(_EXTRA_ORDER)),
        *[k for k in _STATS_ORDER if k in stat_keys],
        *sorted(stat_keys - set(_STATS_ORDER)),
        *machine,
    ]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for col in columns:
        values = [row[col] for row in rows if row.get(col) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[col] = frame[col].astype("Int64")
    return frame


def _machine_columns(run: Run) -> dict[str, Any]:
    info = run.machine
    cols: dict[str, Any] = {}
    for key in sorted(info):
        value = info[key]
        if key not in _MACHINE_SKIP and (value is None or isinstance(value, str | int | float | bool)):
            cols[f"machine_{key}"] = value
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    cols["machine_cpu_brand"] = cpu.get("brand_raw")
    cols["machine_cpu_count"] = cpu.get("count")
    cols["datetime"] = run.raw.get("datetime")
    cols["commit"] = (run.raw.get("commit_info") or {}).get("id")
    return cols


def _csv_text(run: Run) -> str:
    return tidy_frame(run).to_csv(index=False, lineterminator="\n")
