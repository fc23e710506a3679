"""Reports: pytest-benchmark JSON -> tidy table -> CSV, Markdown tables and PNG plots.

``calcjax report`` rebuilds every derived file of a run from its ``raw.json``
alone, so this module reads files only: it imports neither JAX nor the
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
- ``plots/*.png``: time against n, error against step size, descent losses.

Nothing is written half-way: files are built in a temporary directory and moved
into place only when all of them are ready; a missing, corrupt or foreign
``raw.json`` raises :class:`ReportError` before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ReportError",
    "Run",
    "build_reports",
    "compare_runs",
    "fit_exponent",
    "headline_table",
    "load_run",
    "tidy_frame",
    "update_readme_markers",
    "write_index",
]

RAW_NAME = "raw.json"
CSV_NAME = "benchmarks.csv"
PLOTS_DIR = "plots"
INDEX_NAME = "README.md"
#: Every table file this module may write into a run directory (older ones it no longer
#: produces from the same run are removed on rebuild).
TABLE_NAMES = (
    "headline.md",
    "speed.md",
    "scaling.md",
    "accuracy.md",
    "descent.md",
    "fd_scaling.md",
    "sharding.md",
    "estimate.md",
)

#: The gradient every other one is measured against.
REFERENCE_METHOD = "ad-reverse"
#: Headline columns: autodiff, calcjax's FD and the tutorial's loop.
HEADLINE_METHODS = ("ad-reverse", "fd-central", "numpy-loop")
#: calcjax FD gradient -> the peer FD gradients it is compared with, like with like.
FD_PEERS = {
    "fd-forward": ("scipy-approx-fprime",),
    "fd-central": ("numpy-loop", "jax-vmap-naive", "jax-lax-map", "scipy-differentiate", "numdifftools"),
}
#: calcjax FD gradient -> the same gradient with f evaluated as written (share_products=False).
FD_BLACK_BOX = {"fd-central": "fd-central-blackbox"}
#: From this n on, fd_scaling.md gives the ratio to the compute limit.
COMPUTE_LIMIT_MIN_N = 10_000
#: The tutorial's ``numerical_derivative(func, x, eps=1e-5)`` step and the method that uses it.
TUTORIAL_EPS = 1e-5
TUTORIAL_METHOD = "numpy-loop"
#: An error estimate is honest when the true error is at most this many times the estimate.
HONEST_FACTOR = 10.0

# Display order; names not listed follow in alphabetical order. Method names match
# calcjax._methods.METHODS (kept as strings here so reports need no JAX; a test checks them).
SUITE_ORDER = ("derivative", "gradient", "feval", "accuracy", "vcurve", "estimate", "descent", "sharding")
PROBLEM_ORDER = ("square", "linear", "tutorial-quadratic", "quadratic", "rosenbrock", "logistic", "mlp")
METHOD_ORDER = (
    "ad-reverse",
    "ad-forward",
    "fd-forward",
    "fd-central",
    "fd-central-blackbox",
    "fd-central4",
    "fd-richardson",
    "fd-complex",
    "numpy-loop",
    "scipy-approx-fprime",
    "jax-vmap-naive",
    "jax-lax-map",
    "scipy-differentiate",
    "numdifftools",
)
DTYPE_ORDER = ("float32", "float64")

# benchmarks.csv column order: identity, extra_info (known fields first), stats, machine.
_ID_COLUMNS = ("run_id", "name", "fullname", "group", "param")
_EXTRA_ORDER = (
    "suite",
    "problem",
    "n",
    "method",
    "dtype",
    "device",
    "backend",
    "device_kind",
    "device_count",
    "devices",
    "batch",
    "steps",
    "scheme",
    "order",
    "h",
    "case",
    "compile_s",
    "f_evals",
    "rel_error",
    "abs_error",
    "reference",
    "true_error",
    "estimate",
    "final_loss",
    "peak_bytes",
    "peak_source",
)
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


class ReportError(ValueError):
    """A run that cannot be reported: missing, corrupt or foreign raw JSON, unknown run."""


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Run:
    """One benchmark run, read from ``<path>/raw.json``.

    Attributes:
      run_id: the run directory's name.
      path: the run directory.
      raw: the parsed pytest-benchmark JSON.
      records: calcjax's records in report order, each a flat dict: the ``extra_info``
        fields, ``time`` (median seconds per call), ``stats``, ``name`` and ``fullname``.
      skipped: records without calcjax's ``extra_info`` (left out of every table).
    """

    run_id: str
    path: Path
    raw: dict[str, Any]
    records: tuple[dict[str, Any], ...]
    skipped: int = 0

    def select(self, suite: str, **fields: Any) -> list[dict[str, Any]]:
        """The records of ``suite`` whose fields equal ``fields``."""
        return [
            r
            for r in self.records
            if r.get("suite") == suite and all(r.get(k) == v for k, v in fields.items())
        ]

    @property
    def machine(self) -> dict[str, Any]:
        """Machine facts: ``machine_info``, completed from the first record's ``extra_info``."""
        info = dict(self.raw.get("machine_info") or {})
        first = self.records[0] if self.records else {}
        for key in ("backend", "device_kind", "device_count"):
            if info.get(key) in (None, "") and first.get(key) not in (None, ""):
                info[key] = first[key]
        return info

    @property
    def date(self) -> str:
        """``YYYY-MM-DD HH:MM`` (UTC when the JSON says so) or ``"?"``."""
        stamp = str(self.raw.get("datetime") or "")
        m = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)", stamp)
        if not m:
            return "?"
        utc = stamp.endswith(("+00:00", "Z"))
        return f"{m.group(1)} {m.group(2)}{' UTC' if utc else ''}"

    def device_text(self) -> str:
        """``"NVIDIA H100 ×1 (gpu)"``, ``"cpu ×4"``."""
        m = self.machine
        kind = str(m.get("device_kind") or m.get("backend") or "?")
        backend = str(m.get("backend") or "")
        count = m.get("device_count")
        text = kind + (f" ×{count}" if count not in (None, "") else "")
        return text + (f" ({backend})" if backend and backend.lower() != kind.lower() else "")

    @property
    def cpu_cores(self) -> int | None:
        """The host's CPU cores, from ``machine_info``."""
        info = self.raw.get("machine_info") or {}
        cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
        return cpu.get("count") or info.get("cpu_cores")

    def cpu_text(self) -> str:
        info = self.raw.get("machine_info") or {}
        cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
        brand = cpu.get("brand_raw") or info.get("cpu_model") or info.get("processor") or "unknown CPU"
        return f"{brand} ({self.cpu_cores} cores)" if self.cpu_cores else str(brand)

    def jax_text(self) -> str:
        m = self.machine
        jax_v = m.get("jax_version") or m.get("jax") or "?"
        jaxlib_v = m.get("jaxlib_version") or m.get("jaxlib")
        return f"JAX {jax_v}" + (f" (jaxlib {jaxlib_v})" if jaxlib_v and jaxlib_v != jax_v else "")

    def provenance(self) -> str:
        """The line every table file opens with: run, machine, device, JAX, date."""
        return (
            f"_Run `{self.run_id}` · machine: {self.cpu_text()} · device: {self.device_text()} · "
            f"{self.jax_text()} · {self.date}_"
        )


