"""Reading and checking a run's raw.json: :class:`Run` and :func:`load_run`."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calcjax import _provenance
from calcjax._schema import (
    DTYPE_ORDER,
    INCOMPLETE_KEY,
    INT_FIELDS,
    METHOD_ORDER,
    NUMBER_FIELDS,
    PROBLEM_ORDER,
    RAW_NAME,
    RECORDS_NAME,
    SUITE_ORDER,
    TEXT_FIELDS,
)
from calcjax.report._common import ReportError, _num, _rank


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
      incomplete: why the run is incomplete (an interrupted run rebuilt from what finished),
        or ``None``; when set, every table's provenance line and the index say so.
    """

    run_id: str
    path: Path
    raw: dict[str, Any]
    records: tuple[dict[str, Any], ...]
    skipped: int = 0
    incomplete: str | None = None

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
        """The line every table file opens with: run, machine, device, JAX, date, code.

        The code is the commit (short), clean or dirty, and the source hash
        (:func:`calcjax._provenance.describe`; "not recorded" for runs made before it).
        """
        line = (
            f"_Run `{self.run_id}` · machine: {self.cpu_text()} · device: {self.device_text()} · "
            f"{self.jax_text()} · {self.date} · {_provenance.describe(self.raw)}_"
        )
        return line + (f" **Incomplete run:** {self.incomplete}" if self.incomplete else "")


def incomplete_note(raw: dict[str, Any]) -> str | None:
    """Why a run is incomplete (``raw.json`` rebuilt by ``--partial`` from the records that finished)."""
    mark = raw.get(INCOMPLETE_KEY)
    if not mark:
        return None
    count = mark.get("records", "?") if isinstance(mark, dict) else "?"
    source = mark.get("rebuilt_from", "the streamed records") if isinstance(mark, dict) else "its records"
    return f"interrupted, so incomplete: only the {count} cases that finished (rebuilt from {source})"


def _raw_path(run: Path | str) -> Path:
    path = Path(run)
    return path if path.name == RAW_NAME and not path.is_dir() else path / RAW_NAME


#: Runs already read, while :func:`reading_once` is active: (raw path, mtime, size) -> Run.
_CACHE: dict[tuple[Path, int, int], Run] | None = None


@contextlib.contextmanager
def reading_once() -> Iterator[None]:
    """Within this block, each ``raw.json`` is read and checked once (``calcjax report`` builds,
    indexes and compares the same runs)."""
    global _CACHE
    outer, _CACHE = _CACHE, {} if _CACHE is None else _CACHE
    try:
        yield
    finally:
        _CACHE = outer


def load_run(run_dir: Path | str) -> Run:
    """Read and check ``<run_dir>/raw.json`` (a path to the file itself also works).

    Raises:
      ReportError: the file is missing, is not JSON, is not pytest-benchmark JSON,
        or holds no record with calcjax's ``extra_info`` (a ``suite`` field).
    """
    raw_path = _raw_path(run_dir)
    if not raw_path.is_file() and (raw_path.parent / RECORDS_NAME).is_file():
        raise ReportError(
            f"{raw_path.parent} holds no {RAW_NAME}: the run was interrupted. The records that finished "
            f"are in {RECORDS_NAME}: rebuild the run from them with `calcjax report {raw_path.parent} "
            "--partial` (its tables are then marked incomplete)"
        )
    if not raw_path.is_file():
        raise ReportError(f"no {RAW_NAME} in {raw_path.parent} (a run of `calcjax bench` leaves one there)")
    if _CACHE is None:
        return _read_run(raw_path)
    stat = raw_path.stat()
    key = (raw_path.resolve(), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = _read_run(raw_path)
    return _CACHE[key]


def _read_run(raw_path: Path) -> Run:
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
    return Run(run_path.name, run_path, raw, tuple(records), skipped, incomplete_note(raw))


def _bad_field(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's ``extra_info`` types, or ``None``."""
    for key in TEXT_FIELDS:
        if key in record and not isinstance(record[key], str):
            return f"extra_info {key!r} must be text, got {record[key]!r}"
    for key in INT_FIELDS:
        value = record.get(key)
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if key in record and (isinstance(value, bool) or not whole):
            return f"extra_info {key!r} must be a whole number, got {value!r}"
    for key in NUMBER_FIELDS:
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


def raw_from_records(run_dir: Path | str) -> dict[str, Any]:
    """pytest-benchmark-shaped JSON rebuilt from an interrupted run's ``records.jsonl``.

    The result is marked incomplete (:data:`calcjax._schema.INCOMPLETE_KEY`: how many
    records finished). A last line cut short by the interruption is left out.

    Raises:
      ReportError: there is no ``records.jsonl``, or it holds no record.
    """
    path = Path(run_dir) / RECORDS_NAME
    if not path.is_file():
        raise ReportError(f"no {RECORDS_NAME} in {path.parent}: nothing to rebuild an interrupted run from")
    header: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for k, line in enumerate(lines):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                continue  # the line being written when the run was killed
            raise ReportError(f"{path}: line {k + 1} is not JSON; the file is corrupt") from None
        if isinstance(item, dict) and isinstance(item.get("header"), dict):
            header = item["header"]
        elif isinstance(item, dict) and isinstance(item.get("record"), dict):
            records.append(item["record"])
    if not records:
        raise ReportError(f"{path} holds no finished record: the run was interrupted before any")
    raw = {
        "machine_info": header.get("machine_info") or {},
        "commit_info": {},
        "benchmarks": records,
        "datetime": header.get("datetime"),
        INCOMPLETE_KEY: {"records": len(records), "rebuilt_from": RECORDS_NAME},
    }
    if header.get("provenance"):
        raw["provenance"] = header["provenance"]
    return raw
