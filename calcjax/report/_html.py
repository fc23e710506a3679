"""Self-contained HTML pages: a run's ``index.html`` and the results' ``index.html``.

Every page is one file: the style sheet is inline, there is no script, and each
plot is a PNG data URI, so a page opens from disk, from a CI artifact or from a
mail attachment with nothing to fetch. The tables come from the same
:class:`~calcjax.report._page.Page` blocks as the Markdown files. Like the
Markdown, the HTML depends only on the raw JSON and the report code: no time
stamp, no absolute path.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from calcjax._schema import CSV_NAME, NONJAX_PLOT, PLOTS_DIR
from calcjax.report._page import Page, _inline

#: The ``<meta name="generator">`` of every page calcjax writes: how an index is recognised as its own.
GENERATOR = "calcjax report"
#: A run folder's page and the results folder's page.
HTML_NAME = "index.html"

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;
padding:0 1.5em 3em;color:#1b1f24;background:#fff}
h1{font-size:1.7em;margin:1em 0 .2em}h2{font-size:1.35em;margin:1.6em 0 .3em;border-bottom:1px solid #d0d7de}
h3{font-size:1.12em;margin:1.2em 0 .3em}h4,h5,h6{font-size:1em}
.prov{color:#57606a;font-size:.9em}.explain{color:#444;margin:.2em 0 .6em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.88em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.25em .6em;white-space:nowrap}
th{background:#f6f8fa;text-align:left;white-space:normal;vertical-align:bottom}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
code{background:#f3f4f6;padding:0 .25em;border-radius:3px;font-size:.92em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#57606a;font-size:.9em}nav a{margin-right:1em}
""".strip()


def document(title: str, body: str) -> str:
    """A complete HTML page around ``body``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="generator" content="{GENERATOR}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def is_ours(path: Path) -> bool:
    """Whether ``path`` is an HTML page calcjax wrote (or missing)."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:1000]
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">' in head


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(data: bytes, caption: str) -> str:
    alt = html.escape(caption)
    return f'<figure><img src="{png_uri(data)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def run_page(
    run_title: str,
    provenance: str,
    headline: Page,
    tables: Sequence[tuple[str, str, Page]],
    plots: Iterable[tuple[str, bytes, str]],
    *,
    has_csv: bool = True,
) -> str:
    """A run's page: the headline, then each table with its one-line explanation, then the plots.

    Args:
      run_title: the run's id.
      provenance: the run's provenance line (Markdown).
      headline: the headline page.
      tables: ``(file name, explanation, page)`` per table, in order.
      plots: ``(file name, PNG bytes, caption)`` per plot, in order.
      has_csv: link the run's CSV.
    """
    plots = list(plots)
    nav = [f'<a href="#{_anchor(name)}">{html.escape(page.title)}</a>' for name, _, page in tables]
    if plots:
        nav.append('<a href="#plots">Plots</a>')
    files = [f'<a href="{html.escape(name)}">{html.escape(name)}</a>' for name, _, _ in tables]
    if has_csv:
        files.append(f'<a href="{CSV_NAME}">{CSV_NAME}</a>')
    parts = [
        f'<p><a href="../{HTML_NAME}">← all runs</a></p>',
        f"<h1>Run <code>{html.escape(run_title)}</code></h1>",
        f'<p class="prov">{_inline(provenance)}</p>',
        f"<nav>{' '.join(nav)}</nav>",
        '<section id="headline">',
        headline.html(level=2, images=False),
        "</section>",
    ]
    for name, explanation, page in tables:
        title, _, body = page.html(level=2, images=False).partition("\n")
        parts += [
            f'<section id="{_anchor(name)}">',
            title,
            f'<p class="explain">{_inline(explanation)} <a href="{html.escape(name)}">Markdown</a></p>',
            body,
            "</section>",
        ]
    if plots:
        parts += ['<section id="plots">', "<h2>Plots</h2>"]
        parts += [figure(data, caption) for _, data, caption in plots]
        parts.append("</section>")
    parts.append(f"<p>Files: {' · '.join(files)}</p>")
    return document(f"calcjax run {run_title}", "\n".join(parts))


def _anchor(name: str) -> str:
    return "t-" + name.removesuffix(".md").replace(".", "-").replace("_", "-")


def plot_caption(name: str) -> str:
    """A plot's caption from its file name (``time-vs-n-logistic.png``)."""
    stem = name.removesuffix(".png")
    if name == NONJAX_PLOT:  # one plot for every problem: no suffix to name
        return "Functions JAX cannot trace: median time of one gradient per method"
    for prefix, text in (
        ("time-vs-n-", "Time of one gradient against n"),
        ("vcurve-", "Error against step size (V-curve)"),
        ("descent-race-", "Descent race: loss against step, f-evaluations and wall time"),
        ("descent-", "Gradient descent: loss against step and against wall time"),
        ("history-", "Headline times across runs"),
        ("devices-", "Time on each device"),
    ):
        if stem.startswith(prefix):
            return f"{text}: {stem.removeprefix(prefix)}"
    return stem


def plot_files(plot_dir: Path) -> list[tuple[str, bytes, str]]:
    """Every PNG in ``plot_dir`` as (name, bytes, caption), sorted by the order plots are made."""
    if not plot_dir.is_dir():
        return []
    order = ("time-vs-n-", "vcurve-", "descent-")
    rank = lambda p: (next((i for i, o in enumerate(order) if p.name.startswith(o)), len(order)), p.name)
    return [(p.name, p.read_bytes(), plot_caption(p.name)) for p in sorted(plot_dir.glob("*.png"), key=rank)]


__all__ = ["GENERATOR", "HTML_NAME", "PLOTS_DIR", "document", "figure", "is_ours", "plot_files", "run_page"]