def _raw_path(run: Path | str) -> Path:
    path = Path(run)
    return path if path.name == RAW_NAME and not path.is_dir() else path / RAW_NAME


def load_run(run_dir: Path | str) -> Run:
    """Read and check ``<run_dir>/raw.json`` (a path to the file itself also works).

    Raises:
      ReportError: the file is missing, is not JSON, is not pytest-benchmark JSON,
        or holds no record with calcjax's ``extra_info`` (a ``suite`` field).
    """
    raw_path = _raw_path(run_dir)
    if not raw_path.is_file():
        raise ReportError(f"no {RAW_NAME} in {raw_path.parent} (a run of `calcjax bench` leaves one there)")
    try:
        raw = json.loads(raw_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ReportError(f"{raw_path} is not text: {err}") from None
    except json.JSONDecodeError as err:
        raise ReportError(f"{raw_path} is not valid JSON: {err}") from None
    benchmarks = raw.get("benchmarks") if isinstance(raw, dict) else None
    if not isinstance(benchmarks, list) or not isinstance(raw.get("machine_info", {}), dict):
        raise ReportError(f"{raw_path} is not pytest-benchmark JSON (no 'benchmarks' list)")
    if not benchmarks:
        raise ReportError(f"{raw_path} holds no benchmark records")
    records, skipped = [], 0
    for i, bench in enumerate(benchmarks):
        if not isinstance(bench, dict) or not isinstance(bench.get("stats"), dict):
            raise ReportError(f"{raw_path}: benchmark #{i} has no 'stats' block; the file is corrupt")
        median = bench["stats"].get("median")
        if not isinstance(median, int | float) or isinstance(median, bool):
            raise ReportError(f"{raw_path}: benchmark #{i} has no numeric median time; the file is corrupt")
        extra = bench.get("extra_info")
        if not isinstance(extra, dict) or not extra.get("suite"):
            skipped += 1
            continue
        record = {k: v for k, v in extra.items() if v is not None}
        record["h"] = _parse_h(record.get("h"))
        bad = _bad_field(record)
        if bad:
            raise ReportError(f"{raw_path}: benchmark #{i} ({bench.get('name')}): {bad}; the file is corrupt")
        record.update(
            time=float(median),
            stats=bench["stats"],
            name=bench.get("name"),
            fullname=bench.get("fullname"),
            group=bench.get("group"),
            param=bench.get("param"),
            _index=i,
        )
        records.append(record)
    if not records:
        raise ReportError(
            f"{raw_path} holds no calcjax records (no extra_info 'suite' field): "
            "was it written by the calcjax benchmark suite?"
        )
    records.sort(key=_record_key)
    run_path = Path(os.path.abspath(raw_path.parent))  # '.' and 'x/..' have a name too
    return Run(run_path.name, run_path, raw, tuple(records), skipped)


_TEXT_FIELDS = ("suite", "problem", "method", "dtype", "scheme", "case")
_INT_FIELDS = ("n", "devices", "steps", "batch", "order", "f_evals", "device_count")
_NUMBER_FIELDS = (
    "compile_s",
    "rel_error",
    "abs_error",
    "true_error",
    "estimate",
    "final_loss",
    "peak_bytes",
)


def _bad_field(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's ``extra_info`` types, or ``None``."""
    for key in _TEXT_FIELDS:
        if key in record and not isinstance(record[key], str):
            return f"extra_info {key!r} must be text, got {record[key]!r}"
    for key in _INT_FIELDS:
        value = record.get(key)
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if key in record and (isinstance(value, bool) or not whole):
            return f"extra_info {key!r} must be a whole number, got {value!r}"
    for key in _NUMBER_FIELDS:
        value = record.get(key)
        if key in record and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"extra_info {key!r} must be a number, got {value!r}"
    h = record.get("h")
    if h is not None and h != "auto" and (isinstance(h, bool) or not isinstance(h, int | float)):
        return f"extra_info 'h' must be a step size or 'auto', got {h!r}"
    return None


def _parse_h(h: Any) -> Any:
    """A step size as a float, or ``"auto"``; other values unchanged."""
    if isinstance(h, str) and h != "auto":
        try:
            return float(h)
        except ValueError:
            return h
    return h


def _rank(value: Any, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value), "") if value in order else (len(order), str(value))


def _num(value: Any, default: float = -1.0) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _record_key(r: dict[str, Any]) -> tuple:
    h = r.get("h")
    return (
        _rank(r.get("suite"), SUITE_ORDER),
        _rank(r.get("problem"), PROBLEM_ORDER),
        _rank(r.get("method"), METHOD_ORDER),
        _rank(r.get("dtype"), DTYPE_ORDER),
        _num(r.get("n")),
        _num(r.get("devices")),
        _num(r.get("steps")),
        str(r.get("scheme", "")),
        _num(r.get("order")),
        (0, 0.0) if h == "auto" else (1, -_num(h, 0.0)),
        str(r.get("case", "")),
        r["_index"],
    )


# --------------------------------------------------------------------------- tidy CSV


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


# --------------------------------------------------------------------------- formatting


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_time(seconds: Any) -> str:
    """Seconds in the unit that reads best, three significant digits.

    >>> fmt_time(0.0012345), fmt_time(2.5e-7), fmt_time(0.99996e-3), fmt_time(12.0)
    ('1.23 ms', '250 ns', '1.00 ms', '12.0 s')
    """
    if _missing(seconds):
        return "—"
    s = float(seconds)
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if s >= scale * (1 - 5e-4) or unit == "ns":
            return f"{_sig3(s / scale)} {unit}"
    raise AssertionError("unreachable")


def _sig3(v: float) -> str:
    if v >= 99.95:
        return f"{v:.0f}"
    if v >= 9.995:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(ratio: Any) -> str:
    """A ratio as ``"12.3×"``: three significant digits, thousands separated.

    >>> fmt_ratio(1234.5), fmt_ratio(2.0), fmt_ratio(0.2), fmt_ratio(0.031)
    ('1,234×', '2.00×', '0.20×', '0.031×')
    """
    if _missing(ratio) or math.isinf(ratio):
        return "—"
    if ratio >= 99.95:
        return f"{ratio:,.0f}×"
    if ratio >= 1:
        return f"{_sig3(ratio)}×"
    return f"{ratio:#.2g}×"


def fmt_error(err: Any) -> str:
    """An error in scientific notation, two significant digits: ``"2.1e-10"``."""
    if _missing(err):
        return "—"
    return "0" if err == 0 else f"{float(err):.1e}"


def fmt_bytes(n: Any) -> str:
    """Bytes in binary units: ``"12.3 MiB"``."""
    if _missing(n):
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 999.5 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{_sig3(value)} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_n(n: Any) -> str:
    return "—" if _missing(n) else f"{int(n):,}"


def fmt_h(h: Any) -> str:
    if _missing(h):
        return "—"
    return h if isinstance(h, str) else f"{float(h):.0e}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown pipe table; ``align`` has one ``l``/``r`` per column."""
    align = align or "l" * len(header)
    esc = lambda cell: str(cell).replace("|", "\\|")
    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _page(run: Run, title: str, sections: Sequence[str]) -> str:
    body = "\n\n".join(s.strip("\n") for s in sections if s)
    return f"{run.provenance()}\n\n# {title}\n\n{body}\n"


def _ordered(values: Iterable[Any], order: Sequence[str] = ()) -> list[Any]:
    return sorted({v for v in values if not _missing(v)}, key=lambda v: _rank(v, order))


def _numbers(values: Iterable[Any]) -> list[float]:
    return sorted({v for v in values if isinstance(v, int | float) and not _missing(v)})


def _index(records: Iterable[dict[str, Any]], keys: Sequence[str]) -> dict[tuple, dict[str, Any]]:
    """First record for each value of ``keys`` (records are in report order)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in records:
        out.setdefault(tuple(r.get(k) for k in keys), r)
    return out


def _error(r: dict[str, Any] | None) -> Any:
    return None if r is None else r.get("rel_error")


# --------------------------------------------------------------------------- headline


def _headline(run: Run) -> str:
    grads = run.select("gradient")
    table_rows = []
    for problem in _ordered((r.get("problem") for r in grads), PROBLEM_ORDER):
        of_problem = [r for r in grads if r.get("problem") == problem]
        if len(_numbers(r.get("n") for r in of_problem)) < 2:
            continue  # not scalable in this run
        dtypes = _ordered((r.get("dtype") for r in of_problem), DTYPE_ORDER)
        dtype = "float64" if "float64" in dtypes else dtypes[0]
        by = _index((r for r in of_problem if r.get("dtype") == dtype), ("method", "n"))
        sizes = _numbers(r.get("n") for r in of_problem)
        common = [n for n in sizes if all((m, n) in by for m in HEADLINE_METHODS)]
        common = common or [n for n in sizes if all((m, n) in by for m in HEADLINE_METHODS[:2])]
        if not common:
            continue
        n = common[-1]
        ad, fd, loop = (by.get((m, n)) for m in HEADLINE_METHODS)
        t = [None if r is None else r["time"] for r in (ad, fd, loop)]
        table_rows.append(
            [
                problem,
                fmt_n(n),
                dtype,
                *(fmt_time(x) for x in t),
                fmt_ratio(_div(t[1], t[0])),
                fmt_ratio(_div(t[2], t[1])),
                " / ".join(fmt_error(_error(r)) for r in (ad, fd, loop)),
            ]
        )
    if not table_rows:
        return "_No scalable gradient benchmarks (suite `gradient`, two or more n) in this run._"
    header = [
        "problem",
        "n",
        "dtype",
        "jax.grad",
        "calcjax FD (central)",
        "NumPy loop (tutorial)",
        "FD ÷ jax.grad",
        "loop ÷ FD",
        "rel. error grad / FD / loop",
    ]
    caption = (
        "Median time of one gradient at the largest n all three ran: `jax.grad` (`ad-reverse`), "
        "calcjax's central differences (`fd-central`) and the tutorial's NumPy loop (`numpy-loop`, "
        "eps = 1e-5). Errors are relative to an independent reference gradient."
    )
    return md_table(header, table_rows, "lrl" + "r" * 6) + "\n\n" + caption


def headline_table(run_dir: Path | str) -> str:
    """The one table a newcomer needs, as Markdown, opening with the provenance line.

    For each scalable problem, at the largest n where ``ad-reverse``, ``fd-central``
    and ``numpy-loop`` all ran (float64 when the run has it): their times, the
    ratios FD ÷ AD and loop ÷ FD, and the three errors.
    """
    run = load_run(run_dir)
    return f"{run.provenance()}\n\n{_headline(run)}\n"


def _div(a: Any, b: Any) -> float | None:
    if _missing(a) or _missing(b) or b == 0:
        return None
    return float(a) / float(b)


# --------------------------------------------------------------------------- speed


def _feval_time(run: Run) -> dict[tuple, float]:
    """(problem, n, dtype) -> seconds per f evaluation inside a large batch (suite ``feval``)."""
    out: dict[tuple, float] = {}
    for r in run.select("feval"):
        key = (r.get("problem"), r.get("n"), r.get("dtype"))
        out.setdefault(key, r["time"] / max(_num(r.get("batch"), 1.0), 1.0))
    return out


def _speed(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    grads = run.select("gradient")
    derivs = run.select("derivative")
    if not grads and not derivs:
        return None
    ref = _index((r for r in grads if r.get("method") == REFERENCE_METHOD), ("problem", "n", "dtype"))
    f_time = _feval_time(run)
    sections = []
    for problem, dtype, of in _groups(grads, ("problem", "dtype")):
        sizes = _numbers(r.get("n") for r in of)
        by = _index(of, ("method", "n"))
        methods = _ordered((r.get("method") for r in of), METHOD_ORDER)
        rows = []
        for m in methods:
            cells = []
            for n in sizes:
                r = by.get((m, n))
                ref_r = ref.get((problem, n, dtype))
                if r is None:
                    cells.append("—")
                elif m == REFERENCE_METHOD:
                    cells.append(fmt_time(r["time"]))
                else:
                    cells.append(fmt_ratio(_div(r["time"], ref_r and ref_r["time"])))
            rows.append([m, *cells])
        sections.append(
            f"## {problem}, {dtype}: time as a multiple of `{REFERENCE_METHOD}`\n\n"
            + md_table(["method", *(f"n = {fmt_n(n)}" for n in sizes)], rows, "l" + "r" * len(sizes))
        )
        f_sizes = [n for n in sizes if (problem, n, dtype) in f_time]
        if f_sizes:
            rows = []
            for m in methods:
                ratios = [
                    _div(by[(m, n)]["time"], f_time[(problem, n, dtype)]) if (m, n) in by else None
                    for n in f_sizes
                ]
                rows.append([m, *(fmt_ratio(x) for x in ratios)])
            header = ["method", *(f"n = {fmt_n(n)}" for n in f_sizes)]
            sections.append(
                f"### {problem}, {dtype}: cost of a gradient in f-evaluations (grad time ÷ f time)\n\n"
                + md_table(header, rows, "l" + "r" * len(f_sizes))
            )
    if grads:
        links = _plot_links("time-vs-n", "time against n", (r.get("problem") for r in grads), plots)
        if links:
            sections.append("## Time against n\n\n" + links)
        rows = []
        for r in grads:
            ref_r = ref.get((r.get("problem"), r.get("n"), r.get("dtype")))
            f_t = f_time.get((r.get("problem"), r.get("n"), r.get("dtype")))
            rows.append(
                [
                    str(r.get("problem", "—")),
                    str(r.get("dtype", "—")),
                    fmt_n(r.get("n")),
                    str(r.get("method", "—")),
                    fmt_time(r["time"]),
                    fmt_time(_num(r["stats"].get("iqr"), math.nan)),
                    fmt_ratio(_div(r["time"], ref_r and ref_r["time"])),
                    fmt_ratio(_div(r["time"], f_t)),
                    fmt_time(r.get("compile_s")),
                    fmt_n(r.get("f_evals")),
                    fmt_error(r.get("rel_error")),
                    fmt_bytes(r.get("peak_bytes")),
                ]
            )
        header = [
            "problem",
            "dtype",
            "n",
            "method",
            "median",
            "IQR",
            f"÷ {REFERENCE_METHOD}",
            "grad ÷ f",
            "compile",
            "f-evals",
            "rel. error",
            "peak memory",
        ]
        sections.append("## All gradient records\n\n" + md_table(header, rows, "llrl" + "r" * 8))
    if derivs:
        rows = [
            [
                str(r.get("problem", "—")),
                str(r.get("dtype", "—")),
                str(r.get("method", "—")),
                str(r.get("scheme", "—")),
                str(r.get("order", "—")),
                fmt_time(r["time"]),
                fmt_time(r.get("compile_s")),
                fmt_error(r.get("rel_error")),
            ]
            for r in derivs
        ]
        header = ["problem", "dtype", "method", "scheme", "order", "median", "compile", "rel. error"]
        sections.append("## Scalar derivatives\n\n" + md_table(header, rows, "lllllrrr"))
    caption = (
        "Median wall time of one call, compiled and warmed up first (compile time apart). "
        f"The `{REFERENCE_METHOD}` row gives its own time; every other cell is a multiple of it."
    )
    if f_time:
        caption += (
            " f time is the time of one f evaluation inside a large batch (suite `feval`), "
            "so grad ÷ f counts a gradient in f-evaluations at full throughput."
        )
    return _page(run, "Speed", [caption, *sections])


def _groups(
    records: Sequence[dict[str, Any]], keys: Sequence[str]
) -> list[tuple[Any, ...]]:  # (*values, records)
    orders = {"problem": PROBLEM_ORDER, "method": METHOD_ORDER, "dtype": DTYPE_ORDER, "suite": SUITE_ORDER}
    seen: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        seen.setdefault(tuple(r.get(k) for k in keys), []).append(r)

    def sort_key(key: tuple) -> tuple:
        return tuple(
            _rank(v, orders[k]) if k in orders else (0, _num(v, 0.0), str(v))
            for k, v in zip(keys, key, strict=True)
        )

    return [(*key, seen[key]) for key in sorted(seen, key=sort_key)]


# --------------------------------------------------------------------------- scaling


def fit_exponent(ns: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope k of log(time) against log(n): time ∝ n^k.

    >>> round(fit_exponent([10, 100, 1000], [1e-3, 1e-1, 1e1]), 6)
    2.0
    """
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, times, strict=True) if n > 0 and t > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


