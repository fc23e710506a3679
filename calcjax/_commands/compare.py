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
from calcjax._files import check_writable_file
from calcjax._schema import DTYPES

EPILOG = """\
examples:
  calcjax compare mymodel.py:loss --n 1000 --dtype float32
  calcjax compare mypackage.losses:rosenbrock --n 1000 --dtype float64 --csv rosen.csv
  calcjax compare loss.py:f --x params.npy --methods fd-central,ad-reverse

FUNCTION takes one array x (shape (n,), or the shape of --x) and returns a scalar.
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

    if args.target_error is not None and not 0 < args.target_error < float("inf"):
        raise usage(f"--target-error must be positive and finite, got {args.target_error}")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise usage(f"unknown method(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(METHODS)}")
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        raise usage(str(err)) from None
    if args.csv is not None:
        check_writable_file(args.csv, f"--csv {args.csv}")  # before the comparison, not after it
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
    frame = compare(f, x, methods=methods, target_error=args.target_error, device=device, progress=True)
    print()
    print(format_table(frame))
    if args.csv:
        _write_csv(frame, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
