"""``calcjax ab A [B]``: two code versions timed interleaved, the regression gate's robust mode.

Two runs made one after the other on a shared machine differ by the load that
moved between them, often more than the change being judged. This command times
both versions in one session instead: one persistent worker process per version
(:mod:`calcjax._commands._ab_worker`, started with ``PYTHONPATH`` at that
version's source tree) builds, compiles and warms every selected gradient
benchmark first, then times one round on request. The rounds alternate between
the workers in ABBA order with the benchmarks shuffled every round
(:func:`calcjax._gate.run_interleaved`), so a change of load falls on A and B
alike, and each benchmark is judged on its paired rounds
(:func:`calcjax._gate.interleaved_table`: Wilcoxon signed-rank p < 0.002 and the
median ratio beyond the factor).

A version is a git revision of the repository this calcjax runs from (its
``calcjax/`` folder is exported with ``git archive`` into a temporary folder), a
directory holding a calcjax source tree, or ``worktree``: the tree this command
runs from, uncommitted changes included (B's default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calcjax._errors import UsageError
from calcjax._gate import ALPHA, ENV_SLOWDOWN, FACTOR, NO_STATISTICS, check_factor, failures, parse_slowdown

__all__ = ["DEFAULT_METHODS", "DEFAULT_N", "DEFAULT_PROBLEMS", "Version", "Worker", "add_arguments", "run"]

#: The default selection: the headline methods that compile (numpy-loop takes seconds a call on
#: logistic) and forward FD, on the scalable problems at n = 1000, float64: an A/A run takes about
#: a minute on a 2-core machine.
DEFAULT_PROBLEMS = ("quadratic", "rosenbrock", "logistic", "mlp")
DEFAULT_METHODS = ("ad-reverse", "fd-central", "fd-central-blackbox", "fd-forward")
DEFAULT_N = (1000,)
#: Paired rounds per benchmark: the signed-rank test needs 10 to reach p < 0.002 at all.
DEFAULT_ROUNDS = 20
#: A round times as many calls back to back as take about this long (one call at least).
DEFAULT_ROUND_S = 0.05
#: The most calls in one round.
MAX_CALLS = 100_000
WORKTREE = "worktree"
WORKER = Path(__file__).resolve().with_name("_ab_worker.py")

EPILOG = f"""\
examples:
  calcjax ab HEAD                      # HEAD (A) against the working tree's uncommitted change (B)
  calcjax ab main --fail-above 1.10    # main against this tree; exit 1 when a benchmark is slower
  calcjax ab HEAD HEAD --out ab/       # an A/A check of the machine's noise
  {ENV_SLOWDOWN}=fd-central=1.3 calcjax ab HEAD HEAD   # the gate's test hook, on B only
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "a", metavar="A", help="the version before: a git revision, a directory, or 'worktree'"
    )
    parser.add_argument(
        "b", metavar="B", nargs="?", default=WORKTREE, help="the version after (default: worktree)"
    )
    parser.add_argument(
        "--problems",
        default=",".join(DEFAULT_PROBLEMS),
        help="comma-separated problems (default: %(default)s)",
    )
    parser.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help="comma-separated methods (default: %(default)s)"
    )
    parser.add_argument(
        "--n", default=",".join(map(str, DEFAULT_N)), help="comma-separated sizes (default: %(default)s)"
    )
    parser.add_argument("--dtype", default="float64", help="comma-separated dtypes (default: %(default)s)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="paired rounds per benchmark, at least 10 for the test (default: %(default)s)",
    )
    parser.add_argument(
        "--round-s",
        type=float,
        default=DEFAULT_ROUND_S,
        metavar="S",
        help="seconds a round aims at: as many calls back to back (default: %(default)s)",
    )
    parser.add_argument(
        "--clock",
        choices=("auto", "cpu", "wall"),
        default="auto",
        help="what a round measures: the worker's CPU time (cpu), wall time (wall), or auto: CPU time "
        "where JAX computes on the CPU, wall time on an accelerator (default: auto)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the benchmark order (default: 0)")
    parser.add_argument(
        "--factor",
        default=None,
        metavar="F",
        help=f"ratio beyond which a significant change counts (default: --fail-above, else {FACTOR:g})",
    )
    parser.add_argument(
        "--fail-above",
        metavar="F",
        help="exit 1 when a benchmark is significantly slower in B by more than F (e.g. 1.10), listing them",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write ab-<A>-vs-<B>.md, .html and .json (the per-round times) into DIR",
    )


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Version:
    """One side: its label, the source tree put on ``PYTHONPATH`` and its commit (if known)."""

    label: str
    root: Path
    commit: str | None