def _fits(run: Run) -> list[tuple[str, str, str, list[float], float | None, float | None]]:
    out = []
    for problem, dtype, method, of in _groups(run.select("gradient"), ("problem", "dtype", "method")):
        by_n = _index(of, ("n",))
        ns = _numbers(r.get("n") for r in of)
        if len(ns) < 2:
            continue
        ts = [by_n[(n,)]["time"] for n in ns]
        out.append((problem, dtype, method, ns, fit_exponent(ns, ts), fit_exponent(ns[-2:], ts[-2:])))
    return out


def _scaling(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    fits = _fits(run)
    if not fits:
        return None
    sections = [
        "Fitted exponent k of time ∝ n^k, least squares on log time against log n over every n the "
        "method ran at. At small n, fixed overheads flatten the fit; the last column fits only the two "
        "largest n, nearer the asymptotic cost (AD ≈ 1 for these problems, central FD ≈ 2: "
        "2n evaluations of an O(n) function)."
    ]
    for dtype in _ordered((f[1] for f in fits), DTYPE_ORDER):
        of = [f for f in fits if f[1] == dtype]
        problems = _ordered((f[0] for f in of), PROBLEM_ORDER)
        by = {(f[2], f[0]): f for f in of}
        rows = [
            [m, *(_fmt_k(by[(m, p)][4]) if (m, p) in by else "—" for p in problems)]
            for m in _ordered((f[2] for f in of), METHOD_ORDER)
        ]
        sections.append(
            f"## {dtype}: k over all n\n\n" + md_table(["method", *problems], rows, "l" + "r" * len(problems))
        )
    rows = [
        [p, d, m, f"{fmt_n(ns[0])} – {fmt_n(ns[-1])}", str(len(ns)), _fmt_k(k_all), _fmt_k(k_top)]
        for p, d, m, ns, k_all, k_top in fits
    ]
    header = ["problem", "dtype", "method", "n range", "points", "k (all n)", "k (two largest n)"]
    sections.append("## Every fit\n\n" + md_table(header, rows, "lllrrrr"))
    return _page(run, "Scaling with n", sections)


def _fmt_k(k: float | None) -> str:
    return "—" if k is None else f"{k:.2f}"


# --------------------------------------------------------------------------- accuracy


def _accuracy_records(run: Run) -> tuple[list[dict[str, Any]], str]:
    acc = [r for r in run.select("accuracy") if not _missing(r.get("rel_error")) and r.get("method")]
    if acc:
        return acc, "suite `accuracy`"
    grads = [r for r in run.select("gradient") if not _missing(r.get("rel_error"))]
    largest = {}
    for r in grads:
        key = (r.get("problem"), r.get("dtype"))
        largest[key] = max(largest.get(key, -1), _num(r.get("n")))
    picked = [r for r in grads if _num(r.get("n")) == largest[(r.get("problem"), r.get("dtype"))]]
    return picked, "suite `gradient`, largest n per problem"


def _err_column(records: Sequence[dict[str, Any]]) -> str:
    if records and all(not _missing(r.get("rel_error")) for r in records):
        return "rel_error"
    return "abs_error"


def _vcurve_label(r: dict[str, Any]) -> str:
    if r.get("scheme"):
        order = r.get("order")
        return f"{r['scheme']}" + (f" o{order}" if not _missing(order) else "")
    return str(r.get("method", "?"))


def _accuracy(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    acc, source = _accuracy_records(run)
    vcurve = run.select("vcurve")
    if not acc and not vcurve:
        return None
    sections = []
    if acc:
        sections.append(
            f"Relative error of each gradient method against an independent reference gradient ({source})."
        )
        for dtype, of in _groups(acc, ("dtype",)):
            cols = [
                (p, n)
                for p, n, _ in _groups(of, ("problem", "n"))  # problem order, then n
            ]
            by = _index(of, ("method", "problem", "n"))
            rows = []
            for m in _ordered((r.get("method") for r in of), METHOD_ORDER):
                label = m
                if m == TUTORIAL_METHOD and dtype == "float32":
                    label = f"**{m}** (tutorial eps = 1e-5)"
                rows.append([label, *(fmt_error(_error(by.get((m, p, n)))) for p, n in cols)])
            header = ["method", *(f"{p} n={fmt_n(n)}" if not _missing(n) else str(p) for p, n in cols)]
            sections.append(f"## Gradient error, {dtype}\n\n" + md_table(header, rows, "l" + "r" * len(cols)))
        tutorial = [r for r in acc if r.get("method") == TUTORIAL_METHOD and r.get("dtype") == "float32"]
        if tutorial:
            sections.append(_tutorial_callout(tutorial, acc))
    if vcurve:
        sections.append(_vcurve_section(vcurve, plots))
    return _page(run, "Accuracy", sections)


def _tutorial_callout(tutorial: Sequence[dict[str, Any]], acc: Sequence[dict[str, Any]]) -> str:
    central = _index(
        (r for r in acc if r.get("method") == "fd-central" and r.get("dtype") == "float32"), ("problem", "n")
    )
    parts = []
    for r in tutorial:
        where = f"{r.get('problem')}" + (f" (n = {fmt_n(r.get('n'))})" if not _missing(r.get("n")) else "")
        ours = central.get((r.get("problem"), r.get("n")))
        vs = f" against {fmt_error(_error(ours))} for `fd-central`" if ours else ""
        parts.append(f"{fmt_error(r.get('rel_error'))} on {where}{vs}")
    return (
        "## The tutorial's step in float32\n\n"
        f"**The tutorial's `eps = 1e-5` in float32 (`{TUTORIAL_METHOD}`) is not a usable gradient:** "
        f"relative error {'; '.join(parts)}. float32 keeps about 7 significant digits "
        "(machine epsilon 1.2e-07), and f(x + h) − f(x − h) with h = 1e-5 cancels about 5 of them, "
        "so what is left is mostly rounding noise. A step scaled to the dtype (calcjax's automatic "
        "step, ∝ eps^(1/3) for central differences) or `jax.grad` avoids it."
    )


def _vcurve_section(vcurve: Sequence[dict[str, Any]], plots: frozenset[str]) -> str:
    col = _err_column(vcurve)
    kind = "relative" if col == "rel_error" else "absolute"
    rows = []
    grids = []
    for problem, of in _groups(vcurve, ("problem",)):
        series = _groups(of, ("scheme", "order", "dtype")) if of[0].get("scheme") else None
        series = series or [(None, None, d, g) for d, g in _groups(of, ("dtype",))]
        for *_, dtype, recs in series:
            label = _vcurve_label(recs[0])
            numeric = [r for r in recs if isinstance(r.get("h"), float | int) and not _missing(r.get(col))]
            auto = next((r for r in recs if r.get("h") == "auto"), None)
            tut = next((r for r in numeric if math.isclose(float(r["h"]), TUTORIAL_EPS)), None)
            best = min(numeric, key=lambda r: (r[col], -float(r["h"]))) if numeric else None
            rows.append(
                [
                    str(problem),
                    label,
                    str(dtype),
                    fmt_error(best and best[col]),
                    fmt_h(best and best["h"]),
                    fmt_error(auto and auto.get(col)),
                    fmt_error(tut and tut.get(col)),
                ]
            )
        hs = sorted({float(r["h"]) for r in of if isinstance(r.get("h"), float | int)}, reverse=True)
        cols = [(_vcurve_label(recs[0]), dtype, recs) for *_, dtype, recs in series]
        grid = []
        for h in hs:
            cells = []
            for _, _, recs in cols:
                hit = next((r for r in recs if r.get("h") == h), None)
                cells.append(fmt_error(hit and hit.get(col)))
            grid.append([fmt_h(h), *cells])
        auto_row = ["auto"]
        for _, _, recs in cols:
            hit = next((r for r in recs if r.get("h") == "auto"), None)
            auto_row.append(fmt_error(hit and hit.get(col)))
        if any(c != "—" for c in auto_row[1:]):
            grid.append(auto_row)
        header = ["h", *(f"{label} {dtype}" for label, dtype, _ in cols)]
        grids.append(
            f"### {problem}: {kind} error at each step size\n\n"
            + md_table(header, grid, "l" + "r" * len(cols))
            + (f"\n\n{link}" if (link := _plot_links("vcurve", "error against h", [problem], plots)) else "")
        )
    header = ["problem", "scheme", "dtype", "min error", "h at min", "automatic step", "h = 1e-5 (tutorial)"]
    return (
        "## Error against step size (the V-curve)\n\n"
        f"Too large a step leaves truncation error, too small a step rounding error: the {kind} error "
        "falls, bottoms out and rises again. The automatic step is calcjax's default, from the dtype.\n\n"
        + md_table(header, rows, "lllrrrr")
        + "\n\n"
        + "\n\n".join(grids)
    )


def _estimate(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    est = run.select("estimate")
    if not est:
        return None
    rows = []
    worst: dict[str, float] = {}
    for r in est:
        ratio = _div(r.get("true_error"), r.get("estimate"))
        if r.get("true_error") == 0:
            ratio = 0.0
        verdict = "—" if ratio is None else ("honest" if ratio <= HONEST_FACTOR else "optimistic")
        method = str(r.get("method", "—"))
        if ratio is not None:
            worst[method] = max(worst.get(method, 0.0), ratio)
        rows.append(
            [
                str(r.get("case", r.get("problem", "—"))),
                method,
                str(r.get("dtype", "—")),
                fmt_error(r.get("estimate")),
                fmt_error(r.get("true_error")),
                fmt_ratio(ratio) if ratio else ("0" if ratio == 0 else "—"),
                verdict,
            ]
        )
    header = ["case", "method", "dtype", "estimate", "true error", "true ÷ estimate", "verdict"]
    summary = md_table(
        ["method", "worst true ÷ estimate"],
        [[m, fmt_ratio(worst[m]) if worst[m] else "0"] for m in _ordered(worst, METHOD_ORDER)],
        "lr",
    )
    intro = (
        "An error estimate is honest when the true error is at most "
        f"{HONEST_FACTOR:g}× the estimate; an optimistic one claims more accuracy than there is."
    )
    return _page(
        run, "Error estimates against true errors", [intro, md_table(header, rows, "lllrrrl"), summary]
    )


# --------------------------------------------------------------------------- descent

#: The descent suite's yardstick: a bare ``lax.fori_loop`` of gradient steps, no loss history.
BARE_LOOP = "fori-bare"


def _descent(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    desc = run.select("descent")
    if not desc:
        return None
    key = lambda r: (r.get("problem"), r.get("n"), r.get("dtype"), r.get("steps"))
    tutorial, bare = {}, {}
    for r in desc:
        if "tutorial" in str(r.get("method", "")):
            tutorial.setdefault(key(r), r)
        if r.get("method") == BARE_LOOP:
            bare.setdefault(key(r), r)
    rows = []
    for r in desc:
        steps = _num(r.get("steps"), 0.0)
        base = tutorial.get(key(r))
        row = [
            str(r.get("problem", "—")),
            fmt_n(r.get("n")),
            str(r.get("dtype", "—")),
            str(r.get("method", "—")),
            fmt_n(r.get("steps")),
            fmt_time(r["time"]),
            fmt_time(r["time"] / steps if steps > 0 else None),
            fmt_error(r.get("final_loss")),
            fmt_time(r.get("compile_s")),
        ]
        if tutorial:
            row.append(fmt_ratio(_div(base and base["time"], r["time"])))
        if bare:
            yardstick = bare.get(key(r))
            row.append(fmt_ratio(_div(r["time"], yardstick and yardstick["time"])))
        rows.append(row)
    header = ["problem", "n", "dtype", "method", "steps", "time", "per step", "final loss", "compile"]
    if tutorial:
        header.append("speed-up vs tutorial loop")
    if bare:
        header.append("÷ bare fori_loop")
    caption = (
        "Median wall time of a whole descent (compile time apart), the time per step and the final loss."
        + (
            " Speed-up: the tutorial's pure-Python loop's time ÷ this method's, same steps."
            if tutorial
            else ""
        )
        + (
            f" ÷ bare fori_loop: this method's time ÷ that of `{BARE_LOOP}`, a bare `lax.fori_loop` of"
            " `jax.grad` steps that records no loss (same problem, n, dtype and steps); `scan-hand-vg`"
            " is a hand-written `lax.scan` over `jax.value_and_grad` that records the loss at every step,"
            " as `gradient_descent` (`scan-ad-reverse`) does."
            if bare
            else ""
        )
    )
    table = md_table(header, rows, "lrll" + "r" * (len(header) - 4))
    links = _plot_links("descent", "descent", (r.get("problem") for r in desc), plots)
    return _page(run, "Gradient descent", [caption, table, links])


# --------------------------------------------------------------------------- FD against peers


def _fd_scaling(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    grads = run.select("gradient")
    present = {r.get("method") for r in grads}
    pairs = [(ours, [p for p in peers if p in present]) for ours, peers in FD_PEERS.items()]
    pairs = [(ours, peers) for ours, peers in pairs if ours in present and peers]
    if not pairs:
        return None
    f_time = _feval_time(run)
    sections = [
        "calcjax's FD gradient against each peer FD gradient of the same kind, on the same problem, n "
        "and dtype, in one run. Peer cells: the peer's time ÷ calcjax's (above 1×: calcjax is faster), "
        "with the peer's peak memory. 'black-box f': calcjax's own gradient with `share_products=False` "
        "(f evaluated as written at every point), its time ÷ calcjax's. "
        + (
            f"From n = {fmt_n(COMPUTE_LIMIT_MIN_N)}, the compute limit is (f-evaluations) × (time of one "
            "f evaluation inside a large batch, suite `feval`); 'vs limit' is calcjax's time ÷ that limit "
            "(below 1×: calcjax shares f's matrix products of x between points, so a point costs less "
            "than an evaluation of f)."
            if f_time
            else "No `feval` records in this run, so no compute-limit column."
        )
    ]
    shown = {m for ours, peers in pairs for m in (ours, *peers, FD_BLACK_BOX.get(ours))}
    sources = _ordered(r.get("peak_source") for r in grads if r.get("method") in shown)
    if sources:
        names = ", ".join(f"`{src}`" for src in sources)
        sections[0] += f" Peak memory measured by {names} (column `peak_source` of the CSV)."
    for ours, peers in pairs:
        black_box = FD_BLACK_BOX.get(ours) if FD_BLACK_BOX.get(ours) in present else None
        for problem, dtype, of in _groups(
            [r for r in grads if r.get("method") in (ours, *peers, black_box)], ("problem", "dtype")
        ):
            by = _index(of, ("method", "n"))
            sizes = [n for n in _numbers(r.get("n") for r in of) if (ours, n) in by]
            if not sizes:
                continue
            rows = []
            for n in sizes:
                mine = by[(ours, n)]
                ratios = [_div(by[(p, n)]["time"], mine["time"]) if (p, n) in by else None for p in peers]
                cells = [
                    "—" if x is None else f"{fmt_ratio(x)} ({fmt_bytes(by[(p, n)].get('peak_bytes'))})"
                    for p, x in zip(peers, ratios, strict=True)
                ]
                known = [x for x in ratios if x is not None]
                limit = None
                per_eval = f_time.get((problem, n, dtype))
                if n >= COMPUTE_LIMIT_MIN_N and per_eval:
                    evals = _num(mine.get("f_evals"), 0.0) or (2 * n if "central" in ours else n + 1)
                    limit = _div(mine["time"], evals * per_eval)
                row = [fmt_n(n), fmt_time(mine["time"]), fmt_bytes(mine.get("peak_bytes"))]
                if black_box:
                    plain = by.get((black_box, n))
                    row.append("—" if plain is None else fmt_ratio(_div(plain["time"], mine["time"])))
                row += cells
                row += [fmt_ratio(min(known)) if known else "—"]
                if f_time:
                    row.append(fmt_ratio(limit))
                rows.append(row)
            header = ["n", ours, "peak", *(["black-box f"] if black_box else []), *peers, "vs fastest peer"]
            if f_time:
                header.append("vs limit")
            sections.append(
                f"## {ours}, {problem}, {dtype}\n\n" + md_table(header, rows, "l" + "r" * (len(header) - 1))
            )
    return _page(run, "calcjax FD gradients against peer FD gradients", sections)


# --------------------------------------------------------------------------- sharding


def _sharding(run: Run, plots: frozenset[str] = frozenset()) -> str | None:
    shard = [r for r in run.select("sharding") if not _missing(r.get("devices"))]
    if not shard:
        return None
    counts = [int(c) for c in _numbers(r.get("devices") for r in shard)]
    rows = []
    for problem, n, dtype, method, of in _groups(shard, ("problem", "n", "dtype", "method")):
        by = _index(of, ("devices",))
        base = by.get((1,))
        row = [str(problem), fmt_n(n), str(dtype), str(method)]
        for c in counts:
            r = by.get((c,))
            if r is None:
                row.append("—")
            elif c == 1 or base is None:
                row.append(fmt_time(r["time"]))
            else:
                row.append(f"{fmt_time(r['time'])} ({fmt_ratio(_div(base['time'], r['time']))})")
        rows.append(row)
    header = ["problem", "n", "dtype", "method", *(f"{c} device{'s' if c > 1 else ''}" for c in counts)]
    notes = [
        "Median time of one sharded FD gradient with the batch of perturbed points split over 1, 2, 4 … "
        "devices; in brackets the speed-up over one device."
    ]
    m = run.machine
    if str(m.get("backend") or m.get("device_kind") or "").lower() == "cpu" or any(
        str(r.get("device_kind", "")).lower() == "cpu" for r in shard
    ):
        cores = run.cpu_cores
        notes.append(
            "**Note:** these are forced host devices (`--xla_force_host_platform_device_count`) on one CPU: "
            f"they share the machine's {cores or 'few'} cores, so the speed-up measures sharding overhead "
            "and parallelism XLA already had, not extra hardware."
        )
    table = md_table(header, rows, "lrll" + "r" * len(counts))
    return _page(run, "Sharding the FD batch over devices", [*notes, table])


# --------------------------------------------------------------------------- plots


def _plot_name(kind: str, problem: Any) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(problem)).strip("-") or "all"
    return f"{kind}-{slug}.png"


def _plot_links(kind: str, title: str, problems: Iterable[Any], plots: frozenset[str]) -> str:
    """Markdown image links to the ``kind`` plots written for ``problems``."""
    return "\n".join(
        f"![{title}: {p}]({PLOTS_DIR}/{_plot_name(kind, p)})"
        for p in _ordered(problems, PROBLEM_ORDER)
        if _plot_name(kind, p) in plots
    )


@dataclass(frozen=True)
class _Line:
    label: str
    xs: list[float]
    ys: list[float]
    marker: str = "o"
    color: int | None = None  # index into the palette: one method, one colour in every plot


@dataclass
class _Panel:
    """One set of axes: lines, dotted levels (y, index of the line whose colour), marked xs."""

    title: str
    xlabel: str
    ylabel: str
    xlog: bool = True
    ylog: bool = True
    lines: list[_Line] = field(default_factory=list)
    levels: list[tuple[float, int]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)


def _xy(points: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    pts = sorted(points)
    return [x for x, _ in pts], [y for _, y in pts]


def _plot_specs(run: Run) -> dict[str, list[_Panel]]:
    """Every plot of ``run`` as data (file name -> panels); only plots with a line in them."""
    specs: dict[str, list[_Panel]] = {}
    grads = run.select("gradient")
    methods = _ordered((r.get("method") for r in run.records), METHOD_ORDER)
    for problem, of in _groups(grads, ("problem",)):
        if len(_numbers(r.get("n") for r in of)) < 2:
            continue
        panels = []
        for dtype in _ordered((r.get("dtype") for r in of), DTYPE_ORDER):
            panel = _Panel(f"{problem}, {dtype}", "n (parameters)", "median time (s)")
            for method, recs in _groups([r for r in of if r.get("dtype") == dtype], ("method",)):
                xs, ys = _xy((r["n"], r["time"]) for r in recs if _num(r.get("n"), 0) > 0 and r["time"] > 0)
                if xs:
                    panel.lines.append(_Line(str(method), xs, ys, color=methods.index(method)))
            panels.append(panel)
        specs[_plot_name("time-vs-n", problem)] = panels

    vcurve = run.select("vcurve")
    col = _err_column(vcurve)
    kind = "relative" if col == "rel_error" else "absolute"
    for problem, of in _groups(vcurve, ("problem",)):
        title = f"error against step size: {problem} (dotted: automatic step)"
        panel = _Panel(title, "step h", f"{kind} error")
        for _, _, dtype, recs in _groups(of, ("scheme", "order", "dtype")):
            xs, ys = _xy(
                (float(r["h"]), float(r[col]))
                for r in recs
                if isinstance(r.get("h"), int | float) and r["h"] > 0 and _num(r.get(col), 0) > 0
            )
            if not xs:
                continue
            panel.lines.append(_Line(f"{_vcurve_label(recs[0])} {dtype}", xs, ys, marker="."))
            auto = next((r for r in recs if r.get("h") == "auto" and _num(r.get(col), 0) > 0), None)
            if auto:
                panel.levels.append((float(auto[col]), len(panel.lines) - 1))
        panel.marks.append((TUTORIAL_EPS, "tutorial eps = 1e-5"))
        specs[_plot_name("vcurve", problem)] = [panel]

    for problem, of in _groups(run.select("descent"), ("problem",)):
        curves, finals = [], []
        for method, n, dtype, recs in _groups(of, ("method", "n", "dtype")):
            label = f"{method}, n={fmt_n(n)}, {dtype}"
            color = methods.index(method) if method in methods else None
            history = next((h for h in map(_loss_history, reversed(recs)) if h), None)
            if history:
                losses = [v if v > 0 else math.nan for v in history]
                curves.append(_Line(label, [float(i) for i in range(len(losses))], losses, "", color))
            xs, ys = _xy(
                (float(r["steps"]), float(r["final_loss"]))
                for r in recs
                if _num(r.get("steps"), 0) > 0 and _num(r.get("final_loss"), 0) > 0
            )
            if xs:
                finals.append(_Line(label, xs, ys, "o", color))
        if curves:  # a loss history says more than final losses
            panels = [_Panel(f"gradient descent: {problem}", "step", "loss", xlog=False, lines=curves)]
        else:
            panels = [_Panel(f"gradient descent: {problem}", "steps", "final loss", lines=finals)]
        specs[_plot_name("descent", problem)] = panels

    return {name: panels for name, panels in specs.items() if any(p.lines for p in panels)}


# tab20 with the dark shades first: ten distinct hues, then their light twins.
_PALETTE = [*range(0, 20, 2), *range(1, 20, 2)]


def _render(panels: Sequence[_Panel], path: Path) -> None:
    """Draw ``panels`` side by side into a PNG with no timestamp or version stamp."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    width = 6.5 * len(panels)
    fig = Figure(figsize=(width, 4.5))
    # Fixed margins: a layout engine would draw every tick label twice, seconds per figure.
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.15 / width, bottom=0.12, top=0.91, wspace=0.25)
    tab20 = colormaps["tab20"].colors
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        colors = []
        for k, line in enumerate(panel.lines):
            i = k if line.color is None else line.color
            color = tab20[_PALETTE[i % len(_PALETTE)]]
            ax.plot(line.xs, line.ys, marker=line.marker or None, label=line.label, color=color)
            colors.append(color)
        for y, i in panel.levels:
            ax.axhline(y, color=colors[i], linestyle=":", linewidth=1)
        for x, label in panel.marks:
            ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=label)
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.xlog:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds and add little
        if panel.ylog:
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _loss_history(r: dict[str, Any]) -> list[float] | None:
    for key in ("loss_history", "losses", "loss_curve"):
        values = r.get(key)
        if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values):
            return [float(v) for v in values]
    return None


# --------------------------------------------------------------------------- building


_TABLES: dict[str, Callable[[Run, frozenset[str]], str | None]] = {
    "speed.md": _speed,
    "scaling.md": _scaling,
    "accuracy.md": _accuracy,
    "descent.md": _descent,
    "fd_scaling.md": _fd_scaling,
    "sharding.md": _sharding,
    "estimate.md": _estimate,
}


def _texts(run: Run, plots: frozenset[str]) -> dict[str, str]:
    texts = {
        CSV_NAME: _csv_text(run),
        "headline.md": f"{run.provenance()}\n\n# Headline\n\n{_headline(run)}\n",
    }
    for name, make in _TABLES.items():
        text = make(run, plots)
        if text is not None:
            texts[name] = text
    return texts


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
        # Everything is ready: move it into place, file by file (each move is atomic).
        if plots:
            (run_dir / PLOTS_DIR).mkdir(exist_ok=True)
            for name in specs:
                os.replace(tmp / PLOTS_DIR / name, run_dir / PLOTS_DIR / name)
            for old in (run_dir / PLOTS_DIR).glob("*.png"):
                if old.name not in specs:
                    old.unlink()
        for name in (CSV_NAME, *TABLE_NAMES):
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


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- index and README


def _run_dirs(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.iterdir() if p.is_dir() and (p / RAW_NAME).is_file())


def _newest(runs: Sequence[Run]) -> Run:
    return max(runs, key=lambda r: (str(r.raw.get("datetime") or ""), r.run_id))


def write_index(results_dir: Path | str) -> Path:
    """Write ``<results_dir>/README.md``: every run (newest first) and the newest run's headline.

    A run whose ``raw.json`` cannot be read is listed with the reason, not skipped silently.
    """
    results_dir = Path(results_dir)
    runs, broken = [], []
    for d in _run_dirs(results_dir):
        try:
            runs.append(load_run(d))
        except ReportError as err:
            broken.append((d.name, str(err).replace(str(d / RAW_NAME), RAW_NAME)))
    runs.sort(key=lambda r: (str(r.raw.get("datetime") or ""), r.run_id), reverse=True)
    rows = []
    for run in runs:
        links = " · ".join(
            [
                *(
                    f"[{n.removesuffix('.md')}]({run.run_id}/{n})"
                    for n in TABLE_NAMES
                    if (run.path / n).is_file()
                ),
                *([f"[csv]({run.run_id}/{CSV_NAME})"] if (run.path / CSV_NAME).is_file() else []),
            ]
        )
        rows.append(
            [
                f"[`{run.run_id}`]({run.run_id}/)",
                run.date,
                run.device_text(),
                run.cpu_text(),
                run.jax_text().removeprefix("JAX "),
                str(len(run.records)),
                links or "not built yet: `calcjax report`",
            ]
        )
    rows += [[f"`{name}`", "—", "—", "—", "—", "—", f"unreadable: {why}"] for name, why in broken]
    parts = [
        "_Rebuilt by `calcjax report` from each run's raw.json; do not edit by hand._",
        "# Benchmark runs",
        md_table(["run", "date", "device", "machine", "JAX", "records", "tables"], rows)
        if rows
        else "_No runs yet: `calcjax bench` makes one._",
    ]
    compares = sorted(p.name for p in results_dir.glob("compare-*.md")) if results_dir.is_dir() else []
    if compares:
        parts.append("## Comparisons\n\n" + "\n".join(f"- [{c.removesuffix('.md')}]({c})" for c in compares))
    if runs:
        newest = _newest(runs)
        parts.append(
            f"## Headline (newest run, `{newest.run_id}`)\n\n{newest.provenance()}\n\n{_headline(newest)}"
        )
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / INDEX_NAME
    _write_atomic(path, "\n\n".join(parts) + "\n")
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
    _write_atomic(path, head + body + tail)
    return True


# --------------------------------------------------------------------------- compare


def compare_runs(
    run_a: Path | str, run_b: Path | str, *, out_dir: Path | str | None = None
) -> tuple[Path, str]:
    """Time ratios A ÷ B for every record both runs have, with both runs' errors.

    Records match on suite, problem, method, n, dtype and the suite's own keys
    (devices, steps, scheme, order, h, case). Writes ``compare-<A>-vs-<B>.md``
    into ``out_dir`` (default: A's parent directory) and returns its path and text.
    """
    a, b = load_run(run_a), load_run(run_b)
    keys = (
        "suite",
        "problem",
        "method",
        "n",
        "dtype",
        "devices",
        "steps",
        "scheme",
        "order",
        "h",
        "case",
        "batch",
    )
    b_by = _index(b.records, keys)
    rows, ratios, only_a = [], {}, 0
    matched = set()
    for r in a.records:
        if r.get("suite") in ("vcurve", "estimate"):
            continue
        key = tuple(r.get(k) for k in keys)
        other = b_by.get(key)
        if other is None:
            only_a += 1
            continue
        matched.add(key)
        ratio = _div(r["time"], other["time"])
        if ratio:
            ratios.setdefault((r.get("suite"), r.get("method")), []).append(ratio)
        extra = []
        if not _missing(r.get("devices")):
            extra.append(f"{r['devices']} dev")
        if not _missing(r.get("steps")):
            extra.append(f"{r['steps']} steps")
        rows.append(
            [
                str(r.get("suite")),
                str(r.get("problem", "—")),
                str(r.get("method", "—")) + (f" ({', '.join(extra)})" if extra else ""),
                fmt_n(r.get("n")),
                str(r.get("dtype", "—")),
                fmt_time(r["time"]),
                fmt_time(other["time"]),
                fmt_ratio(ratio),
                fmt_error(r.get("rel_error")),
                fmt_error(other.get("rel_error")),
            ]
        )
    only_b = sum(
        1
        for r in b.records
        if r.get("suite") not in ("vcurve", "estimate") and tuple(r.get(k) for k in keys) not in matched
    )
    if not rows:
        raise ReportError(f"runs {a.run_id!r} and {b.run_id!r} have no benchmark in common")
    header = ["suite", "problem", "method", "n", "dtype", "time A", "time B", "A ÷ B", "error A", "error B"]
    summary_rows = []
    for suite, method in sorted(ratios, key=lambda k: (_rank(k[0], SUITE_ORDER), _rank(k[1], METHOD_ORDER))):
        rs = ratios[(suite, method)]
        geomean = math.exp(sum(math.log(x) for x in rs) / len(rs))
        summary_rows.append([str(suite), str(method or "—"), str(len(rs)), fmt_ratio(geomean)])
    text = (
        f"Run A: {a.provenance()}\n\nRun B: {b.provenance()}\n\n"
        f"# Compare `{a.run_id}` (A) with `{b.run_id}` (B)\n\n"
        "A ÷ B above 1×: B is faster. Errors are relative to each run's reference gradient. "
        f"{len(rows)} benchmarks in both runs; {only_a} only in A, {only_b} only in B.\n\n"
        "## Geometric mean of A ÷ B\n\n"
        + md_table(["suite", "method", "benchmarks", "A ÷ B"], summary_rows, "llrr")
        + "\n\n## Every benchmark\n\n"
        + md_table(header, rows, "lllrlrrrrr")
        + "\n"
    )
    out = Path(out_dir) if out_dir is not None else a.path.parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compare-{a.run_id}-vs-{b.run_id}.md"
    _write_atomic(path, text)
    return path, text


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run ids under --results, or run directories (default: every run under --results)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="the results directory (default: results)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="write results/compare-A-vs-B.md (time ratios A ÷ B with both runs' errors) and print it",
    )
    parser.add_argument(
        "--no-plots",
        dest="plots",
        action="store_false",
        help="rebuild CSV and tables only, leave the PNGs as they are (faster)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        metavar="PATH",
        help="also put the newest run's headline between <!-- headline:start/end --> in PATH",
    )


def _resolve(name: str, results_dir: Path) -> Path:
    path = Path(name)
    for candidate in (path, results_dir / name):
        if candidate.is_dir() or (candidate.name == RAW_NAME and candidate.is_file()):
            return candidate.parent if candidate.name == RAW_NAME and candidate.is_file() else candidate
    known = ", ".join(d.name for d in _run_dirs(results_dir)) or "none"
    raise ReportError(f"no run {name!r} (not a directory, nor a run in {results_dir}; runs there: {known})")


def run(args: argparse.Namespace) -> int:
    from calcjax.cli import UsageError

    try:
        return _run(args)
    except ReportError as err:
        raise UsageError(str(err)) from None


def _run(args: argparse.Namespace) -> int:
    results_dir: Path = args.results
    compare = [_resolve(x, results_dir) for x in args.compare] if args.compare else None
    if args.runs or not compare:
        dirs = [_resolve(x, results_dir) for x in args.runs] if args.runs else _run_dirs(results_dir)
        if not dirs:
            raise ReportError(
                f"no runs in {results_dir}/ (each run is a folder holding {RAW_NAME}): "
                "run `calcjax bench` first"
            )
    else:
        dirs = []
    runs = [load_run(d) for d in dirs]  # check every input before writing anything
    for d in compare or ():
        load_run(d)
    if args.readme:
        _split_markers(args.readme, "headline")
    for r in runs:
        _build(r, plots=args.plots)
        tables = sorted(p.name for p in r.path.glob("*.md"))
        note = f"; left out {r.skipped} record(s) without calcjax extra_info" if r.skipped else ""
        print(f"{r.path}: {len(r.records)} records -> {CSV_NAME}, {', '.join(tables)}, {PLOTS_DIR}/{note}")
    indexes = {r.path.parent.resolve() for r in runs}
    if compare:
        path, text = compare_runs(*compare, out_dir=results_dir)
        print(text)
        print(f"wrote {path}")
        indexes.add(results_dir.resolve())
    for parent in sorted(indexes):
        print(f"index: {write_index(parent)}")
    if args.readme:
        newest = _newest(runs or [load_run(d) for d in compare or ()])
        changed = update_readme_markers(args.readme, f"{newest.provenance()}\n\n{_headline(newest)}")
        print(f"{args.readme}: headline {'updated' if changed else 'unchanged'} (run {newest.run_id})")
    if len(runs) == 1 and not compare:
        print()
        print(_headline(runs[0]))
    return 0
