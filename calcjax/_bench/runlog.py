"""What a benchmark run tells as it goes: provenance, streamed records, progress, skip summary.

Used by the plugin (:mod:`calcjax._bench.plugin`) when ``calcjax bench`` runs the
suite (and by ``pytest bench --benchmark-json``):

- **provenance**: a :func:`calcjax._provenance.capture` snapshot at the start of the
  run and one at the end, stamped into the raw JSON and every record;
- **records as they finish**: each benchmark's record is appended to a JSON Lines
  file (:data:`calcjax._schema.RECORDS_NAME`) the moment its test finishes, after a
  header line with the machine facts and the start snapshot, so a run killed
  half-way (SIGKILL, power cut) still has what finished (``calcjax report --partial``);
- **progress**: one line with the cases done, the elapsed time and an estimate of
  what is left (:class:`Progress`), rewritten in place on a terminal and printed as
  plain lines, now and then, when the output is a file or pipe;
- **skip summary**: the skips counted by reason (:func:`skip_summary`, at most
  :data:`SUMMARY_LINES` lines), the full list written to a file for the run's log.

JSON Lines shape (one object per line)::

    {"header": {"schema": 1, "datetime": ..., "machine_info": {...}, "provenance": {...}}}
    {"record": {<one pytest-benchmark record, as in raw.json's "benchmarks">}}
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "SUMMARY_LINES",
    "Progress",
    "RecordStream",
    "case_costs",
    "estimate_checks",
    "newest_costs",
    "skip_kind",
    "skip_summary",
]

#: The skip summary is at most this many lines.
SUMMARY_LINES = 8
#: JSON Lines schema version.
STREAM_SCHEMA = 1


class RecordStream:
    """Append-only JSON Lines file of a run's records, each flushed as its test finishes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fh: TextIO | None = None

    def _open(self, header: dict[str, Any]) -> TextIO:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open
            self._write({"header": {"schema": STREAM_SCHEMA, **header}})
        return self._fh

    def _write(self, obj: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(obj, default=_jsonable, allow_nan=True) + "\n")
        self._fh.flush()

    def add(self, record: dict[str, Any], header: Any) -> None:
        """Append one record; ``header()`` gives the header on the first call."""
        if self._fh is None:
            self._open(header())
        self._write({"record": record})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _jsonable(value: Any) -> Any:
    """NumPy scalars and other odd values as JSON (pytest-benchmark's writer does the same)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


# --------------------------------------------------------------------------- skips

#: (kind, pattern of the skip reason, summary text with {n} and {detail}). First match wins.
_KINDS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "time",
        re.compile(r"per call > (?P<detail>\S+ \S+) allowed by the '(?P<profile>[^']+)' profile"),
        "predicted above the {detail} per-call limit: {n} (use --max-call-s or --full)",
    ),
    (
        "warm",
        re.compile(r"warm-up took .* allowed by the"),
        "warm-up far over the per-call limit: {n} (use --max-call-s or --full)",
    ),
    (
        "memory",
        re.compile(r"predicted memory \S+ \S+ > budget (?P<detail>\S+ \S+)"),
        "predicted above the memory budget ({detail}): {n}",
    ),
    (
        "resolution",
        re.compile(r"below (?P<detail>\w+)'s resolution"),
        "step below the dtype's resolution (x + h == x): {n}",
    ),
    ("extra", re.compile(r"needs the optional package '(?P<detail>[^']+)'"), ""),
    ("extra", re.compile(r"^(?P<detail>\w+) is not installed"), ""),
    (
        "max_n",
        re.compile(r"runs only up to n=(?P<detail>\d+)"),
        "beyond a method's registry max_n: {n}",
    ),
    (
        "complex",
        re.compile(r"not complex-step safe"),
        "not complex-step safe on this device: {n}",
    ),
    (
        "devices",
        re.compile(r"needs (?P<detail>\d+) \w+ devices"),
        "more devices than JAX sees: {n} (--cpu-devices 4 on a CPU)",
    ),
    ("dtypes", re.compile(r"--dtypes"), "dtype left out by --dtypes: {n}"),
    ("empty", re.compile(r"got empty parameter set"), "benchmarks with no case in this profile: {n}"),
)


#: How a time skip names the full profile (:meth:`calcjax._bench.budget.Budget.check`).
_IN_FULL = "by the 'full' profile"


def skip_kind(reason: str) -> tuple[str, str]:
    """(kind, detail) of a skip reason; kind ``"other"`` when no known pattern matches.

    Example:
        >>> skip_kind("numdifftools needs the optional package 'numdifftools' (pip install numdifftools)")
        ('extra', 'numdifftools')
    """
    for kind, pattern, _ in _KINDS:
        m = pattern.search(reason)
        if m:
            return kind, (m.groupdict().get("detail") or "")
    return "other", reason


def skip_summary(reasons: Iterable[str], *, log_name: str | None = None) -> list[str]:
    """At most :data:`SUMMARY_LINES` lines counting the skips by reason.

    Rows left out for want of an optional package (an extra) are one line naming the
    packages that would add them.

    Example:
        >>> why = "f: predicted 3.0 s per call > 1.00 s allowed by the 'default' profile (...)"
        >>> for line in skip_summary([why, why]):
        ...     print(line)
        skipped 2 cases:
          predicted above the 1.00 s per-call limit: 2 cases (use --max-call-s or --full)
    """
    reasons = list(reasons)
    counts: Counter[tuple[str, str]] = Counter(skip_kind(r) for r in reasons)
    total = sum(counts.values())
    if not total:
        return []
    lines: list[str] = []
    texts = {kind: text for kind, _, text in _KINDS if text}
    grouped: dict[str, Counter[str]] = defaultdict(Counter)
    for (kind, detail), n in counts.items():
        grouped[kind][detail] += n
    extras = grouped.pop("extra", None)
    others = grouped.pop("other", None)
    for kind, details in sorted(grouped.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(details.values())
        detail = ", ".join(d for d in details if d) if kind != "dtypes" else ""
        text = texts[kind].format(n=_cases(n), detail=detail or "profile's")
        if kind in ("time", "warm") and all(_IN_FULL in r for r in reasons if skip_kind(r)[0] == kind):
            text = text.replace(" or --full)", ")")  # already the full profile: only --max-call-s helps
        lines.append("  " + text)
    if extras:
        named = ", ".join(f"{pkg} ({k})" for pkg, k in extras.most_common())
        lines.append(f"  not installed, would add rows: {named} (pip install the package)")
    room = SUMMARY_LINES - 1 - len(lines)
    if others:
        shown = others.most_common()
        if room >= len(shown):
            lines += [f"  {_cut(r)}: {_cases(k)}" for r, k in shown]
        else:
            keep = max(room - 1, 0)
            lines += [f"  {_cut(r)}: {_cases(k)}" for r, k in shown[:keep]]
            rest = sum(k for _, k in shown[keep:])
            lines.append(f"  other reasons: {_cases(rest)}")
    lines = lines[: SUMMARY_LINES - 1]
    where = f" (the full list is in {log_name})" if log_name else ""
    return [f"skipped {_cases(total)}{where}:", *lines]


def _cases(n: int) -> str:
    return f"{n} case{'s' if n != 1 else ''}"


def _cut(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- progress


def _clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Cases done, elapsed time and an estimate of the time left.

    The estimate comes from a cost per case: where an earlier run on this kind of
    device recorded the case (:func:`case_costs`: its compile time plus its timed
    rounds), that cost, scaled, once the case's benchmark has started, by how fast
    this run goes against the earlier one in that benchmark; a case of a benchmark
    the earlier run has but this case not (it was skipped there) costs nothing;
    other cases cost the mean time per case of their benchmark so far, or of the run.

    Args:
      cases: the test names (``test_f[params]``) in run order.
      costs: seconds per test name from an earlier run (:func:`case_costs`), or ``None``.
      clock: the time source (seconds).
    """

    def __init__(
        self, cases: Iterable[str], costs: dict[str, float] | None = None, *, clock: Any = time.monotonic
    ) -> None:
        self.cases = list(cases)
        self.costs = costs or {}
        known = {_group(name) for name in self.costs}
        self.prior = {c: self.costs.get(c, 0.0 if _group(c) in known else None) for c in self.cases}
        self.clock = clock
        self.start = clock()
        self.done: dict[str, float] = {}
        self._last = self.start

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def count(self) -> int:
        return len(self.done)

    def finished(self, name: str, seconds: float | None = None) -> None:
        """Case ``name`` finished; it took ``seconds`` (default: since the last one finished)."""
        now = self.clock()
        self.done[name] = now - self._last if seconds is None else seconds
        self._last = now

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float | None:
        """Estimated seconds left, or ``None`` before the first case."""
        if not self.done:
            return None
        # Per benchmark: this run's time over the earlier run's cost, for the cases done so far.
        by_group: defaultdict[str, list[float]] = defaultdict(list)
        ratio: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for c, t in self.done.items():
            g = _group(c)
            by_group[g].append(t)
            if self.prior.get(c) is not None:
                ratio[g][0] += self.prior[c]
                ratio[g][1] += t
        scale = {g: t / p for g, (p, t) in ratio.items() if p > 0}
        overall = sum(self.done.values()) / len(self.done)
        left = 0.0
        for c in self.cases:
            if c in self.done:
                continue
            g = _group(c)
            prior = self.prior.get(c)
            if prior is not None:
                # A benchmark not started yet is taken at the earlier run's cost: how fast one
                # benchmark ran against history says little about another (rounds, compile, load).
                left += prior * scale.get(g, 1.0)
            else:
                seen = by_group.get(g)
                left += sum(seen) / len(seen) if seen else overall
        return left

    def line(self) -> str:
        left = self.left()
        est = "estimating" if left is None else f"about {_clock(left)} left"
        pct = 100 * self.count / self.total if self.total else 100.0
        done = f"{self.count}/{self.total} cases ({pct:.0f}%)"
        return f"progress: {done}, {_clock(self.elapsed())} elapsed, {est}"


