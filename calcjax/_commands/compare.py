"""``calcjax compare MODULE:FUNCTION``: every gradient method on your own function, in one table.

The module import stays light (argparse only); JAX and calcjax's maths load in :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calcjax._commands._user import (
    WorkerTarget,
    first_line,
    load_function,
    load_x,
    source_file,
    usage,
    user_frame,
)
from calcjax._files import check_writable_file
from calcjax._schema import DTYPES

#: ``--order 2`` without ``--n``/``--x``: a Hessian of this size (n^2 entries, n^2 evaluations).
SECOND_ORDER_N = 100

EPILOG = """\
examples:
  calcjax compare mymodel.py:loss --n 1000 --dtype float32
  calcjax compare mypackage.losses:rosenbrock --n 1000 --dtype float64 --csv rosen.csv
  calcjax compare loss.py:f --x params.npy --methods fd-central,ad-reverse
  calcjax compare simulator.py:loss --n 200 --grad simulator.py:loss_grad --workers 2
  calcjax compare numpy_model.py:loss --n 200 --vectorized --jax-port jax_model.py:loss
  calcjax compare loss.py:f --order 2 --n 50 --dtype float64

FUNCTION takes one array x (shape (n,), or the shape of --x) and returns a scalar.
--order 2 compares second derivatives (Hessians, diagonals, Hessian-vector products; default n 100).
A FUNCTION JAX cannot trace (NumPy, SciPy, a simulator) is detected and compared as a
black box: every finite-difference method that can run, runs, on NumPy arrays in
float64 unless --dtype says otherwise; give --n or --x (the length it expects).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="your function: a file path (loss.py:f) or an importable module (pkg.losses:f)",
    )
    parser.add_argument("--n", type=int, default=None, help="length of x (default 1000; ignored with --x)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="dtype of x (default float32)")
    parser.add_argument("--x", metavar="FILE.npy", default=None, help="the point x, from a .npy file")
    parser.add_argument(
        "--methods", default=None, help="comma-separated registry names (default: all available)"
    )
    parser.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: gradients (default); 2: second derivatives (calcjax.SECOND_ORDER_METHODS)",
    )
    parser.add_argument("--csv", metavar="PATH", default=None, help="also write the table as CSV")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto", help="default: auto")
    parser.add_argument(
        "--grad",
        metavar="MODULE:FUNCTION",
        default=None,
        help="your exact gradient of FUNCTION, the reference (default: complex step or Richardson estimate)",
    )
    parser.add_argument(
        "--jax-port",
        metavar="MODULE:FUNCTION",
        default=None,
        help="a JAX version of a FUNCTION JAX cannot trace: jax.grad on it is timed and checked",
    )
    parser.add_argument(
        "--blackbox",
        action="store_true",
        help="evaluate FUNCTION outside JAX even if it traces (traceable=False)",
    )
    parser.add_argument(
        "--vectorized",
        nargs="?",
        const="leading",
        choices=("leading", "trailing"),
        default=None,
        help="FUNCTION takes a batch of points on a leading axis (k, n) -> (k,), or trailing (n, k) as "
        "scipy.differentiate passes them; adds the row fd-central-vectorized",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="also run calcjax's central FD on a pool of N processes (row fd-central-workers)",
    )
    parser.add_argument(
        "--target-error",
        type=float,
        default=None,
        metavar="E",
        help="relative error a method must reach to be recommended (default: sqrt(eps) of the dtype)",
    )


