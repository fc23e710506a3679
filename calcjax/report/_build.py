"""Building every derived file of a run, all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from calcjax._schema import (
    CSV_NAME,
    PLOTS_DIR,
    TABLE_NAMES,
)
from calcjax.report._csv import _csv_text
from calcjax.report._html import HTML_NAME, plot_files, run_page
from calcjax.report._load import Run, load_run
from calcjax.report._page import Page
from calcjax.report._plots import _plot_specs, _render
from calcjax.report._registry import TABLES
from calcjax.report._tables import headline_page


def _pages(run: Run, plots: frozenset[str]) -> list[tuple[str, str, Page]]:
    """(file name, explanation, page) of every registered table the run has records for."""
    out = []
    for name, table in TABLES.items():
        page = table.page(run, plots)
        if page is not None:
            out.append((name, table.explanation, page))
    return out


def _texts(run: Run, plots: frozenset[str]) -> dict[str, str]:
    texts = {CSV_NAME: _csv_text(run), "headline.md": headline_page(run).markdown()}
    for name, _, page in _pages(run, plots):
        texts[name] = page.markdown()
    return texts


def _html(run: Run, plots: list[str], plot_dir: Path) -> str:
    """The run's ``index.html``, its plots (in the order given) read from ``plot_dir``."""
    files = {p[0]: p for p in plot_files(plot_dir)}
    return run_page(
        run.run_id,
        run.provenance(),
        headline_page(run),
        _pages(run, frozenset(plots)),
        [files[name] for name in plots if name in files],
    )


def _build(run: Run, *, plots: bool = True) -> Path:
    run_dir = run.path
    specs = _plot_specs(run)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=run_dir))
    try:
        for name, text in _texts(run, frozenset(specs)).items():
            (tmp / name).write_text(text, encoding="utf-8", newline="\n")
        if plots:
            (tmp / PLOTS_DIR).mkdir()
            for name, panels in specs.items():
                _render(panels, tmp / PLOTS_DIR / name)
        page = _html(run, list(specs), tmp / PLOTS_DIR if plots else run_dir / PLOTS_DIR)
        (tmp / HTML_NAME).write_text(page, encoding="utf-8", newline="\n")
        # Everything is ready: move it into place, file by file (each move is atomic).
        if plots:
            (run_dir / PLOTS_DIR).mkdir(exist_ok=True)
            for name in specs:
                os.replace(tmp / PLOTS_DIR / name, run_dir / PLOTS_DIR / name)
            for old in (run_dir / PLOTS_DIR).glob("*.png"):
                if old.name not in specs:
                    old.unlink()
        for name in dict.fromkeys((CSV_NAME, HTML_NAME, *TABLE_NAMES, *TABLES)):
            if (tmp / name).exists():
                os.replace(tmp / name, run_dir / name)
            elif (run_dir / name).exists():
                (run_dir / name).unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def build_reports(run_dir: Path | str, *, plots: bool = True) -> Path:
    """Rebuild every derived file of one run from its ``raw.json``; return the run directory.

    Writes ``benchmarks.csv``, the Markdown tables and ``plots/*.png`` (see the
    module docstring). Table files the run has no records for are not written.
    ``plots=False`` leaves the PNGs as they are (the tables are the same either way).

    Raises:
      ReportError: missing, corrupt or foreign ``raw.json``; nothing is written then.
    """
    return _build(load_run(run_dir), plots=plots)
