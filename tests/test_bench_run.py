"""What a ``calcjax bench`` run tells and keeps as it goes, and how it ends.

Provenance (a run from uncommitted sources is refused; the raw JSON and every
record carry the commit and source hash; ``calcjax report --verify``), the skip
summary and the progress line (plain lines when the output is not a terminal),
records streamed as each test finishes, and the ends: ``-k`` matching nothing
(one line, nothing left behind), SIGTERM (cleaned up like Ctrl-C) and SIGKILL
(``calcjax report --partial`` rebuilds what finished, marked incomplete). The
ends are real subprocesses and real signals.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calcjax import _provenance, cli
from calcjax._bench.runlog import SUMMARY_LINES, Progress, case_costs, skip_kind, skip_summary
from calcjax._commands import bench as bench_command
from calcjax._schema import INCOMPLETE_KEY, RAW_NAME, RECORDS_NAME

ROOT = Path(__file__).resolve().parent.parent

TIME = "fd-forward on logistic n=10000: predicted 3.20 s per call > 1.00 s allowed by the 'default' profile "
TIME += "(--max-call-s or --full allows more)"
STEP = "h=1e-08 is below float32's resolution at x=1.0: x + h == x"
EXTRA = "numdifftools needs the optional package 'numdifftools' (pip install numdifftools)"


# --------------------------------------------------------------------------- skip summary


def test_skip_summary_counts_by_reason():
    lines = skip_summary([TIME] * 46 + [STEP] * 98 + [EXTRA] * 44, log_name="pytest.log")
    assert lines[0] == "skipped 188 cases (the full list is in pytest.log):"
    assert "  step below the dtype's resolution (x + h == x): 98 cases" in lines
    assert "  predicted above the 1.00 s per-call limit: 46 cases (use --max-call-s or --full)" in lines
    assert "  not installed, would add rows: numdifftools (44) (pip install the package)" in lines
    assert len(lines) == 4
    assert lines.index("  step below the dtype's resolution (x + h == x): 98 cases") == 1  # most first


def test_skip_summary_is_short_whatever_the_reasons():
    reasons = [f"an unforeseen reason number {k}" for k in range(40)] + [TIME, STEP, EXTRA]
    lines = skip_summary(reasons)
    assert len(lines) <= SUMMARY_LINES
    assert lines[0] == "skipped 43 cases:"
    assert any(line.startswith("  other reasons: ") for line in lines)
    counts = [re.search(r": (\d+) cases?|\((\d+)\)", line) for line in lines[1:]]
    counted = sum(int(m.group(1) or m.group(2)) for m in counts if m)
    assert counted == 43  # every skip counted once


def test_skip_kinds():
    assert skip_kind(TIME) == ("time", "1.00 s")
    assert skip_kind(STEP) == ("resolution", "float32")
    assert skip_kind(EXTRA) == ("extra", "numdifftools")
    warm = (
        "scipy-approx-fprime on logistic n=1000: warm-up took 6.2 s per call, over 3x the 0.3 s allowed by "
    )
    assert skip_kind(warm + "the 'quick' profile (--max-call-s or --full allows more)")[0] == "warm"
    assert skip_kind("something else")[0] == "other"
    assert skip_summary([]) == []


# --------------------------------------------------------------------------- progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_estimate_without_history_uses_each_benchmarks_rate():
    clock = Clock()
    p = Progress([f"test_a[{k}]" for k in range(4)] + [f"test_b[{k}]" for k in range(6)], clock=clock)
    assert p.left() is None
    assert "estimating" in p.line()
    for k in range(2):  # test_a: 3 s a case
        clock.now += 3
        p.finished(f"test_a[{k}]")
    # test_a: 2 left at 3 s; test_b not started: 6 at the run's mean (3 s)
    assert p.left() == pytest.approx(2 * 3 + 6 * 3)
    for k in range(2, 4):
        clock.now += 3
        p.finished(f"test_a[{k}]")
    clock.now += 1
    p.finished("test_b[0]")  # test_b: 1 s a case
    assert p.left() == pytest.approx(5 * 1)
    assert p.line() == "progress: 5/10 cases (50%), 13s elapsed, about 5s left"


def test_progress_estimate_from_an_earlier_runs_costs_scaled_to_this_run():
    clock = Clock()
    earlier = {"test_a[0]": 1.0, "test_a[1]": 1.0, "test_b[0]": 10.0, "test_b[1]": 10.0}
    cases = ["test_a[0]", "test_a[1]", "test_a[2]", "test_b[0]", "test_b[1]", "test_c[0]"]
    p = Progress(cases, earlier, clock=clock)
    clock.now += 2  # test_a runs twice as slow as in the earlier run
    p.finished("test_a[0]")
    # test_a[1]: 1 s x 2; test_a[2] was skipped in the earlier run: 0; test_b (not started):
    # 2 x 10 s as before; test_c (no history): the run's mean so far, 2 s
    assert p.left() == pytest.approx(2 + 0 + 20 + 2)
    clock.now += 5
    p.finished("test_a[1]")
    clock.now += 0.1
    p.finished("test_a[2]")
    clock.now += 5
    p.finished("test_b[0]")  # test_b: half its earlier cost
    assert p.left() == pytest.approx(5 + 12.1 / 4)


def test_case_costs_from_a_raw_json():
    raw = {
        "benchmarks": [
            {"name": "test_a[x]", "stats": {"total": 0.5, "median": 0.1}, "extra_info": {"compile_s": 0.2}},
            {"name": "test_b[y]", "stats": {"total": 1.0, "median": 1.0}, "extra_info": {}},
        ]
    }
    assert case_costs(raw) == pytest.approx({"test_a[x]": 0.8, "test_b[y]": 2.0})


# --------------------------------------------------------------------------- the command line


def test_pytest_command_streams_records_and_shows_progress(tmp_path):
    args = cli.build_parser().parse_args(["bench", "--quick"])
    json_path = tmp_path / "run" / ".raw.json.partial"
    plain = bench_command.pytest_command(args, ROOT / "bench", json_path, "cpu", tty=False)
    assert f"--records-jsonl={tmp_path / 'run' / RECORDS_NAME}" in plain
    assert f"--skip-log={tmp_path / 'run' / 'pytest.log'}" in plain
    assert "--progress=plain" in plain
    assert "-rs" not in plain  # the skip list goes to the log, a summary to the terminal
    tty = bench_command.pytest_command(args, ROOT / "bench", json_path, "cpu", tty=True)
    assert "--progress=tty" in tty


def test_dirty_sources_are_refused_before_anything_is_made(tmp_path, capsys, monkeypatch):
    real = _provenance.capture

    def dirty(*a, **k):
        snap = real(*a, **k)
        return _provenance.Snapshot(**{**snap.__dict__, "dirty": True, "dirty_files": ["calcjax/x.py"]})

    monkeypatch.setattr(_provenance, "capture", dirty)
    out = tmp_path / "results"
    assert cli.main(["bench", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "calcjax/x.py" in err
    assert "--allow-dirty" in err
    assert not out.exists()


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _run_with_sources(tmp_path: Path, files: dict[str, str]) -> Path:
    commit = _head()
    snap = {
        "time": "2026-11-30T00:00:00+00:00",
        "commit": commit,
        "commit_from": "git",
        "local_head": commit,
        "source_hash": _provenance.source_hash(files),
        "files": files,
        "dirty": False,
        "dirty_files": [],
        "changed": [],
        "untracked": [],
    }
    run = tmp_path / "results" / "r"
    run.mkdir(parents=True)
    record = {
        "name": "test_x",
        "stats": {"median": 1.0, "rounds": 1},
        "extra_info": {"suite": "gradient", "method": "fd-central"},
    }
    raw = {
        "benchmarks": [record],
        "machine_info": {},
        "provenance": {"schema": 1, "start": snap, "end": snap},
    }
    (run / RAW_NAME).write_text(json.dumps(raw))
    return run


@pytest.mark.slow
def test_report_verify_says_whether_the_run_matches_its_commit(tmp_path, capsys):
    files = _provenance.manifest_from_commit(ROOT, _head())
    run = _run_with_sources(tmp_path, files)
    assert cli.main(["report", "--verify", str(run)]) == 0
    assert f"run matches commit {_head()[:7]}" in capsys.readouterr().out
    changed = dict(files)
    changed["calcjax/_finite_diff.py"] = "0" * 64
    run2 = _run_with_sources(tmp_path / "b", changed)
    assert cli.main(["report", "--verify", str(run2)]) == 1
    out = capsys.readouterr().out
    assert "does NOT match" in out
    assert "calcjax/_finite_diff.py" in out


# --------------------------------------------------------------------------- real runs


def _bench(out: Path, *extra: str, run_id: str = "r") -> list[str]:
    cmd = [sys.executable, "-m", "calcjax.cli", "bench", "--profile", "ci", "--device", "cpu"]
    return [*cmd, "--allow-dirty", "--out", str(out), "--run-id", run_id, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_bench_run_records_provenance_progress_and_skips(tmp_path):
    """A small real run, its output captured (not a terminal): plain progress lines, no dots,
    a short skip summary, the full skip list in pytest.log, provenance in the JSON and every record."""
    out = tmp_path / "results"
    cmd = _bench(out, "--", "-k", "test_vcurve and sin and float32")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    progress = [line for line in text.splitlines() if " progress: " in line]
    assert progress
    assert all(re.match(r"\d\d:\d\d:\d\d progress: \d+/\d+ cases", line) for line in progress)
    assert "\r" not in text
    assert not re.search(r"^[.s]+\s*$", text, re.M)  # no rows of pytest's dots
    summary_start = text.index("skipped ")
    summary = text[summary_start:].splitlines()
    summary = summary[: next(i for i, line in enumerate(summary) if line.startswith("="))]
    assert 2 <= len(summary) <= SUMMARY_LINES
    assert "SKIPPED" not in text
    run = out / "r"
    log = (run / "pytest.log").read_text()
    assert "progress: " in log
    assert re.search(
        r"SKIPPED bench/test_accuracy.py::test_vcurve\[.*\]: h=.* below float32's resolution", log
    )
    assert not (run / RECORDS_NAME).exists()  # raw.json holds every record now
    raw = json.loads((run / RAW_NAME).read_text())
    prov = raw["provenance"]
    assert prov["start"]["source_hash"]
    assert prov["end"]["source_hash"]
    assert prov["start"]["commit"] == _head()
    for record in raw["benchmarks"]:
        extra = record["extra_info"]
        assert extra["source_hash"] == prov["start"]["source_hash"]
        assert extra["source_commit"] == _head()
        assert len(record["stats"]["data"]) == record["stats"]["rounds"]  # per-round data kept
    assert "calcjax compare" in text  # where next
    assert str(out / "README.md") in text or str(run / "index.html") in text


@pytest.mark.slow
def test_bench_matching_nothing_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        _bench(out, "--", "-k", "nomatch"), capture_output=True, text=True, timeout=300, env=_env()
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    line = "calcjax bench: error: no benchmark ran (no case matched the options or -k/-m given)"
    assert proc.stderr.strip().splitlines() == [line + "; nothing was written"]
    assert not out.exists()


def _start(out: Path, min_records: int) -> subprocess.Popen:
    """A real run in its own process group, returned once ``min_records`` records have finished."""
    proc = subprocess.Popen(
        _bench(out, "--", "-k", "test_gradient or test_accuracy"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    records = out / "r" / RECORDS_NAME
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if records.is_file() and len(records.read_text().splitlines()) > min_records:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {min_records} records")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no records streamed within 240 s")


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "results"
    proc = _start(out, 2)
    proc.send_signal(signal.SIGTERM)  # to calcjax bench only, as `timeout` or `kill` would
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    while _alive(proc.pid) and time.monotonic() < deadline:  # the suite's process goes too
        time.sleep(0.2)
    assert not _alive(proc.pid)
    assert not (out / "r").exists()


@pytest.mark.slow
def test_sigkill_leaves_what_finished_for_report_partial(tmp_path, capsys):
    out = tmp_path / "results"
    proc = _start(out, 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    run = out / "r"
    assert not (run / RAW_NAME).exists()
    finished = len((run / RECORDS_NAME).read_text().splitlines()) - 1  # less the header
    assert finished >= 3
    assert "progress: " in (run / "pytest.log").read_text()  # the log was written as it went
    # without --partial: a clear message naming the way out
    assert cli.main(["report", str(run), "--no-plots"]) == 2
    assert "--partial" in capsys.readouterr().err
    assert cli.main(["report", str(run), "--partial", "--no-plots"]) == 0
    raw = json.loads((run / RAW_NAME).read_text())
    assert raw[INCOMPLETE_KEY]["records"] == len(raw["benchmarks"]) >= finished - 1
    assert raw["provenance"]["start"]["source_hash"]
    from calcjax.report._load import load_run

    loaded = load_run(run)
    assert loaded.incomplete
    assert "incomplete" in (run / "headline.md").read_text()
    assert "incomplete" in (out / "README.md").read_text()


def test_a_crashed_suite_keeps_what_finished(tmp_path, capsys, monkeypatch):
    """pytest dying mid-run (an abort in a compiler, out of memory) keeps the streamed records."""
    from calcjax._commands import bench as bench_command

    def crashing_stream(cmd, log_path, env):
        records = Path(next(a for a in cmd if a.startswith("--records-jsonl=")).split("=", 1)[1])
        records.write_text('{"header": 1}\n{"name": "a"}\n{"name": "b"}\n')
        log_path.write_text("2 cases finished, then: Fatal Python error: Aborted\n")
        return -6

    monkeypatch.setattr(bench_command, "_stream", crashing_stream)
    out = tmp_path / "results"
    argv = ["bench", "--quick", "--device", "cpu", "--out", str(out), "--run-id", "r", "--allow-dirty"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "pytest exited with status -6 after 2 benchmark(s) finished" in err
    assert f"calcjax report {out / 'r'} --partial" in err
    assert (out / "r" / RECORDS_NAME).is_file()


def test_a_skip_in_the_full_profile_does_not_advise_full():
    from calcjax._bench.budget import more_time_hint

    assert more_time_hint("full") == "(--max-call-s allows more)"
    assert more_time_hint("default") == "(--max-call-s or --full allows more)"
    # both still count as time skips in the run's summary
    in_full = TIME.replace("(--max-call-s or --full allows more)", more_time_hint("full"))
    assert skip_kind(in_full)[0] == "time"


def test_the_skip_summary_of_a_full_run_advises_max_call_s_only():
    from calcjax._bench.budget import more_time_hint

    in_full = TIME.replace("'default' profile", "'full' profile").replace(
        "(--max-call-s or --full allows more)", more_time_hint("full")
    )
    (line,) = [ln for ln in skip_summary([in_full, in_full]) if "per-call limit" in ln]
    assert line.endswith("(use --max-call-s)")
    (line,) = [ln for ln in skip_summary([TIME, in_full]) if "per-call limit" in ln]
    assert line.endswith("(use --max-call-s or --full)")  # some of them would run under --full
