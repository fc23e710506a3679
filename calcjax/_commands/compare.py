"""``calcjax compare MODULE:FUNCTION``: every gradient method on your own function, in one table.

The module import stays light (argparse only); JAX and calcjax's maths load in :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calcjax._commands._user import (
    first_line,
    load_function,
    load_x,
    source_file,
    usage,
    user_frame,
)
from calcjax._schema import DTYPES

#: ``--order 2`` without ``--n``/``--x``: full Hessians are n x n, so a smaller default n than gradients'.
SECOND_ORDER_N = 100

EPILOG = """\
examples:
  calcjax compare mymodel.py:loss --n 1000 --dtype float32
  calcjax compare mypackage.losses:rosenbrock --n 1000 --dtype float64 --csv rosen.csv
  calcjax compare loss.py:f --x params.npy --methods fd-central,ad-reverse
  calcjax compare loss.py:f --order 2 --n 50 --dtype float64

FUNCTION takes one array x (shape (n,), or the shape of --x) and returns a scalar.
--order 2 compares second derivatives (Hessians, diagonals, Hessian-vector products; default n 100).
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

    from calcjax._compare import check_inputs, compare, format_table
    from calcjax._devices import DeviceError, resolve_device
    from calcjax._methods import METHODS
    from calcjax._second_order import SECOND_ORDER_METHODS

    registry = SECOND_ORDER_METHODS if args.order == 2 else METHODS
    if args.order == 2 and args.n is None and args.x is None:
        args.n = SECOND_ORDER_N

    if args.target_error is not None and not args.target_error > 0:
        raise usage(f"--target-error must be positive, got {args.target_error}")
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
        import os

        folder = os.path.dirname(os.path.abspath(args.csv))
        if not os.path.isdir(folder):
            raise usage(f"cannot write {args.csv}: no such folder {folder}")
    f = load_function(args.target)
    x, described = load_x(args)
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
    print(f"timing each method on {device.platform}:{device.id} ({device.device_kind})", file=sys.stderr)
    if args.order == 2:
        from calcjax._compare_second import compare_second_order, format_second_table

        with jax.default_device(device):
            frame = compare_second_order(f, x, methods=methods, target_error=args.target_error, progress=True)
        frame.attrs["device"] = str(device)
        text = format_second_table(frame)
    else:
        frame = compare(f, x, methods=methods, target_error=args.target_error, device=device, progress=True)
        text = format_table(frame)
    print()
    print(text)
    if args.csv:
        _write_csv(frame, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
