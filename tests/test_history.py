"""History across runs: grouping, time order, steps judged by the gate or by the ratio alone."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from calcjax import _history as hist
from calcjax._gate import KEY, NO_STATISTICS

RESULTS = Path(__file__).resolve().parent.parent / "results"
BENCH = {"suite": "gradient", "problem": "quadratic", "method": "fd-central", "n": 100, "dtype": "float64"}


def rounds(seed: int, scale: float, k: int = 15) -> tuple[float, ...]:
    return tuple(1e-3 * scale * np.random.default_rng(seed).lognormal(0.0, 0.05, k))


def row(run_id: str, day: int, time_s: float, data=None, *, machine="m1", profile="default", **bench):
    return {
        "run_id": run_id,
        "datetime": f"2026-11-{day:02d}T10:00:00+00:00",
        "machine": machine,
        "device": "cpu ×4",
        "profile": profile,
        "commit": run_id * 8,
        "source_hash": None,
        **{**BENCH, **bench},
        "time": float(np.median(data)) if data else time_s,
        "rounds_s": data,
    }


def test_history_orders_by_date_and_marks_steps_by_the_gate():
    frame = pd.DataFrame(
        [
            row("run3", 3, 0, rounds(3, 1.3)),  # listed first, ran last
            row("run1", 1, 0, rounds(1, 1.0)),
            row("run2", 2, 0, rounds(2, 1.0)),
        ]
    )
    h = hist.history(frame)
    assert list(h["run_id"]) == ["run1", "run2", "run3"]
    assert list(h["step"]) == ["first", "same", "slower"]
    assert list(h["basis"]) == ["", "test", "test"]
    assert list(h["rounds"]) == [15, 15, 15]
    assert math.isnan(h.loc[0, "ratio"])
    assert h.loc[2, "ratio"] == pytest.approx(1.3, rel=0.05)
    assert h.loc[2, "p_value"] < 0.002
    assert list(h["commit"]) == ["run1" * 8, "run2" * 8, "run3" * 8]
    assert list(h.columns[: len(hist.GROUP)]) == list(hist.GROUP)


def test_steps_without_rounds_use_the_ratio_threshold():
    frame = pd.DataFrame(
        [
            row("a", 1, 1.0),
            row("b", 2, 1.4),  # within 1.5: same
            row("c", 3, 2.2),  # 1.57x: slower
            row("d", 4, 1.0, rounds(4, 1.0)),  # rounds on one side only: still ratio only
            row("e", 5, 0, rounds(5, 1.0, k=3)),  # both sides kept rounds, too few for the test
        ]
    )
    h = hist.history(frame)
    assert list(h["step"]) == ["first", "same", "slower", "faster", "same"]
    assert list(h["basis"]) == ["", "ratio only", "ratio only", "ratio only", "ratio only"]
    assert h["p_value"].isna().all()
    tight = hist.history(frame, ratio_only_factor=1.2)
    assert list(tight["step"]) == ["first", "slower", "slower", "faster", "same"]


def test_groups_do_not_mix_machines_profiles_or_benchmarks():
    frame = pd.DataFrame(
        [
            row("a", 1, 1.0),
            row("b", 2, 10.0, machine="m2"),  # another machine: its own first
            row("c", 3, 10.0, profile="quick"),  # another profile: its own first
            row("d", 4, 10.0, n=1000),  # another benchmark: its own first
            row("e", 5, 1.0),  # same as a: compared with a
            row("e", 5, 9.0),  # a second record of the same benchmark in run e: ignored
        ]
    )
    h = hist.history(frame)
    assert list(h["step"]) == ["first", "same", "first", "first", "first"]
    assert list(h["run_id"]) == ["a", "e", "b", "c", "d"]
    assert not (h["time"] == 9.0).any()


def test_missing_key_columns_count_as_empty_and_bad_settings_fail():
    frame = pd.DataFrame([row("a", 1, 1.0), row("b", 2, 1.0)])
    assert list(hist.history(frame, key=(*KEY, "not-a-column"))["step"]) == ["first", "same"]
    with pytest.raises(ValueError, match=r"history needs columns \['commit'\]"):
        hist.history(frame.drop(columns="commit"))
    with pytest.raises(ValueError, match=r"ratio_only_factor must be a finite number above 1, got 1\.0"):
        hist.history(frame, ratio_only_factor=1.0)
    with pytest.raises(ValueError, match="factor must be a finite number above 1, got nan"):
        hist.history(frame, factor=math.nan)


def fake_run(run_id: str, raw: dict) -> SimpleNamespace:
    """A loaded run as the report gives it: raw JSON plus flat records (extra_info, time, stats)."""
    records = []
    for bench in raw["benchmarks"]:
        extra = bench.get("extra_info") or {}
        if extra.get("suite"):
            records.append({**extra, "time": bench["stats"]["median"], "stats": bench["stats"]})
    return SimpleNamespace(run_id=run_id, raw=raw, records=tuple(records))


def test_history_frame_reads_provenance_and_machine():
    stats = {"median": 2e-3, "data": [1e-3, 2e-3, 3e-3]}
    snap = {"commit": "c" * 40, "commit_from": "git", "source_hash": "f" * 64, "files": {}, "dirty": False}
    new = {
        "datetime": "2026-11-30T10:00:00+00:00",
        "machine_info": {
            "cpu_model": "AMD EPYC",
            "cpu_cores": 2,
            "device_kind": "cpu",
            "device_count": 4,
            "profile": "default",
        },
        "commit_info": {"id": "d" * 40, "dirty": True},
        "provenance": {"schema": 1, "start": snap, "end": snap},
        "benchmarks": [{"extra_info": BENCH, "stats": stats}, {"extra_info": {}, "stats": stats}],
    }
    old = {
        **new,
        "datetime": "2026-11-26T10:00:00+00:00",
        "benchmarks": [{"extra_info": BENCH, "stats": {"median": 1e-3}}],
    }
    del old["provenance"]
    frame = hist.history_frame([fake_run("new", new), fake_run("old", old)])
    assert list(frame["run_id"]) == ["new", "old"]  # records of calcjax only
    assert list(frame["commit"]) == ["c" * 40, "d" * 40]  # the tree's record wins over commit_info
    assert frame.loc[0, "source_hash"] == "f" * 64
    assert pd.isna(frame.loc[1, "source_hash"])
    assert set(frame["machine"]) == {"AMD EPYC ×2"}
    assert set(frame["device"]) == {"cpu ×4"}
    assert frame.loc[0, "rounds_s"] == (1e-3, 2e-3, 3e-3)
    assert frame.loc[1, "rounds_s"] is None
    assert list(frame["rounds"]) == [3, 1]
    h = hist.history(frame)
    assert list(h["run_id"]) == ["old", "new"]
    assert list(h["rounds"]) == [1, 3]
    assert list(h["step"]) == ["first", "slower"]
    assert list(h["basis"]) == ["", "ratio only"]


def load_committed() -> list[SimpleNamespace]:
    return [fake_run(p.parent.name, json.loads(p.read_text())) for p in sorted(RESULTS.glob("*/raw.json"))]


@pytest.mark.skipif(not any(RESULTS.glob("*/raw.json")), reason="no committed runs in results/")
def test_history_of_the_committed_runs():
    runs = load_committed()
    frame = hist.history_frame(runs)
    head = frame[(frame["suite"] == "gradient") & frame["method"].isin(["ad-reverse", "fd-central"])]
    h = hist.history(head)
    # CPU and GPU runs never meet in one history
    for (_machine, device, _profile), g in h.groupby(list(hist.GROUP)):
        assert g["run_id"].map(lambda r: "gpu" in r).nunique() == 1, device
    # within a benchmark the runs follow their dates, and only the first has no step
    dates = {r.run_id: pd.Timestamp(r.raw["datetime"]) for r in runs}
    for _, g in h.groupby([*hist.GROUP, *KEY], dropna=False):
        when = [dates[r] for r in g["run_id"]]
        assert when == sorted(when)
        steps = list(g["step"])
        assert steps[0] == "first"
        assert "first" not in steps[1:]
    assert set(h["step"]) <= {"first", "same", "slower", "faster"}
    assert NO_STATISTICS not in set(h["step"])
    assert (h["basis"] == "test").any()  # committed runs kept their rounds
