"""The benchmark record format, defined once: suites, fields and their types, display orders, file names.

The benchmark suite writes records with these fields into ``benchmark.extra_info``;
the report reads and checks them; the tests check both against this module. It
imports the standard library only, so that the report needs no JAX: the method
and problem names are kept as strings here, and a test pins them to
:data:`calcjax.METHODS` and :data:`calcjax.PROBLEMS`.
"""

from __future__ import annotations

__all__ = [
    "BASE_FIELDS",
    "CSV_NAME",
    "DTYPES",
    "DTYPE_ORDER",
    "FIELDS",
    "INCOMPLETE_KEY",
    "INDEX_NAME",
    "INT_FIELDS",
    "LOSSES_FIELD",
    "METHOD_ORDER",
    "NONJAX_PLOT",
    "NUMBER_FIELDS",
    "OTHER_FIELDS",
    "PARTIAL_NAME",
    "PLOTS_DIR",
    "PROBLEM_ORDER",
    "RAW_NAME",
    "RECORDS_NAME",
    "SECOND_METHOD_ORDER",
    "SUITES",
    "SUITE_ORDER",
    "TABLE_NAMES",
    "TEXT_FIELDS",
]

# --------------------------------------------------------------------------- run folder

#: pytest-benchmark's JSON: the truth every other file of a run is rebuilt from.
RAW_NAME = "raw.json"
#: Where ``calcjax bench`` lets pytest-benchmark write until the run has finished.
PARTIAL_NAME = ".raw.json.partial"
#: Each record as its test finishes (JSON Lines, a header line first): what survives a run killed
#: half-way, rebuilt with ``calcjax report --partial`` (see :mod:`calcjax._bench.runlog`).
RECORDS_NAME = "records.jsonl"
#: Top-level key of a ``raw.json`` rebuilt from :data:`RECORDS_NAME`: the run did not finish.
INCOMPLETE_KEY = "calcjax_incomplete"
#: The tidy table: one row per record.
CSV_NAME = "benchmarks.csv"
#: The run's PNG plots.
PLOTS_DIR = "plots"
#: The ``nonjax`` suite's plot in ``PLOTS_DIR``: one panel of bars per problem and n.
NONJAX_PLOT = "nonjax-times.png"
#: The index of every run, in the results directory.
INDEX_NAME = "README.md"
#: Every table file the report may write into a run directory (older ones it no longer
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

# --------------------------------------------------------------------------- names and orders

#: Every suite of the benchmark suite, in report order.
SUITES = (
    "derivative",
    "gradient",
    "feval",
    "accuracy",
    "vcurve",
    "estimate",
    "descent",
    "descent-race",
    "sharding",
    "memory",
    "hessian",
    "hvp",
    "hessian_vcurve",
    "nonjax",
    "corpus",
    "gradcheck",
)
SUITE_ORDER = SUITES
#: calcjax.PROBLEMS in display order (a test pins it to the registry).
PROBLEM_ORDER = ("square", "linear", "tutorial-quadratic", "quadratic", "rosenbrock", "logistic", "mlp")
#: calcjax.METHODS in display order: autodiff first, then calcjax's FD, then the peers, then the
#: stochastic estimators
#: (a test pins the set to the registry).
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
    "zo-spsa",
    "zo-gaussian",
    "zo-gaussian-k10",
    "fwd-gradient",
)
#: calcjax.SECOND_ORDER_METHODS in display order: calcjax's FD, then autodiff, then the peers
#: (a test pins the set to the registry).
SECOND_METHOD_ORDER = (
    "fd-hessian",
    "richardson",
    "complex-of-grad-hessian",
    "fd-hessdiag",
    "fd-of-grad",
    "fd-hvp",
    "richardson-of-grad",
    "complex-of-grad",
    "jax-hessian",
    "jacrev-jacrev",
    "hvp-forward-over-reverse",
    "hvp-reverse-over-reverse",
    "numdifftools-hessian",
    "numdifftools-hessdiag",
    "scipy-differentiate-hessian",
)
#: The dtypes the suite, the commands and the tests run in.
DTYPES = ("float32", "float64")
DTYPE_ORDER = DTYPES

# --------------------------------------------------------------------------- record fields

