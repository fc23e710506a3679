"""Tests for calcjax.report: raw pytest-benchmark JSON -> CSV, Markdown, PNG, index, compare."""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from calcjax import report
from calcjax.cli import main
from tests.helpers import GRAD_METHODS, make_raw, snapshot, write_run


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    return report.build_reports(write_run(results, "2026-11-26-cpu", make_raw()))


# --------------------------------------------------------------------------- building


def test_build_writes_every_file(built):
    expected = {"benchmarks.csv", *report.TABLE_NAMES}
    assert expected <= {p.name for p in built.iterdir()}
    plots = {p.name for p in (built / "plots").iterdir()}
    assert plots == {
        "time-vs-n-quadratic.png",
        "time-vs-n-rosenbrock.png",
        "vcurve-exp.png",
        "descent-square.png",
    }
    for png in plots:
        data = (built / "plots" / png).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert b"Software" not in data
        assert b"matplotlib" not in data.lower()
    assert not [p for p in built.iterdir() if p.name.startswith(".")]  # no temporary left


def test_every_table_opens_with_provenance(built):
    for name in report.TABLE_NAMES:
        first = (built / name).read_text().splitlines()[0]
        assert first.startswith("_Run `2026-11-26-cpu`"), name
        for fact in ("AMD EPYC 7B13 (2 cores)", "device: cpu ×1", "JAX 0.10.2", "2026-11-26 10:00 UTC"):
            assert fact in first, (name, fact)


def test_rebuild_is_byte_identical(built, tmp_path):
    before = {n: (built / n).read_bytes() for n in ["benchmarks.csv", *report.TABLE_NAMES]}
    pngs = snapshot(built / "plots")
    report.build_reports(built, plots=False)  # the tables do not depend on drawing the plots
    assert before == {n: (built / n).read_bytes() for n in before}
    assert snapshot(built / "plots") == pngs
    # The same raw JSON elsewhere, under the same run id, gives the same bytes.
    copy_dir = write_run(tmp_path, built.name, (built / "raw.json").read_text())
    report.build_reports(copy_dir, plots=False)
    assert before == {n: (copy_dir / n).read_bytes() for n in before}


def test_csv_is_tidy(built):
    raw = json.loads((built / "raw.json").read_text())
    rows = list(csv.DictReader(io.StringIO((built / "benchmarks.csv").read_text())))
    ours = [b for b in raw["benchmarks"] if b["extra_info"]]
    assert len(rows) == len(ours)
    columns = rows[0].keys()
    extra = {k for b in ours for k in b["extra_info"]}
    stats = set(ours[0]["stats"]) - {"data"}
    assert extra <= columns
    assert stats <= columns
    assert "data" not in columns
    assert {"run_id", "machine_jax_version", "machine_backend", "machine_cpu_brand", "datetime"} <= columns
    assert "machine_node" not in columns
    assert list(columns)[:8] == ["run_id", "name", "fullname", "group", "param", "suite", "problem", "n"]
    assert {r["n"] for r in rows} >= {"10", "10000", ""}  # integers stay integers next to gaps
    assert {r["h"] for r in rows if r["suite"] == "vcurve"} >= {"auto", "1e-05"}
    grad = [r for r in rows if r["suite"] == "gradient"]
    assert grad[0]["problem"] == "quadratic"
    assert grad[0]["method"] == "ad-reverse"
    assert json.loads(next(r["losses"] for r in rows if r["losses"]))[0] == 25


