"""``calcjax compare MODULE:FUNCTION``: every gradient method on your own function, in one table.

The module import stays light (argparse only); JAX and calcjax's maths load in :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calcjax._errors import UsageError
from calcjax._schema import DTYPES

#: The default point: a seeded standard-normal vector, so runs are repeatable.
DEFAULT_SEED = 0

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


def _usage(message: str) -> Exception:
    return UsageError(message)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _user_frame(err: BaseException, path: str | None) -> str:
    """`` (file.py:12)`` for the deepest frame of the traceback in the user's file."""
    import os
    import traceback

    if path is None:
        return ""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [fr for fr in frames if os.path.abspath(fr.filename) == os.path.abspath(path)]
    return f" ({mine[-1].filename}:{mine[-1].lineno})" if mine else ""


def _source_file(f: Any) -> str | None:
    import inspect

    try:
        return inspect.getsourcefile(f)
    except TypeError:
        return None


def load_function(target: str) -> Any:
    """The callable named by ``MODULE:FUNCTION`` (a file path or an importable module)."""
    import importlib
    import importlib.util
    import os

    module_part, sep, func_part = target.rpartition(":")
    if not sep or not module_part or not func_part:
        raise _usage(f"expected MODULE:FUNCTION (e.g. loss.py:f or mypkg.losses:f), got {target!r}")
    path = None
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = module_part
        if not os.path.isfile(path):
            raise _usage(f"no such file: {path}")
        name = "_calcjax_user_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(path)[:-3])
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise _usage(f"cannot import {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        directory = os.path.dirname(os.path.abspath(path))
        sys.path.insert(0, directory)  # so the file can import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise _usage(
                f"importing {path} failed: {type(err).__name__}: {_first_line(err)}{_user_frame(err, path)}"
            ) from None
        finally:
            sys.path.remove(directory)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as err:
            if err.name and module_part.startswith(err.name):
                raise _usage(
                    f"no module named {module_part!r} (give a file path like loss.py:f, "
                    "or run from the folder that holds the module)"
                ) from None
            raise _usage(f"importing {module_part} failed: {_first_line(err)}") from None
        except Exception as err:
            raise _usage(
                f"importing {module_part} failed: {type(err).__name__}: {_first_line(err)}"
                f"{_user_frame(err, getattr(err, 'filename', None))}"
            ) from None
    obj: Any = module
    for part in func_part.split("."):
        if not hasattr(obj, part):
            names = sorted(
                k
                for k, val in vars(module).items()
                if callable(val)
                and not isinstance(val, type)
                and not k.startswith("_")
                and getattr(val, "__module__", None) == module.__name__
            )
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise _usage(
                f"{module_part} has no function {func_part!r}; it defines: {shown or 'nothing callable'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise _usage(f"{target} is a {type(obj).__name__}, not a function")
    return obj


def _load_x(args: argparse.Namespace) -> tuple[Any, str]:
    """``(x, description)`` from ``--x`` or the default seeded vector."""
    import numpy as np

    if args.x is not None:
        if args.n is not None:
            raise _usage("give either --n or --x, not both (--x sets n)")
        try:
            x = np.load(args.x, allow_pickle=False)
        except FileNotFoundError:
            raise _usage(f"no such file: {args.x}") from None
        except (OSError, ValueError) as err:
            raise _usage(f"cannot read {args.x} as a .npy array: {_first_line(err)}") from None
        if not isinstance(x, np.ndarray) or x.size == 0:
            raise _usage(f"{args.x} must hold one non-empty array")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise _usage(f"{args.x} holds dtype {x.dtype}; x must be real numbers")
        dtype = args.dtype or (x.dtype.name if x.dtype.name in DTYPES else "float64")
        return x.astype(dtype), f"x from {args.x}: shape {x.shape}, {dtype}"
    n = 1000 if args.n is None else args.n
    if n < 1:
        raise _usage(f"--n must be a positive integer, got {n}")
    dtype = args.dtype or "float32"
    x = np.random.default_rng(DEFAULT_SEED).standard_normal(n).astype(dtype)
    return x, (
        f"x = numpy.random.default_rng({DEFAULT_SEED}).standard_normal({n}) as {dtype} "
        "(give your own with --x FILE.npy)"
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

    if args.target_error is not None and not args.target_error > 0:
        raise _usage(f"--target-error must be positive, got {args.target_error}")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise _usage(f"unknown method(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(METHODS)}")
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        raise _usage(str(err)) from None
    if args.csv is not None:
        import os

        folder = os.path.dirname(os.path.abspath(args.csv))
        if not os.path.isdir(folder):
            raise _usage(f"cannot write {args.csv}: no such folder {folder}")
    f = load_function(args.target)
    x, described = _load_x(args)
    with jax.default_device(device):
        try:
            jax.eval_shape(f, x)
        except Exception as err:
            raise _usage(
                f"{args.target} cannot be evaluated at x of shape {x.shape} {x.dtype}: "
                f"{type(err).__name__}: {_first_line(err)}{_user_frame(err, _source_file(f))}"
                + ("" if args.x else "; pass --n with the length f expects, or --x FILE.npy")
            ) from None
        try:
            check_inputs(f, x)
        except (TypeError, ValueError) as err:
            raise _usage(f"{args.target}: {_first_line(err)}") from None
    print(f"calcjax compare {args.target}: {described}", file=sys.stderr)
    print(f"timing each method on {device.platform}:{device.id} ({device.device_kind})", file=sys.stderr)
    frame = compare(f, x, methods=methods, target_error=args.target_error, device=device, progress=True)
    print()
    print(format_table(frame))
    if args.csv:
        _write_csv(frame, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