def _git(repo: Path, *args: str, binary: bool = False) -> Any:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if out.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed in {repo}: {out.stderr.decode().strip()}")
    return out.stdout if binary else out.stdout.decode().strip()


def resolve_version(spec: str, into: Path, *, repo: Path | None = None) -> Version:
    """``spec`` as a source tree: ``worktree``, a directory with ``calcjax/``, or a git revision.

    A revision's ``calcjax/`` folder is exported with ``git archive`` into a new folder of ``into``.

    Raises:
      UsageError: the directory holds no calcjax, or git knows no such revision.
    """
    from calcjax._provenance import _default_root

    here = _default_root()
    if spec == WORKTREE:
        return Version(WORKTREE, here, None)
    path = Path(spec)
    if path.is_dir():
        if not (path / "calcjax" / "__init__.py").is_file():
            raise UsageError(f"directory {spec!r} holds no calcjax source tree (no calcjax/__init__.py)")
        return Version(path.name or str(path), path.resolve(), None)
    repo = here if repo is None else repo
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if not commit:  # pragma: no cover - rev-parse --quiet fails instead
        raise UsageError(f"no git revision {spec!r} in {repo}")
    import io
    import tarfile

    dest = Path(tempfile.mkdtemp(prefix=f"ab-{commit[:8]}-", dir=into))
    data = _git(repo, "archive", "--format=tar", commit, "--", "calcjax", binary=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    return Version(f"{spec}@{commit[:8]}" if not commit.startswith(spec) else commit[:8], dest, commit)


# --------------------------------------------------------------------------- workers


class Worker:
    """One persistent worker process measuring the version at ``root`` (see the worker's docstring)."""

    def __init__(self, root: Path, log_dir: Path, name: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
        env.pop(ENV_SLOWDOWN, None)  # the driver sends the hook to the side it applies to
        self.name = name
        self.log = log_dir / f"worker-{name}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=str(log_dir),
            text=True,
        )

    def send(self, **request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        answer = json.loads(line) if line else {"ok": False, "error": "the worker stopped"}
        if not answer.get("ok"):
            self._log.flush()
            tail = self.log.read_text(errors="replace")[-2000:].strip()
            raise RuntimeError(f"worker {self.name}: {answer.get('error')}" + (f"\n{tail}" if tail else ""))
        return answer

    def request(self, **request: Any) -> dict[str, Any]:
        self.send(**request)
        return self.receive()

    def time(self, case: int, calls: int) -> float:
        return float(self.request(op="time", case=case, calls=calls)["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request(op="quit")
                self.proc.wait(timeout=10)
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


def setup_workers(
    workers: Sequence[Worker],
    cases: Sequence[tuple],
    slowdowns: Sequence[dict[str, float]],
    *,
    clock: str = "auto",
) -> list[dict[str, Any]]:
    """Build and warm ``cases`` in every worker at once; their answers, in order."""
    for w, slowdown in zip(workers, slowdowns, strict=True):
        w.send(op="setup", cases=[list(c) for c in cases], slowdown=slowdown, clock=clock)
    return [w.receive() for w in workers]


#: Single calls timed on each side to size the rounds (the fastest counts: a warm-up's time, or
#: one taken while the machine was busy, would make the rounds too short to average the load out).
CALIBRATION_CALLS = 5


def calls_per_round(call_s: Sequence[float], round_s: float) -> int:
    """Calls in one round: enough for ``round_s`` at the fastest time of one call seen on either side.

    Example:
        >>> calls_per_round([0.001, 0.0013], 0.05)
        50
    """
    fastest = min(call_s)
    if not (math.isfinite(fastest) and fastest > 0):
        return 1
    return int(min(MAX_CALLS, max(1, math.ceil(round_s / fastest))))


def calibrate(workers: Sequence[Worker], case: int, round_s: float) -> int:
    """Calls a round of ``case`` takes: :data:`CALIBRATION_CALLS` single calls on every side, the fastest."""
    times = [w.time(case, 1) for _ in range(CALIBRATION_CALLS) for w in workers]
    return calls_per_round(times, round_s)


def case_label(case: Sequence[Any]) -> str:
    """``"quadratic n=1000 float64 fd-central"``: a benchmark's key in the session's observations."""
    problem, n, dtype, method = case
    return f"{problem} n={n} {dtype} {method}"


# --------------------------------------------------------------------------- selection


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UsageError(f"--{what} names nothing: {text!r}")
    unknown = [s for s in names if s not in known]
    if unknown:
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return names


def selection(problems: str, methods: str, sizes: str, dtypes: str) -> list[tuple[str, int, str, str]]:
    """The benchmarks (problem, n, dtype, method) named by the options, checked against the registry.

    Raises:
      UsageError: an unknown name, or a size that is not a positive integer.
    """
    import calcjax
    from calcjax._schema import DTYPES

    ps = _names(problems, list(calcjax.PROBLEMS), "problems")
    ms = _names(methods, list(calcjax.METHODS), "methods")
    ds = _names(dtypes, list(DTYPES), "dtype")
    ns = []
    for s in sizes.split(","):
        try:
            n = int(s)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"--n takes positive integers, got {s!r}")
        ns.append(n)
    return [(p, n, d, m) for p in ps for n in ns for d in ds for m in ms]


# --------------------------------------------------------------------------- session


@dataclass
class Session:
    """An interleaved session's result: the observations, the gate's table and what was left out."""

    a: Version
    b: Version
    observations: Any
    table: Any
    skipped: dict[str, str]
    calls: dict[str, int]
    slowdown: dict[str, float]
    factor: float
    clock: str = "wall"


def interleave(
    a: Version,
    b: Version,
    cases: Sequence[tuple],
    *,
    rounds: int = DEFAULT_ROUNDS,
    round_s: float = DEFAULT_ROUND_S,
    seed: int = 0,
    factor: float = FACTOR,
    slowdown: dict[str, float] | None = None,
    clock: str = "auto",
    log_dir: Path,
) -> Session:
    """Time ``cases`` of ``a`` and ``b`` interleaved; ``slowdown`` (the test hook) applies to B only.

    ``clock`` is ``"wall"``, ``"cpu"`` (the worker's CPU time, all threads) or ``"auto"``
    (CPU time where JAX computes on the CPU, wall time on an accelerator).
    """
    from calcjax._gate import interleaved_table, run_interleaved

    workers = [Worker(a.root, log_dir, "A"), Worker(b.root, log_dir, "B")]
    try:
        ready = setup_workers(workers, cases, [{}, dict(slowdown or {})], clock=clock)
        skipped = {}
        for side, answer in zip("AB", ready, strict=True):
            for i, reason in answer["skipped"].items():
                skipped.setdefault(case_label(cases[int(i)]), f"{side}: {reason}")
        index = {case_label(c): i for i, c in enumerate(cases) if case_label(c) not in skipped}
        if not index:
            raise UsageError("no benchmark runs in both versions: " + "; ".join(skipped.values()))
        calls = {k: calibrate(workers, i, round_s) for k, i in index.items()}
        by = dict(zip("AB", workers, strict=True))
        obs = run_interleaved(
            lambda v, k: by[v].time(index[k], calls[k]), list(index), rounds=rounds, seed=seed
        )
    finally:
        for w in workers:
            w.close()
    table = interleaved_table(obs, factor=factor)
    return Session(a, b, obs, table, skipped, calls, dict(slowdown or {}), factor, ready[0]["clock"])


def sequential_rounds(
    version: Version,
    cases: Sequence[tuple],
    *,
    rounds: int,
    round_s: float,
    clock: str = "wall",
    log_dir: Path,
) -> dict[str, list[float]]:
    """One plain run (no interleaving): each benchmark's ``rounds`` rounds back to back, in order.

    The way a benchmark suite times a run; two such runs compared with
    :func:`calcjax._gate.compare_records` are the plain comparison the robust mode is checked against.
    """
    worker = Worker(version.root, log_dir, f"seq-{version.label}".replace("/", "_"))
    try:
        (ready,) = setup_workers([worker], cases, [{}], clock=clock)
        out = {}
        for i, case in enumerate(cases):
            if str(i) in ready["skipped"]:
                continue
            k = calibrate([worker], i, round_s)
            out[case_label(case)] = [worker.time(i, k) for _ in range(rounds)]
        return out
    finally:
        worker.close()


# --------------------------------------------------------------------------- the page


_CLOCK_TEXT = {
    "cpu": "the CPU time of each worker process (all its threads), not wall time: waits for a busy core "
    "do not count",
    "wall": "wall time",
}


def session_page(session: Session) -> Any:
    """The session as a report page (one table definition, rendered to Markdown and HTML)."""
    from calcjax._fmt import fmt_ratio, fmt_time
    from calcjax.report._page import Page, Table

    order = ("slower", "faster", NO_STATISTICS, "same")
    rows, counts = [], {}
    for row in session.table.to_dict("records"):
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        p = "—" if math.isnan(row["p_value"]) else f"{row['p_value']:.1e}"
        rows.append(
            [
                row["key"],
                f"{session.calls[row['key']]:,}",
                fmt_time(row["median_a"]),
                fmt_time(row["median_b"]),
                fmt_ratio(row["ratio"]),
                p,
                str(row["rounds_a"]),
                row["verdict"],
            ]
        )
    rows.sort(key=lambda r: (order.index(r[7]), r[0]))
    hook = ", ".join(f"{m} × {f:g}" for m, f in session.slowdown.items())
    blocks: list[Any] = [
        f"A: `{session.a.label}` ({session.a.root}); B: `{session.b.label}` ({session.b.root}).",
        *([f"**Test hook on B:** {ENV_SLOWDOWN} makes {hook} slower."] if hook else []),
        "Both versions ran at the same time in two worker processes, each benchmark compiled and warmed "
        "up apart; rounds alternate A and B in ABBA order, benchmarks shuffled every round. Times are "
        + _CLOCK_TEXT[session.clock]
        + ". B ÷ A is the "
        "median of the per-round ratios (above 1×: B is slower). A benchmark is **slower** or **faster** "
        f"when a two-sided Wilcoxon signed-rank test on the paired rounds gives p < {ALPHA:g} and B ÷ A is "
        f"beyond {session.factor:g}× (or below 1/{session.factor:g}); **same** otherwise. "
        "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in order) + ".",
        Table.of(
            ["benchmark", "calls a round", "time A", "time B", "B ÷ A", "p", "pairs", "verdict"],
            rows,
            "lrrrrrrl",
        ),
    ]
    if session.skipped:
        blocks.append("Left out: " + "; ".join(f"{k} ({v})" for k, v in session.skipped.items()) + ".")
    return Page(f"Interleaved A/B: `{session.b.label}` (B) against `{session.a.label}` (A)", "", blocks)


def _markdown(page: Any) -> str:
    return f"# {page.title}\n\n{page.body_markdown()}\n"


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def write_session(session: Session, out_dir: Path) -> Path:
    """Write ``ab-<A>-vs-<B>.md``, ``.html`` and ``.json`` (the observations) into ``out_dir``."""
    from calcjax._files import write_atomic
    from calcjax.report._html import document

    page = session_page(session)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"ab-{_safe(session.a.label)}-vs-{_safe(session.b.label)}"
    write_atomic(out_dir / f"{stem}.md", _markdown(page))
    write_atomic(
        out_dir / f"{stem}.html",
        document(f"calcjax ab: {session.b.label} against {session.a.label}", page.html()),
    )
    raw = {
        "a": {"label": session.a.label, "commit": session.a.commit},
        "b": {"label": session.b.label, "commit": session.b.commit},
        "slowdown": session.slowdown,
        "calls": session.calls,
        "skipped": session.skipped,
        "observations": session.observations.to_dict("records"),
    }
    write_atomic(out_dir / f"{stem}.json", json.dumps(raw, indent=1) + "\n")
    return out_dir / f"{stem}.md"


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    fail_above = None if args.fail_above is None else check_factor(args.fail_above)
    factor = check_factor(args.factor, "--factor") if args.factor is not None else (fail_above or FACTOR)
    if args.rounds < 10:
        raise UsageError(f"--rounds must be at least 10 (the signed-rank test's minimum), got {args.rounds}")
    if not (math.isfinite(args.round_s) and args.round_s > 0):
        raise UsageError(f"--round-s must be a positive number of seconds, got {args.round_s!r}")
    slowdown = parse_slowdown(os.environ.get(ENV_SLOWDOWN))
    cases = selection(args.problems, args.methods, args.n, args.dtype)
    with tempfile.TemporaryDirectory(prefix="calcjax-ab-") as tmp:
        a = resolve_version(args.a, Path(tmp))
        b = resolve_version(args.b, Path(tmp))
        print(
            f"calcjax ab: {len(cases)} benchmarks, {args.rounds} rounds, A = {a.label}, B = {b.label}",
            file=sys.stderr,
        )
        session = interleave(
            a,
            b,
            cases,
            rounds=args.rounds,
            round_s=args.round_s,
            seed=args.seed,
            factor=factor,
            slowdown=slowdown,
            clock=args.clock,
            log_dir=Path(tmp),
        )
    print(_markdown(session_page(session)))
    if args.out is not None:
        print(f"wrote {write_session(session, args.out)}", file=sys.stderr)
    if fail_above is None:
        return 0
    bad = failures(session.table, fail_above)
    if bad.empty:
        print(f"gate: no benchmark significantly slower than {fail_above:g}× in B")
        return 0
    print(f"gate: {len(bad)} benchmark(s) significantly slower than {fail_above:g}× in B:")
    for row in bad.to_dict("records"):
        print(f"  {row['key']}: {row['ratio']:.3g}× (p = {row['p_value']:.1e})")
    return 1