def _write_csv(frame: Any, path: str) -> None:
    """Write ``frame`` (with its attrs as columns) to ``path`` through a temporary file."""
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    out = frame.copy()
    for key in ("n", "dtype", "device", "reference", "target_error", "jax_version"):
        out[key] = frame.attrs.get(key)
    fd, tmp = tempfile.mkstemp(prefix=".compare-", suffix=".csv", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            out.to_csv(handle, index=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    import jax

    # Both dtypes in one process: float32 for the methods when asked, float64 for the reference.
    jax.config.update("jax_enable_x64", True)

    from calcjax._compare import check_inputs, compare
    from calcjax._devices import DeviceError, resolve_device
    from calcjax._methods import METHODS
    from calcjax._second_order import SECOND_ORDER_METHODS

    registry = SECOND_ORDER_METHODS if args.order == 2 else METHODS
    if args.order == 2 and args.n is None and args.x is None:
        args.n = SECOND_ORDER_N

    if args.target_error is not None and not 0 < args.target_error < float("inf"):
        raise usage(f"--target-error must be positive and finite, got {args.target_error}")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in registry]
        if unknown or not methods:
            raise usage(f"unknown method(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(registry)}")
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        raise usage(str(err)) from None
    if args.csv is not None:
        check_writable_file(args.csv, f"--csv {args.csv}")  # before the comparison, not after it
    if args.workers is not None and args.workers < 1:
        raise usage(f"--workers must be at least 1, got {args.workers}")
    f = load_function(args.target)
    reference = load_function(args.grad) if args.grad else None
    jax_port = load_function(args.jax_port) if args.jax_port else None
    x, described = load_x(args)
    reason = _not_traceable(f, x, args)
    if reason is not None and args.order == 2:
        raise usage(
            f"--order 2 needs a FUNCTION JAX can trace ({reason}); for a black box call "
            "calcjax.hessian(f, x) or calcjax.hessian_vector_product(f, x, v, method='fd') directly"
        )
    if reason is not None:
        return _run_blackbox(f, x, described, reason, reference, jax_port, methods, args)
    if args.vectorized or args.workers or jax_port is not None:
        given = [
            o
            for o, v in (
                ("--vectorized", args.vectorized),
                ("--workers", args.workers),
                ("--jax-port", jax_port),
            )
            if v
        ]
        raise usage(
            f"{', '.join(given)} apply to a FUNCTION JAX cannot trace; {args.target} traces "
            "(pass --blackbox to compare it as a black box)"
        )
    with jax.default_device(device):
        try:
            jax.eval_shape(f, x)
        except Exception as err:
            raise usage(
                f"{args.target} cannot be evaluated at x of shape {x.shape} {x.dtype}: "
                f"{type(err).__name__}: {first_line(err)}{user_frame(err, source_file(f))}"
                + ("" if args.x else "; pass --n with the length f expects, or --x FILE.npy")
            ) from None
        try:
            check_inputs(f, x)
        except (TypeError, ValueError) as err:
            raise usage(f"{args.target}: {first_line(err)}") from None
    print(f"calcjax compare {args.target}: {described}", file=sys.stderr)
    _warn_non_finite(x)
    print(f"timing each method on {device.platform}:{device.id} ({device.device_kind})", file=sys.stderr)
    if args.order == 2:
        from calcjax._compare_second import compare_second_order, format_second_table

        with jax.default_device(device):
            frame = compare_second_order(f, x, methods=methods, target_error=args.target_error, progress=True)
        frame.attrs["device"] = str(device)
        return _show(frame, args, format_second_table)
    frame = compare(
        f,
        x,
        methods=methods,
        reference=reference,
        target_error=args.target_error,
        device=device,
        progress=True,
    )
    return _show(frame, args)


def _warn_non_finite(x: Any) -> None:
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(np.asarray(x, np.float64)))
    if bad.size:
        print(
            f"warning: x holds {bad.size} non-finite entr{'y' if bad.size == 1 else 'ies'} (first at flat "
            f"index {bad[0]}: {np.ravel(x)[bad[0]]}): errors against the reference will be NaN",
            file=sys.stderr,
        )


def _show(frame: Any, args: argparse.Namespace, formatter: Any = None) -> int:
    from calcjax._compare import format_table

    print()
    print((formatter or format_table)(frame))
    if args.csv:
        _write_csv(frame, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


def _not_traceable(f: Any, x: Any, args: argparse.Namespace) -> str | None:
    """Why JAX cannot trace ``f`` (``"--blackbox"`` when asked), or ``None``; a usage error if ``f``
    cannot run at ``x`` at all."""
    from calcjax._blackbox import trace_failure

    if args.blackbox:
        return "--blackbox"
    try:
        return trace_failure(f, x)
    except Exception as numpy_err:  # neither traced nor ran on NumPy arrays: say what JAX said
        import jax

        try:
            jax.eval_shape(f, x)
            err = numpy_err
        except Exception as jax_err:
            err = jax_err
        raise usage(
            f"{args.target} cannot be evaluated at x of shape {x.shape} {x.dtype}: "
            f"{type(err).__name__}: {first_line(err)}{user_frame(err, source_file(f))}"
            + ("" if args.x else "; pass --n with the length f expects, or --x FILE.npy")
        ) from None


def _run_blackbox(
    f: Any,
    x: Any,
    described: str,
    reason: str,
    reference: Any,
    jax_port: Any,
    methods: list[str] | None,
    args: argparse.Namespace,
) -> int:
    """``compare`` on an ``f`` JAX cannot trace: f is checked once on NumPy arrays, then compared."""
    import math

    import numpy as np

    from calcjax._compare import compare

    if args.n is None and args.x is None:
        raise usage(
            f"{args.target} is not JAX-traceable ({reason}): give the length it expects with --n "
            "(e.g. --n 200) or the point with --x FILE.npy"
        )
    if args.dtype is None and args.x is None and x.dtype != np.float64:
        x = x.astype(np.float64)  # a NumPy f computes in float64; --dtype float32 asks otherwise
        described = described.replace(" as float32", " as float64")
    try:
        value = f(x.copy())
        value = np.asarray(value)
    except Exception as err:
        raise usage(
            f"{args.target} failed at x of shape {x.shape} {x.dtype}: "
            f"{type(err).__name__}: {first_line(err)}{user_frame(err, source_file(f))}"
            + ("" if args.x else "; pass --n with the length f expects, or --x FILE.npy")
        ) from None
    if value.size != 1 or not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise usage(f"{args.target} must return a real scalar, got {value.dtype} of shape {value.shape}")
    _warn_non_finite(x)
    if not math.isfinite(float(value.reshape(()))):
        raise usage(f"{args.target}(x) = {float(value.reshape(()))}: f must be finite at x")
    print(f"calcjax compare {args.target}: {described}", file=sys.stderr)
    print(f"{args.target} is not JAX-traceable ({reason}): comparing it as a black box", file=sys.stderr)
    if args.workers:
        f = WorkerTarget(args.target, f)  # worker processes load the user's file themselves
    try:
        frame = compare(
            f,
            x,
            methods=methods,
            reference=reference,
            target_error=args.target_error,
            progress=True,
            jax_port=jax_port,
            traceable=False if args.blackbox else None,  # None: compare finds the reason (cached)
            vectorized=args.vectorized or False,
            workers=args.workers,
        )
    except (TypeError, ValueError) as err:
        raise usage(f"{args.target}: {first_line(err)}") from None
    return _show(frame, args)
