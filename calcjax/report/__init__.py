"""Reports: pytest-benchmark JSON -> tidy table -> CSV, Markdown tables, PNG plots and HTML pages.

``calcjax report`` rebuilds every derived file of a run from its ``raw.json``
alone, so this package reads files only: it imports neither JAX nor the
benchmark suite, and pandas and matplotlib only when it writes. The same raw
JSON always gives byte-identical CSV and Markdown (rows in a fixed order, floats
in a fixed format); the PNGs carry no timestamp or version stamp.

A run directory ``results/<run-id>/`` holds, after :func:`build_reports`:

- ``raw.json``: pytest-benchmark's JSON, the truth (never written here);
- ``benchmarks.csv``: one row per record, every stat, every ``extra_info``
  field and the machine facts as columns (pytest-benchmark's own CSV drops
  ``extra_info``);
- ``headline.md``, ``speed.md``, ``scaling.md``, ``accuracy.md``,
  ``descent.md``, ``fd_scaling.md``, ``sharding.md``, ``estimate.md``: each
  present when the run has the records it needs, each opening with the line
  that says which run, machine, device and JAX version made it;
- ``plots/*.png``: time against n, error against step size, descent losses;
- ``index.html``: the headline, each table with its one-line explanation, then the
  plots, in one self-contained file (inline style, plots as PNG data URIs).

The results folder gets ``README.md`` (only when calcjax wrote it: its first line is
the index marker; otherwise ``calcjax-index.md``), ``index.html``, ``history.md`` with
``plots/history-*.png``, and ``compare-A-vs-B.md``/``.html`` from ``--compare``.

Nothing is written half-way: files are built in a temporary directory and moved
into place only when all of them are ready; a missing, corrupt or foreign
``raw.json`` raises :class:`ReportError` before anything is written.

One module per part: ``_load`` (reading and checking), ``_csv``, ``_page`` (a page
as blocks, rendered to Markdown and HTML), ``_registry`` (one definition per table:
a new suite registers its table in its own module), ``_tables`` (the built-in
tables), ``_plots``, ``_html`` (the pages around the blocks), ``_build`` (writing a
run's files), ``_index`` (the results index and README markers), ``_hist`` (history
across runs), ``_runs`` (comparing two runs with the regression gate). The
record format itself lives in :mod:`calcjax._schema`, the formatting in
:mod:`calcjax._fmt`.
"""

from calcjax._fmt import (  # noqa: F401 (also importable from here, as before the split)
    fmt_bytes,
    fmt_error,
    fmt_h,
    fmt_n,
    fmt_ratio,
    fmt_time,
    md_table,
)
from calcjax._schema import (  # noqa: F401 (also importable from here, as before the split)
    CSV_NAME,
    DTYPE_ORDER,
    INDEX_NAME,
    METHOD_ORDER,
    PLOTS_DIR,
    PROBLEM_ORDER,
    RAW_NAME,
    SUITE_ORDER,
    TABLE_NAMES,
)
from calcjax.report import (
    _nonjax,  # noqa: F401 (registers nonjax.md)
    _peers,  # noqa: F401 (registers the corpus and gradcheck tables)
    _race,  # noqa: F401  (registers descent_race.md)
    _second_order,  # noqa: F401  (registers second_order.md)
)
from calcjax.report._build import build_reports
from calcjax.report._common import (  # noqa: F401 (also importable from here, as before the split)
    COMPUTE_LIMIT_MIN_N,
    FD_BLACK_BOX,
    FD_PEERS,
    HEADLINE_METHODS,
    HONEST_FACTOR,
    REFERENCE_METHOD,
    TUTORIAL_EPS,
    TUTORIAL_METHOD,
    ReportError,
)
from calcjax.report._csv import tidy_frame
from calcjax.report._index import update_readme_markers, write_index
from calcjax.report._load import Run, load_run
from calcjax.report._registry import TABLES, register_table
from calcjax.report._runs import compare_runs
from calcjax.report._tables import fit_exponent, headline_table

__all__ = [
    "TABLES",
    "ReportError",
    "Run",
    "build_reports",
    "compare_runs",
    "fit_exponent",
    "headline_table",
    "load_run",
    "register_table",
    "tidy_frame",
    "update_readme_markers",
    "write_index",
]
