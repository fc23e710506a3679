"""The ``corpus`` and ``gradcheck`` report tables render from synthetic records (Markdown and HTML)."""

from __future__ import annotations

from calcjax import report
from calcjax.report._registry import TABLES
from tests.helpers import _record, make_raw, write_run


def _corpus_records():
    out = []
    rows = {
        ("log at 1e-05", True): {"calcjax-richardson": (2e-12, 48), "calcjax-adaptive": (2.2e-11, 20),
                                 "calcjax-central": (0.159, 2), "numdifftools": (float("nan"), 0),
                                 "scipy": (3e-9, 31)},
        ("sin at 1.2", False): {"calcjax-richardson": (1e-14, 48), "calcjax-adaptive": (9e-12, 20),
                                "calcjax-central": (1.3e-11, 2), "numdifftools": (4e-15, 34),
                                "scipy": (1e-15, 27)},
    }  # fmt: skip
    for (case, hard), methods in rows.items():
        for method, (err, nfev) in methods.items():
            extra = {"suite": "corpus", "problem": case, "case": case, "n": 1, "method": method,
                     "dtype": "float64", "rel_error": err, "f_evals": nfev, "hard": hard,
                     "source": "numdifftools tests/test_nd_algopy.py"}  # fmt: skip
            out.append(_record(f"test_corpus[{case}-{method}]", 0.01, **extra))
    return out


def _gradcheck_records():
    out = []
    for dtype in ("float32", "float64"):
        for tool, caught, fails, evals in (("calcjax", 27, 0, 12.0), ("check_grads", 20, 3, 4.0)):
            bug = {"suite": "gradcheck", "problem": "bug", "kind": "bug", "n": 28, "method": tool,
                   "dtype": dtype, "cases": 28, "resolvable": 27, "detected": caught,
                   "culprit_named": 26 if tool == "calcjax" else None, "rate": caught / 27,
                   "f_evals_per_check": evals, "f_evals": round(evals)}  # fmt: skip
            ok = {"suite": "gradcheck", "problem": "correct", "kind": "correct", "n": 200, "method": tool,
                  "dtype": dtype, "cases": 200, "false_failures": fails, "rate": fails / 200,
                  "f_evals_per_check": evals, "f_evals": round(evals)}  # fmt: skip
            out += [_record(f"test_gradcheck[{dtype}-bug-{tool}]", 0.1, **bug),
                    _record(f"test_gradcheck[{dtype}-correct-{tool}]", 0.1, **ok)]  # fmt: skip
    return out


def _run(tmp_path, records):
    raw = make_raw()
    raw["benchmarks"] = raw["benchmarks"] + records
    return report.load_run(write_run(tmp_path, "run", raw))


def test_corpus_table_renders_case_by_case_with_f_evaluations(tmp_path):
    page = TABLES["corpus.md"].page(_run(tmp_path, _corpus_records()))
    md = page.markdown()
    assert "log at 1e-05 (hard)" in md
    assert ("2.2e-11 (20)" in md and "0.159 (2)" in md) or "1.6e-01 (2)" in md
    header = next(line for line in md.splitlines() if line.startswith("| case "))
    assert header.index("calcjax-richardson") < header.index("numdifftools") < header.index("scipy")
    # the summary: hard subset and all, medians and maxima, a NaN counted as non-finite
    summary = [line for line in md.splitlines() if line.startswith("| hard (1)") and "numdifftools" in line]
    assert summary
    assert "| 1 |" in summary[0]
    html = page.html()
    assert "<table" in html
    assert "log at 1e-05" in html


def test_gradcheck_table_puts_the_tools_side_by_side(tmp_path):
    page = TABLES["gradcheck.md"].page(_run(tmp_path, _gradcheck_records()))
    md = page.markdown()
    assert "| dtype | cases | calcjax | check_grads |" in md.replace("  ", " ")
    assert "100% (27/27)" in md
    assert "74% (20/27)" in md
    assert "0.0% (0/200)" in md
    assert "1.5% (3/200)" in md
    assert "12.0" in md
    assert "Culprit leaf named by calcjax: float32: 26/27" in md
    assert "<table" in page.html()


def test_tables_are_absent_without_their_suites(tmp_path):
    run = _run(tmp_path, [])
    assert TABLES["corpus.md"].page(run) is None
    assert TABLES["gradcheck.md"].page(run) is None