def _group(name: str) -> str:
    return name.split("[", 1)[0]


def case_costs(raw: dict[str, Any]) -> dict[str, float]:
    """Seconds each case of an earlier run took (compile, warm-up and timed rounds), by test name."""
    costs: dict[str, float] = {}
    for b in raw.get("benchmarks") or ():
        stats = b.get("stats") or {}
        extra = b.get("extra_info") or {}
        name = b.get("name")
        if not isinstance(name, str) or not isinstance(stats.get("total"), int | float):
            continue
        compile_s = extra.get("compile_s") if isinstance(extra.get("compile_s"), int | float) else 0.0
        costs[name] = float(compile_s) + float(stats["total"]) + float(stats.get("median") or 0.0)
    return costs


def newest_costs(results_dir: Path, backend: str, exclude: Path | None = None) -> dict[str, float]:
    """:func:`case_costs` of the newest run in ``results_dir`` made on ``backend`` (``{}`` if none)."""
    best: tuple[str, dict[str, Any]] | None = None
    for raw_path in sorted(Path(results_dir).glob("*/raw.json")):
        if exclude is not None and raw_path.parent.resolve() == exclude.resolve():
            continue
        try:
            raw = json.loads(raw_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(raw, dict) or (raw.get("machine_info") or {}).get("backend") != backend:
            continue
        stamp = str(raw.get("datetime") or "")
        if best is None or stamp > best[0]:
            best = (stamp, raw)
    return case_costs(best[1]) if best else {}


_LINE = re.compile(
    r"^(?P<clock>\d\d:\d\d:\d\d) progress: (?P<k>\d+)/(?P<n>\d+) cases \(\d+%\), "
    r"(?P<elapsed>[\dms]+) elapsed, about (?P<left>[\dms]+) left",
    re.M,
)


def _seconds(text: str) -> int:
    m = re.fullmatch(r"(?:(\d+)m)?(\d+)s", text)
    if not m:
        raise ValueError(f"not a duration like 1m05s: {text!r}")
    return 60 * int(m.group(1) or 0) + int(m.group(2))


def estimate_checks(log: str) -> list[tuple[int, int, int]]:
    """(elapsed s, estimated s left, s that really remained) for each plain progress line of a log.

    What really remained is measured to the last progress line (the last case's end).

    Example:
        >>> log = [
        ...     "10:00:00 progress: 1/2 cases (50%), 30s elapsed, about 25s left",
        ...     "10:00:31 progress: 2/2 cases (100%), 1m01s elapsed, about 0s left",
        ... ]
        >>> estimate_checks(chr(10).join(log))
        [(30, 25, 31), (61, 0, 0)]
    """
    rows = [(_seconds(m["elapsed"]), _seconds(m["left"])) for m in _LINE.finditer(log)]
    if not rows:
        return []
    end = rows[-1][0]
    return [(t, left, end - t) for t, left in rows]