def test_headline(built):
    text = report.headline_table(built)
    assert text.startswith("_Run `2026-11-26-cpu`")
    assert text == (built / "headline.md").read_text().replace("\n# Headline\n", "", 1)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| problem | n | dtype | jax.grad")
    quad = next(line for line in lines if line.startswith("| quadratic"))
    cells = [c.strip() for c in quad.strip("|").split("|")]
    assert cells[1:3] == ["10,000", "float64"]  # largest n where all three ran
    t = {m: GRAD_METHODS[m][1](10_000) for m in ("ad-reverse", "fd-central-blackbox", "fd-central")}
    assert cells[6] == report.fmt_ratio(t["fd-central-blackbox"] / t["ad-reverse"])  # black-box FD
    assert cells[8] == "0 / 3.0e-10 / 3.0e-10"
    assert cells[9] == report.fmt_time(t["fd-central"])  # shared products: a column of their own
    assert cells[10] == report.fmt_ratio(t["fd-central"] / t["ad-reverse"])
    assert "fd-central-blackbox" in text
    assert "matrix product" in text


def test_speed_and_cost_ratio(built):
    text = (built / "speed.md").read_text()
    assert "## quadratic, float64: time as a multiple of `ad-reverse`" in text
    assert "cost of a gradient in f-evaluations" in text
    row = next(line for line in text.splitlines() if line.startswith("| fd-central |"))
    # fd-central / ad-reverse grows with n
    ratios = [float(c.strip().rstrip("×").replace(",", "")) for c in row.strip("|").split("|")[1:]]
    assert ratios == sorted(ratios)
    assert "![time against n: quadratic](plots/time-vs-n-quadratic.png)" in text
    assert "## Scalar derivatives" in text


def test_scaling_exponents(built):
    text = (built / "scaling.md").read_text()
    fd = next(line for line in text.splitlines() if line.startswith("| quadratic | float64 | fd-central |"))
    k_top = float(fd.strip("|").split("|")[-1])
    assert 1.8 < k_top <= 2.0
    ad = next(line for line in text.splitlines() if line.startswith("| quadratic | float64 | ad-reverse |"))
    assert float(ad.strip("|").split("|")[-2]) < 0.5  # overhead-dominated over all n


@pytest.mark.parametrize(("ns", "times", "k"), [([1, 10, 100], [3, 30, 300], 1.0), ([5, 50], [2, 200], 2.0)])
def test_fit_exponent(ns, times, k):
    assert report.fit_exponent(ns, times) == pytest.approx(k)


def test_fit_exponent_needs_two_sizes():
    assert report.fit_exponent([10, 10], [1.0, 2.0]) is None