#: A record's loss history (descent suite): ``f(x_k)`` for ``k = 0..steps``, as
#: :class:`calcjax.DescentResult` names it.
LOSSES_FIELD = "losses"

#: Known ``extra_info`` fields -> type, in ``benchmarks.csv`` column order (other fields
#: follow in alphabetical order). Types: ``text``, ``int`` (a whole number), ``number``,
#: ``step`` (a step size or ``"auto"``), ``numbers`` (a list of numbers), ``any`` (not checked).
FIELDS: dict[str, str] = {
    "suite": "text",
    "problem": "text",
    "n": "int",
    "method": "text",
    "dtype": "text",
    "device": "any",
    "backend": "any",
    "device_kind": "any",
    "device_count": "int",
    "devices": "int",
    "batch": "int",
    "steps": "int",
    "scheme": "text",
    "order": "int",
    "h": "step",
    "case": "text",
    "compile_s": "number",
    "f_evals": "int",
    "grad_evals": "int",
    "kind": "text",
    "rel_error": "number",
    "abs_error": "number",
    "reference": "any",
    "true_error": "number",
    "estimate": "number",
    "final_loss": "number",
    "peak_bytes": "number",
    "peak_source": "any",
}
#: Fields every record of the suite carries (``None`` where they do not apply).
BASE_FIELDS = (
    "suite",
    "problem",
    "n",
    "method",
    "dtype",
    "device",
    "backend",
    "device_kind",
    "device_count",
    "compile_s",
    "f_evals",
    "rel_error",
    "reference",
    "peak_bytes",
    "peak_source",
)
#: Fields of some suites only, not type-checked; in ``benchmarks.csv`` they follow :data:`FIELDS`
#: in alphabetical order, like any field not listed.
OTHER_FIELDS: dict[str, str] = {
    "family": "the registry method's family (fd, ad, ...)",
    "grad_method": "descent: the gradient method each step uses",
    "loop": "descent: how the steps are looped (Python, fori_loop, scan)",
    LOSSES_FIELD: "descent: the loss at every point visited, up to a length limit",
    "lr": "descent: the learning rate",
    "lr_grid": "descent-race: the learning rates every method tried (the chosen one is lr)",
    "grid_final_losses": "descent-race: the final loss at each lr of lr_grid (None: diverged)",
    "curvature": "descent-race: the largest Hessian eigenvalue at x0, L (lr_grid is 1/L times powers of 10)",
    "loss_steps": "descent-race: the step of each entry of losses",
    "evals_per_step": "descent-race: f-evaluations a step costs (one for an AD pass: a JVP or VJP)",
    "stopped_at": "descent-race: the step of the first non-finite recorded loss, -1 if none (diverged)",
    "key_seed": "descent-race: the seed of jax.random.key for the stochastic methods",
    "n_params": "the problem's actual number of parameters (n rounded up to its shape)",
    "ratio": "estimate: true error / estimated error",
    "startup_s": "nonjax: seconds to start the process pool or Dask cluster (apart from the timing)",
    "f_call_s": "nonjax: seconds of one call of the problem's loss",
    "workers": "nonjax: processes that evaluate f (1: serial)",
    "source": "corpus: the peer's test file and test the case comes from",
    "hard": "corpus: a case the issue names as hard for the automatic step or Richardson",
    "kind": "gradcheck: 'bug' (planted bugs) or 'correct' (correct gradients)",
    "cases": "gradcheck: cases checked",
    "resolvable": "gradcheck: planted bugs at least 10x the FD error estimate",
    "detected": "gradcheck: resolvable bugs caught",
    "culprit_named": "gradcheck: resolvable bugs whose leaf calcjax named",
    "false_failures": "gradcheck: correct gradients failed",
    "rate": "gradcheck: detection rate (bugs) or false-failure rate (correct)",
    "f_evals_per_check": "gradcheck: mean f-evaluations per check (the culprit search apart)",
    "f_evals_locate": "gradcheck: mean f-evaluations of calcjax's culprit search",
}
TEXT_FIELDS = tuple(k for k, t in FIELDS.items() if t == "text")
INT_FIELDS = tuple(k for k, t in FIELDS.items() if t == "int")
NUMBER_FIELDS = tuple(k for k, t in FIELDS.items() if t == "number")
