"""What every report table shows besides the numbers: provenance, few-round marks, self-references."""

from __future__ import annotations

import copy

import pytest

from calcjax import report
from calcjax.report._page import FEW_MARK, FEW_NOTE, REFERENCE_CELL
from calcjax.report._registry import TABLES
from tests.helpers import make_raw, write_run


def _edit(raw, method, **changes):
    for b in raw["benchmarks"]:
        e = b.get("extra_info") or {}
        if e.get("suite") in ("gradient", "accuracy") and e.get("method") == method:
            for k, v in changes.items():
                if k == "rounds":
                    b["stats"]["rounds"] = v
                    b["stats"]["data"] = b["stats"]["data"][:v]
                else:
                    e[k] = v
    return raw


def _tables(run_dir):
    return {
        name: (run_dir / name).read_text() for name in ("headline.md", *TABLES) if (run_dir / name).exists()
    }


def test_provenance_line_names_the_code(tmp_path):
    raw = make_raw()
    raw["commit_info"] = {"id": "bab16fedeaf1c67d2b93d1ef5f501a980e6c4522", "dirty": True}
    run = write_run(tmp_path, "r", raw)
    report.build_reports(run, plots=False)
    for name, text in _tables(run).items():
        first = text.splitlines()[0]
        assert "commit bab16fe (tree dirty by git describe) · sources not recorded" in first, name


def test_provenance_line_of_an_old_run_says_not_recorded(tmp_path):
    run = write_run(tmp_path, "r", make_raw())
    report.build_reports(run, plots=False)
    assert "commit not recorded · sources not recorded" in (run / "speed.md").read_text().splitlines()[0]


def test_few_round_times_are_marked_in_every_table(tmp_path):
    run = write_run(tmp_path, "r", _edit(make_raw(), "numpy-loop", rounds=1))
    report.build_reports(run, plots=False)
    texts = _tables(run)
    marked = {name for name, text in texts.items() if FEW_MARK in text}
    assert {"headline.md", "speed.md", "fd_scaling.md"} <= marked
    for name in marked:
        assert FEW_NOTE in texts[name], name
    loop = next(x for x in texts["speed.md"].splitlines() if x.startswith("| numpy-loop |"))
    assert all(c.strip().endswith(FEW_MARK) for c in loop.strip("|").split("|")[1:] if c.strip() != "—")
    # with enough rounds, nothing is marked
    clean = write_run(tmp_path, "c", make_raw())
    report.build_reports(clean, plots=False)
    assert not any(FEW_MARK in t for t in _tables(clean).values())


def test_self_reference_says_reference(tmp_path):
    raw = _edit(copy.deepcopy(make_raw()), "fd-central", reference="fd-central", rel_error=0.0)
    run = write_run(tmp_path, "r", raw)
    report.build_reports(run, plots=False)
    speed = (run / "speed.md").read_text()
    rows = [x for x in speed.splitlines() if x.startswith("| quadratic | float64 | 1,000 | fd-central |")]
    assert rows
    assert rows[0].split("|")[-3].strip() == REFERENCE_CELL
    acc = (run / "accuracy.md").read_text()
    assert any(x.startswith("| fd-central |") and REFERENCE_CELL in x for x in acc.splitlines())
    head = report.headline_table(run)
    assert REFERENCE_CELL in head
    # other methods keep their error
    assert any(x.startswith("| ad-reverse |") and REFERENCE_CELL not in x for x in acc.splitlines())


def test_a_readme_calcjax_did_not_write_is_left_alone(tmp_path, capsys):
    from calcjax.cli import main

    parent = tmp_path / "p"
    write_run(parent, "myrun", make_raw())
    (parent / "README.md").write_text("notes\n")
    (parent / "index.html").write_text("<html>my page</html>\n")
    assert main(["report", str(parent / "myrun"), "--no-plots"]) == 0
    assert (parent / "README.md").read_text() == "notes\n"
    assert (parent / "index.html").read_text() == "<html>my page</html>\n"
    err = capsys.readouterr().err
    assert "README.md was not written by calcjax" in err
    assert "calcjax-index.md" in err
    assert (parent / "calcjax-index.md").read_text().startswith(report._index.INDEX_MARKER)
    assert "calcjax report" in (parent / "calcjax-index.html").read_text()
    # an index calcjax wrote is recognised by its marker and rewritten in place
    (parent / "README.md").unlink()
    assert main(["report", str(parent / "myrun"), "--no-plots"]) == 0
    first = (parent / "README.md").read_text()
    assert first.startswith(report._index.INDEX_MARKER)
    assert main(["report", str(parent / "myrun"), "--no-plots"]) == 0
    assert (parent / "README.md").read_text() == first
    assert "README.md was not written by calcjax" not in capsys.readouterr().err


def test_an_incomplete_run_says_so_everywhere(tmp_path):
    """The hook for rebuilding an interrupted run: Run.incomplete reaches every table and the index."""
    import dataclasses

    from calcjax.report._build import _build
    from calcjax.report._load import load_run

    run_dir = write_run(tmp_path, "cut", make_raw())
    run = dataclasses.replace(load_run(run_dir), incomplete="interrupted after 120 of 300 benchmarks")
    _build(run, plots=False)
    for name, text in _tables(run_dir).items():
        assert "**Incomplete run:** interrupted after 120 of 300 benchmarks" in text.splitlines()[0], name
    assert "Incomplete run:" in (run_dir / "index.html").read_text()


def test_a_registered_table_reaches_markdown_and_html(tmp_path):
    """A new suite adds one definition; the report writes its Markdown and shows it in index.html."""
    from calcjax.report._page import Table
    from calcjax.report._registry import register_table

    def _methods(run, plots):
        counts = {}
        for r in run.records:
            counts[r.get("method")] = counts.get(r.get("method"), 0) + 1
        return ["One row per method.", Table.of(["method", "records"], sorted(counts.items(), key=str), "lr")]

    register_table("methods.md", "Methods seen", "How many records each method has.")(_methods)
    try:
        run_dir = write_run(tmp_path, "r", make_raw())
        report.build_reports(run_dir, plots=False)
        with pytest.raises(ValueError, match="registered already"):
            register_table("methods.md", "again", "again")(_methods)
    finally:
        del TABLES["methods.md"]
    text = (run_dir / "methods.md").read_text()
    assert text.startswith("_Run `r`")
    assert "# Methods seen" in text
    assert "| ad-reverse |" in text
    page = (run_dir / "index.html").read_text()
    assert "How many records each method has." in page
    assert "<td>ad-reverse</td>" in page


@pytest.mark.parametrize(
    ("markdown", "html_text"),
    [
        ("*vs loop*: how many times", "<em>vs loop</em>: how many times"),
        ("**bold** and *it*", "<strong>bold</strong> and <em>it</em>"),
        ("2 * n and 3 * m", "2 * n and 3 * m"),  # arithmetic is not emphasis
        ("a*b*c", "a*b*c"),
        ("`*x*` code", "<code>*x*</code> code"),
    ],
)
def test_inline_markdown_emphasis(markdown, html_text):
    from calcjax.report._page import _inline

    assert _inline(markdown) == html_text