def test_accuracy_tables(built):
    text = (built / "accuracy.md").read_text()
    assert "## Gradient error, float32" in text
    assert "| **numpy-loop** (tutorial eps = 1e-5) | 1.3e+00 |" in text
    assert "The tutorial's `eps = 1e-5` in float32" in text
    assert "against 3.0e-04 for `fd-central`" in text
    header = "| problem | scheme | dtype | min error | h at min | automatic step | h = 1e-5 (tutorial) |"
    assert header in text
    row = next(line for line in text.splitlines() if line.startswith("| exp | central o2 | float64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "1e-05"  # sqrt(eps) ~ 1e-8 region: 0.5h^2 + eps/h is smallest near 1e-5
    assert "![error against h: exp](plots/vcurve-exp.png)" in text


def test_descent_fd_scaling_sharding_estimate(built):
    descent = (built / "descent.md").read_text()
    assert "speed-up vs tutorial loop" in descent
    assert "÷ bare fori_loop" in descent
    row = next(line for line in descent.splitlines() if "| calcjax-ad | 10,000 |" in line)
    cells = [c.strip() for c in row.strip(" |").split("|")]
    assert cells[-2:] == ["133×", "1.50×"]  # 4e-6 / 3e-8 and 3e-8 / 2e-8
    row = next(line for line in descent.splitlines() if "| fori-bare | 10 |" in line)
    assert row.rstrip(" |").endswith("1.00×")
    fd = (built / "fd_scaling.md").read_text()
    assert "## fd-central, quadratic, float64" in fd
    assert "## fd-forward, rosenbrock, float32" in fd
    assert (
        "| n | fd-central | peak | black-box f | numpy-loop | jax-vmap-naive | jax-lax-map | numdifftools |"
        in fd
    )
    row = next(line for line in fd.splitlines() if line.startswith("| 10,000 |"))
    assert row.strip(" |").split("|")[-1].strip().endswith("×")  # compute-limit ratio at n = 1e4
    row = next(line for line in fd.splitlines() if line.startswith("| 100 |"))
    assert row.strip(" |").split("|")[-1].strip() == "—"  # below 1e4: no limit column value
    sharding = (built / "sharding.md").read_text()
    assert "forced host devices" in sharding
    assert "2 cores" in sharding
    assert (
        "| quadratic | 10,000 | float64 | fd-central | 200 ms | 141 ms (1.41×) | 100 ms (2.00×) |" in sharding
    )
    estimate = (built / "estimate.md").read_text()
    assert "| x**2 at 3 | numdifftools | float64 | 1.0e-15 | 2.5e-14 | 25.0× | optimistic |" in estimate


def test_missing_suites_are_skipped(tmp_path):
    raw = make_raw()
    raw["benchmarks"] = [b for b in raw["benchmarks"] if b["extra_info"].get("suite") == "gradient"]
    run_dir = report.build_reports(write_run(tmp_path, "grad-only", raw), plots=False)
    names = {p.name for p in run_dir.glob("*.md")}
    assert names == {"headline.md", "speed.md", "scaling.md", "accuracy.md", "fd_scaling.md"}
    assert "No `feval` records" in (run_dir / "fd_scaling.md").read_text()
    # Remove a suite from the raw JSON: its old table goes on rebuild.
    raw["benchmarks"] = [b for b in raw["benchmarks"] if b["extra_info"]["method"] == "ad-reverse"]
    (run_dir / "raw.json").write_text(json.dumps(raw))
    report.build_reports(run_dir, plots=False)
    assert not (run_dir / "fd_scaling.md").exists()


def test_sparse_records_do_not_crash(tmp_path):
    raw = make_raw()
    for b in raw["benchmarks"]:
        for key in ("rel_error", "peak_bytes", "compile_s", "device_kind", "f_evals"):
            b["extra_info"].pop(key, None)
    raw["machine_info"] = {}
    run_dir = report.build_reports(write_run(tmp_path, "sparse", raw))
    assert (run_dir / "headline.md").read_text().startswith("_Run `sparse` · machine: unknown CPU")


def test_machine_facts_without_cpuinfo(tmp_path):
    raw = make_raw()
    del raw["machine_info"]["cpu"]  # py-cpuinfo's block; calcjax's own keys remain
    run = report.load_run(write_run(tmp_path, "run", raw))
    assert run.provenance().startswith("_Run `run` · machine: AMD EPYC 7B13 (2 cores) · device: cpu ×1 ·")


# --------------------------------------------------------------------------- bad input


BAD_RAW = {
    "not json": "{'benchmarks': [",
    "a list": "[]",
    "foreign json": json.dumps({"results": [1, 2, 3]}),
    "no records": json.dumps({"machine_info": {}, "benchmarks": []}),
    "no extra_info": json.dumps(
        {"machine_info": {}, "benchmarks": [{"name": "t", "stats": {"median": 1.0}}]}
    ),
    "no stats": json.dumps({"machine_info": {}, "benchmarks": [{"name": "t", "extra_info": {"suite": "x"}}]}),
    "binary": b"\xff\xfe\x00garbage",
}
BAD_MESSAGES = {
    "not json": "is not valid JSON",
    "a list": "is not pytest-benchmark JSON",
    "foreign json": "is not pytest-benchmark JSON",
    "no records": "holds no benchmark records",
    "no extra_info": "holds no calcjax records",
    "no stats": "is corrupt",
    "binary": "is not text",
}


@pytest.mark.parametrize("case", list(BAD_RAW))
def test_bad_raw_writes_nothing(tmp_path, case, capsys):
    run_dir = tmp_path / "results" / "bad"
    run_dir.mkdir(parents=True)
    content = BAD_RAW[case]
    (run_dir / "raw.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(report.ReportError, match=BAD_MESSAGES[case]):
        report.build_reports(run_dir)
    assert main(["report", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("calcjax report: error: ")
    assert BAD_MESSAGES[case] in err
    assert err.count("\n") == 1
    assert [p.name for p in tmp_path.rglob("*")] == ["results", "bad", "raw.json"]


def test_corrupt_raw_keeps_the_old_reports(tmp_path):
    run_dir = report.build_reports(write_run(tmp_path, "run", make_raw()), plots=False)
    before = snapshot(run_dir)
    (run_dir / "raw.json").write_text('{"benchmarks": [')
    with pytest.raises(report.ReportError):
        report.build_reports(run_dir)
    after = snapshot(run_dir)
    assert before.keys() == after.keys()
    assert all(before[k] == after[k] for k in before if k != "raw.json")


def test_one_bad_run_stops_the_whole_rebuild(tmp_path):
    results = tmp_path / "results"
    write_run(results, "good", make_raw())
    write_run(results, "bad", "not json")
    assert main(["report", "--results", str(results)]) == 2
    assert sorted(p.name for p in (results / "good").iterdir()) == ["raw.json"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n", "ten", "'n' must be a whole number"),
        ("n", 10.5, "'n' must be a whole number"),
        ("method", 3, "'method' must be text"),
        ("rel_error", "small", "'rel_error' must be a number"),
        ("h", "tiny", "'h' must be a step size or 'auto'"),
    ],
)
def test_wrong_field_types_are_corrupt(tmp_path, field, value, message):
    raw = make_raw()
    raw["benchmarks"][3]["extra_info"][field] = value
    run_dir = write_run(tmp_path, "run", raw)
    with pytest.raises(
        report.ReportError, match=rf"benchmark #3 \(test_gradient\[.*\]\): extra_info {message}"
    ):
        report.build_reports(run_dir)
    assert [p.name for p in run_dir.iterdir()] == ["raw.json"]


def test_step_sizes_given_as_text_are_read(tmp_path):
    raw = make_raw()
    for bench in raw["benchmarks"]:
        if isinstance(bench["extra_info"].get("h"), float):
            bench["extra_info"]["h"] = repr(bench["extra_info"]["h"])
    plain = report.build_reports(write_run(tmp_path / "a", "run", make_raw()), plots=False)
    text = report.build_reports(write_run(tmp_path / "b", "run", raw), plots=False)
    assert (plain / "accuracy.md").read_text() == (text / "accuracy.md").read_text()


def test_missing_raw(tmp_path):
    with pytest.raises(report.ReportError, match=r"no raw\.json in"):
        report.build_reports(tmp_path)


# --------------------------------------------------------------------------- command line, index, README


def test_cli_rebuilds_all_runs_and_writes_index(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "old-cpu", make_raw(date="2026-11-20T08:00:00+00:00"))
    write_run(results, "new-gpu", make_raw(device="gpu", speed=0.1, date="2026-11-26T12:00:00+00:00"))
    assert main(["report", "--results", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "old-cpu" in out
    assert "new-gpu" in out
    assert "index:" in out
    index = (results / "README.md").read_text()
    assert index.index("[`new-gpu`]") < index.index("[`old-cpu`]")  # newest first
    assert "NVIDIA H100 80GB HBM3 ×1 (gpu)" in index
    assert "[headline](new-gpu/headline.md)" in index
    assert "[estimate](old-cpu/estimate.md)" in index
    assert "## Headline (newest run with one, `new-gpu`)" in index
    assert report.headline_table(results / "new-gpu").strip() in index
    first = snapshot(results)
    assert main(["report", "--results", str(results), "--no-plots"]) == 0
    assert snapshot(results) == first


def test_a_newer_run_without_a_headline_keeps_the_last_headline(tmp_path, capsys):
    """A run of one suite (say ``--full -- -k corpus``) does not take over the README's headline."""
    results = tmp_path / "results"
    write_run(results, "default", make_raw(date="2026-11-20T08:00:00+00:00"))
    only_estimate = make_raw(date="2026-11-26T12:00:00+00:00")
    only_estimate["benchmarks"] = [
        b for b in only_estimate["benchmarks"] if b["extra_info"].get("suite") == "estimate"
    ]
    assert only_estimate["benchmarks"]
    write_run(results, "one-suite", only_estimate)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headline:start -->\n<!-- headline:end -->\n")
    argv = ["report", "--results", str(results), "--no-plots", "--readme", str(readme)]
    assert main(argv) == 0
    assert "headline updated (run default)" in capsys.readouterr().out
    assert "_Run `default`" in readme.read_text()
    assert "## Headline (newest run with one, `default`)" in (results / "README.md").read_text()


def test_index_lists_unbuilt_and_unreadable_runs(tmp_path):
    report.build_reports(write_run(tmp_path, "built", make_raw()), plots=False)
    write_run(tmp_path, "fresh", make_raw(date="2026-11-25T00:00:00+00:00"))
    write_run(tmp_path, "broken", "{")
    text = report.write_index(tmp_path).read_text()
    assert "| [`fresh`](fresh/) | 2026-11-25 00:00 UTC |" in text
    assert "not built yet: `calcjax report`" in text
    assert "| `broken` | — | — | — | — | — | — | unreadable: raw.json is not valid JSON" in text
    assert str(tmp_path) not in text  # no machine-specific paths in a committed file


def test_cli_rebuilds_named_runs(tmp_path, capsys):
    results = tmp_path / "results"
    a = write_run(results, "a", make_raw())
    write_run(results, "b", make_raw())
    assert main(["report", "a", "--results", str(results), "--no-plots"]) == 0
    assert (a / "speed.md").exists()
    assert not (results / "b" / "speed.md").exists()
    out = capsys.readouterr().out
    assert "| problem | n | dtype | jax.grad" in out  # one run: its headline is printed
    other = tmp_path / "elsewhere" / "c"
    write_run(tmp_path / "elsewhere", "c", make_raw())
    assert main(["report", str(other), "--results", str(results), "--no-plots"]) == 0
    assert (other / "speed.md").exists()
    assert (tmp_path / "elsewhere" / "README.md").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report"], "no runs in"),
        (["report", "nope"], "no run 'nope'"),
        (["report", "--compare", "a", "nope"], "no run 'nope'"),
    ],
)
def test_cli_usage_errors(tmp_path, capsys, argv, message):
    results = tmp_path / "results"
    results.mkdir()
    if "--compare" in argv:
        write_run(results, "a", make_raw())
    assert main([*argv, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_compare(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "cpu", make_raw())
    write_run(results, "gpu", make_raw(device="gpu", speed=0.25))
    assert main(["report", "--results", str(results), "--compare", "cpu", "gpu"]) == 0
    captured = capsys.readouterr()
    path = results / "compare-cpu-vs-gpu.md"
    text = path.read_text()
    assert text in captured.out + "\n"
    assert "Run A: Run `cpu` · machine:" in text
    assert "Run B: Run `gpu` · machine:" in text
    header = "| suite | problem | method | n | dtype | time A | time B | B ÷ A | p | rounds A / B | verdict |"
    assert header in text
    row = next(
        x
        for x in text.splitlines()
        if x.startswith("| gradient | quadratic | fd-central | 1,000 | float64 |")
    )
    assert "| 0.25× |" in row  # one ratio convention: B ÷ A
    assert "| 7 / 7 | faster |" in row  # 7 rounds a side reach p < 0.002
    assert row.endswith("| faster | 3.0e-10 | 3.0e-10 |")  # both runs' errors
    assert "| gradient | ad-reverse | 16 | 0.25× |" in text  # geometric mean, 2 problems × 2 dtypes × 4 n
    assert "1 only in A, 0 only in B" in text  # the tutorial loop at 10 000 steps did not run on the GPU
    assert "runs differ in backend: cpu (A) vs gpu (B)" in text  # compared, with a warning
    assert "runs differ in backend" in captured.err
    assert (results / "compare-cpu-vs-gpu.html").is_file()
    assert (results / "plots" / "compare-cpu-vs-gpu.png").is_file()  # CPU against GPU as bars
    assert "[compare-cpu-vs-gpu](compare-cpu-vs-gpu.md)" in (results / "README.md").read_text()
    first = path.read_bytes()
    report.compare_runs(results / "cpu", results / "gpu", out_dir=results)
    assert path.read_bytes() == first


def _slowed(raw, method, factor, rounds=None):
    for b in raw["benchmarks"]:
        e = b.get("extra_info") or {}
        if e.get("method") == method and e.get("suite") == "gradient":
            st = b["stats"]
            st["data"] = [t * factor for t in st["data"]][:rounds]
            st["median"] *= factor
            if rounds is not None:
                st["rounds"] = rounds
    return raw


def test_gate_fails_on_a_significant_slowdown(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "a", make_raw())
    write_run(results, "b", _slowed(make_raw(), "fd-central", 1.3))
    argv = ["report", "--results", str(results), "--no-plots", "--compare", "a", "b"]
    assert main([*argv, "--fail-above", "1.10"]) == 1
    out = capsys.readouterr().out
    listed = [x for x in out.splitlines() if x.startswith("  gradient")]
    assert len(listed) == 16  # every fd-central gradient benchmark, nothing else
    assert all(" fd-central " in x and "B ÷ A = 1.30×" in x for x in listed)
    assert main([*argv, "--fail-above", "1.5"]) == 0  # slower, but not by more than 1.5
    assert (
        main(
            ["report", "--results", str(results), "--no-plots", "--compare", "a", "a", "--fail-above", "1.1"]
        )
        == 0
    )


def test_gate_without_rounds_says_no_statistics(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "a", _slowed(make_raw(), "fd-central", 1.0, rounds=1))
    write_run(results, "b", _slowed(make_raw(), "fd-central", 2.0, rounds=1))
    argv = ["report", "--results", str(results), "--no-plots", "--compare", "a", "b", "--fail-above", "1.1"]
    assert main(argv) == 0  # two times without rounds are never judged
    text = (results / "compare-a-vs-b.md").read_text()
    row = next(
        x
        for x in text.splitlines()
        if x.startswith("| gradient | quadratic | fd-central | 1,000 | float64 |")
    )
    assert "| 2.00× | — | 1 / 1 | no statistics |" in row


@pytest.mark.parametrize("value", ["1", "0.9", "nan", "inf", "x"])
def test_gate_refuses_a_bad_factor(tmp_path, capsys, value):
    results = tmp_path / "results"
    write_run(results, "a", make_raw())
    argv = ["report", "--results", str(results), "--no-plots", "--compare", "a", "a", "--fail-above", value]
    assert main(argv) == 2
    assert "--fail-above must be" in capsys.readouterr().err
    assert not list(results.glob("compare-*"))  # refused before any work


def test_compare_without_common_records(tmp_path):
    a, b = make_raw(), make_raw()
    b["benchmarks"] = [r for r in b["benchmarks"] if r["extra_info"].get("suite") == "vcurve"]
    with pytest.raises(report.ReportError, match="no benchmark in common"):
        report.compare_runs(write_run(tmp_path, "a", a), write_run(tmp_path, "b", b))


def test_update_readme_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# calcjax\n\n<!-- headline:start -->\nold\n<!-- headline:end -->\n\nmore\n")
    assert report.update_readme_markers(readme, "| a |\n|---|\n")
    assert readme.read_text() == (
        "# calcjax\n\n<!-- headline:start -->\n| a |\n|---|\n<!-- headline:end -->\n\nmore\n"
    )
    assert not report.update_readme_markers(readme, "| a |\n|---|")


@pytest.mark.parametrize(
    "content",
    ["no markers\n", "<!-- headline:end -->\n<!-- headline:start -->\n", "<!-- headline:start -->\n" * 2],
)
def test_update_readme_markers_refuses_bad_files(tmp_path, content):
    readme = tmp_path / "README.md"
    readme.write_text(content)
    with pytest.raises(report.ReportError, match="must hold"):
        report.update_readme_markers(readme, "x")
    assert readme.read_text() == content


def test_cli_readme(tmp_path):
    results = tmp_path / "results"
    write_run(results, "run", make_raw())
    readme = tmp_path / "README.md"
    readme.write_text("<!-- headline:start -->\n<!-- headline:end -->\n")
    assert main(["report", "--results", str(results), "--readme", str(readme), "--no-plots"]) == 0
    assert report.headline_table(results / "run").strip() in readme.read_text()
    readme.write_text("no markers")
    before = snapshot(results)
    assert main(["report", "--results", str(results), "--readme", str(readme)]) == 2
    assert snapshot(results) == before  # checked before anything is rebuilt


# --------------------------------------------------------------------------- formatting and hygiene


@pytest.mark.parametrize(
    ("value", "text"),
    [(5e-10, "0.50 ns"), (4.2e-6, "4.20 µs"), (0.0999996, "100 ms"), (0.99996, "1.00 s"), (None, "—")],
)
def test_fmt_time(value, text):
    assert report.fmt_time(value) == text


@pytest.mark.parametrize(("value", "text"), [(512, "512 B"), (1536, "1.50 KiB"), (3 * 2**30, "3.00 GiB")])
def test_fmt_bytes(value, text):
    assert report.fmt_bytes(value) == text


def test_report_names_match_the_registry():
    from calcjax import METHODS

    named = {*report.HEADLINE_METHODS, *report.FD_PEERS, report.TUTORIAL_METHOD, report.REFERENCE_METHOD}
    named |= {p for peers in report.FD_PEERS.values() for p in peers}
    assert named <= set(METHODS)


def test_report_sources_import_no_jax():
    for path in Path(report.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert "import jax" not in source, path
        assert "from jax" not in source, path
        assert "bench" not in {
            line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith("import ")
        }


#: Run in a child process with JAX (and the bench suite) made unimportable.
NO_JAX = """
import sys


class NoJax:  # as if JAX were not installed (a None in sys.modules would fool scipy's array checks)
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib"):
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, NoJax)
from calcjax.cli import main
code = main(sys.argv[1:])
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "bench") and sys.modules[m])
assert not bad, bad
sys.exit(code)
"""


def _without_jax(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_JAX, *argv], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_and_report_work_without_jax(tmp_path):
    """``calcjax --help``, ``calcjax report`` (Markdown, CSV, plots) and ``--compare`` need no JAX."""
    a = write_run(tmp_path, "a", make_raw())
    write_run(tmp_path, "b", make_raw(device="gpu", speed=4.0))
    for argv in (["--help"], ["report", "--help"]):
        proc = _without_jax(*argv)
        assert proc.returncode == 0, proc.stderr
        assert "usage: calcjax" in proc.stdout
    proc = _without_jax("report", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (a / "benchmarks.csv").is_file()
    assert (a / "speed.md").is_file()
    assert list((a / "plots").glob("*.png"))
    proc = _without_jax("report", "--results", str(tmp_path), "--compare", "a", "b")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "compare-a-vs-b.md").is_file()


def test_the_jax_block_is_real():
    """The child process above really cannot import JAX (else the test proves nothing)."""
    proc = _without_jax("compare", "nope.py:f")
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr or "jax" in proc.stderr


def test_import_report_does_not_import_bench():
    code = "import sys, calcjax.report; assert not [m for m in sys.modules if m.split('.')[0] == 'bench']"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_run_records_are_copies_of_raw():
    raw = make_raw()
    before = copy.deepcopy(raw)
    run = report.Run("x", Path("x"), raw, ())
    assert run.machine["jax_version"] == "0.10.2"
    assert raw == before
