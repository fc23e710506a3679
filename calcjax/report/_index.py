"""The results index (results/README.md) and the headline between README markers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from calcjax._files import write_atomic
from calcjax._fmt import md_table
from calcjax._schema import (
    CSV_NAME,
    INDEX_NAME,
    RAW_NAME,
    TABLE_NAMES,
)
from calcjax.report._common import ReportError
from calcjax.report._load import Run, load_run
from calcjax.report._tables import headline_page

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
            f"## Headline (newest run, `{newest.run_id}`)\n\n{newest.provenance()}\n\n{headline_page(newest).body_markdown()}"
        )
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / INDEX_NAME
    write_atomic(path, "\n\n".join(parts) + "\n")
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
