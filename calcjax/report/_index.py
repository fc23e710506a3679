"""The results index (results/README.md) and the headline between README markers."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from calcjax._files import write_atomic
from calcjax._fmt import md_table
from calcjax._provenance import describe
from calcjax._schema import (
    CSV_NAME,
    INDEX_NAME,
    PLOTS_DIR,
    RAW_NAME,
    TABLE_NAMES,
)
from calcjax.report._common import ReportError
from calcjax.report._hist import HISTORY_NAME, history_blocks
from calcjax.report._html import HTML_NAME, document, is_ours, png_uri
from calcjax.report._load import Run, load_run
from calcjax.report._page import Page, Table, _inline
from calcjax.report._registry import TABLES
from calcjax.report._tables import headline_page, headline_picks

# --------------------------------------------------------------------------- index and README


def _run_dirs(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.iterdir() if p.is_dir() and (p / RAW_NAME).is_file())


def _newest(runs: Sequence[Run]) -> Run:
    """The newest run that has a headline (scalable gradient benchmarks), else the newest run.

    A run of one suite (``--full -- -k corpus``) does not replace the headline of the last
    run that measured one.
    """
    by_date = lambda r: (str(r.raw.get("datetime") or ""), r.run_id)
    with_headline = [r for r in runs if headline_picks(r)]
    return max(with_headline or runs, key=by_date)


#: The first line of every Markdown index calcjax writes: how it recognises its own.
INDEX_MARKER = "_Rebuilt by `calcjax report` from each run's raw.json; do not edit by hand._"
#: Where the index goes when the results folder holds a README.md or index.html calcjax did not write.
FALLBACK_NAMES = {INDEX_NAME: "calcjax-index.md", HTML_NAME: "calcjax-index.html"}


def _md_is_ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == INDEX_MARKER
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _index_path(results_dir: Path, name: str) -> Path:
    """``results_dir/name`` when calcjax wrote it (or it is missing), else the fallback (said on stderr)."""
    path = results_dir / name
    ours = _md_is_ours(path) if name.endswith(".md") else is_ours(path)
    if ours:
        return path
    other = results_dir / FALLBACK_NAMES[name]
    print(
        f"calcjax report: {path} was not written by calcjax (no index marker); left as it is, "
        f"index written to {other.name} instead",
        file=sys.stderr,
    )
    return other


def _runs_of(results_dir: Path) -> tuple[list[Run], list[tuple[str, str]]]:
    runs, broken = [], []
    for d in _run_dirs(results_dir):
        try:
            runs.append(load_run(d))
        except ReportError as err:
            broken.append((d.name, str(err).replace(str(d / RAW_NAME), RAW_NAME)))
    runs.sort(key=lambda r: (str(r.raw.get("datetime") or ""), r.run_id), reverse=True)
    return runs, broken


def _run_rows(runs: Sequence[Run], broken: Sequence[tuple[str, str]], *, html: bool) -> list[list[str]]:
    rows = []
    for run in runs:
        if html:
            page = run.path / HTML_NAME
            first = f"[`{run.run_id}`]({run.run_id}/{HTML_NAME})" if page.is_file() else f"`{run.run_id}`"
            links = [f"[{n.removesuffix('.md')}]({run.run_id}/{n})" for n in _tables_of(run)]
        else:
            first = f"[`{run.run_id}`]({run.run_id}/)"
            links = [f"[{n.removesuffix('.md')}]({run.run_id}/{n})" for n in _tables_of(run)]
        if (run.path / CSV_NAME).is_file():
            links.append(f"[csv]({run.run_id}/{CSV_NAME})")
        if run.incomplete:
            first += " (incomplete)"
        rows.append(
            [
                first,
                run.date,
                run.device_text(),
                run.cpu_text(),
                run.jax_text().removeprefix("JAX "),
                describe(run.raw),
                str(len(run.records)),
                " · ".join(links) or "not built yet: `calcjax report`",
            ]
        )
    rows += [[f"`{name}`", "—", "—", "—", "—", "—", "—", f"unreadable: {why}"] for name, why in broken]
    return rows


def _tables_of(run: Run) -> list[str]:
    return [n for n in dict.fromkeys((*TABLE_NAMES, *TABLES)) if (run.path / n).is_file()]


_RUN_HEADER = ["run", "date", "device", "machine", "JAX", "code", "records", "tables"]


def write_index(results_dir: Path | str) -> Path:
    """Write the results index: ``README.md``, ``index.html`` and ``history.md`` with its plots.

    Every run (newest first), the comparisons, the history of the headline benchmarks
    across runs and the newest run's headline. A run whose ``raw.json`` cannot be read is
    listed with the reason, not skipped silently. A ``README.md`` or ``index.html`` that
    calcjax did not write (no index marker) is left alone: the index goes to
    ``calcjax-index.md`` / ``calcjax-index.html`` and a line on stderr says so.

    Returns:
      the path of the Markdown index.
    """
    from calcjax.report._plots import _render

    results_dir = Path(results_dir)
    runs, broken = _runs_of(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    compares = sorted(p.name for p in results_dir.glob("compare-*.md"))
    hist_blocks, hist_plots = history_blocks(runs)
    plot_dir = results_dir / PLOTS_DIR
    if hist_plots:
        plot_dir.mkdir(exist_ok=True)
        for name, panels in hist_plots.items():
            tmp = plot_dir / f".{name}.tmp"
            _render(panels, tmp)
            os.replace(tmp, plot_dir / name)
    for old in plot_dir.glob("history-*.png") if plot_dir.is_dir() else ():
        if old.name not in hist_plots:
            old.unlink()
    history = Page("History of the headline benchmarks", INDEX_MARKER, hist_blocks)
    write_atomic(results_dir / HISTORY_NAME, history.markdown())

    newest = _newest(runs) if runs else None
    md = [
        INDEX_MARKER,
        "# Benchmark runs",
        "Open [`index.html`](index.html) in a browser for every run's tables and plots on one page.",
        md_table(_RUN_HEADER, _run_rows(runs, broken, html=False))
        if runs or broken
        else "_No runs yet: `calcjax bench` makes one._",
    ]
    if compares:
        md.append("## Comparisons\n\n" + "\n".join(f"- [{c.removesuffix('.md')}]({c})" for c in compares))
    md.append(f"## History\n\nThe headline benchmarks across runs: [{HISTORY_NAME}]({HISTORY_NAME}).")
    if newest is not None:
        head = headline_page(newest)
        md.append(
            f"## Headline (newest run with one, `{newest.run_id}`)\n\n"
            f"{newest.provenance()}\n\n{head.body_markdown()}"
        )
    path = _index_path(results_dir, INDEX_NAME)
    write_atomic(path, "\n\n".join(md) + "\n")

    pictures = {f"{PLOTS_DIR}/{n}": png_uri((plot_dir / n).read_bytes()) for n in hist_plots}
    body = ["<h1>Benchmark runs</h1>"]
    if newest is not None:
        body.append(
            headline_page(newest)
            .html(level=2, images=False)
            .replace(
                "<h2>Headline</h2>",
                f'<h2>Headline (newest run with one, <a href="{newest.run_id}/{HTML_NAME}">'
                f"<code>{newest.run_id}</code></a>)</h2>"
                f'\n<p class="prov">{_inline(newest.provenance())}</p>',
                1,
            )
        )
    body += [
        "<h2>Runs</h2>",
        Table.of(_RUN_HEADER, _run_rows(runs, broken, html=True)).html()
        if runs or broken
        else "<p>No runs yet: <code>calcjax bench</code> makes one.</p>",
    ]
    if compares:
        items = []
        for c in compares:
            page = c.removesuffix(".md") + ".html"
            target = page if (results_dir / page).is_file() else c
            items.append(f'<li><a href="{target}">{c.removesuffix(".md")}</a></li>')
        body.append("<h2>Comparisons</h2>\n<ul>\n" + "\n".join(items) + "\n</ul>")
    body.append(history.html(level=2, image_src=lambda src: pictures.get(src, src)))
    write_atomic(_index_path(results_dir, HTML_NAME), document("calcjax benchmark runs", "\n".join(body)))
    return path


def _split_markers(path: Path, marker: str) -> tuple[str, str, str]:
    """``path``'s text as (before the start marker, between the markers, from the end marker on)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    if old.count(start) != 1 or old.count(end) != 1 or old.index(start) > old.index(end):
        raise ReportError(f"{path} must hold {start} and then {end}, once each")
    head, rest = old.split(start)
    between, tail = rest.split(end)
    return head + start, between, end + tail


def update_readme_markers(path: Path | str, text: str, *, marker: str = "headline") -> bool:
    """Replace what lies between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->`` in ``path``.

    The markers stay; ``text`` goes between them on lines of its own. Returns
    whether the file changed.

    Raises:
      ReportError: the file is missing or does not hold both markers, in order, once.
    """
    path = Path(path)
    head, between, tail = _split_markers(path, marker)
    body = f"\n{text.strip()}\n"
    if between == body:
        return False
    write_atomic(path, head + body + tail)
    return True
