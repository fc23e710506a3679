"""Loading a user's function and point for ``calcjax compare`` and ``calcjax check``.

Light at import (argparse-free, no JAX): NumPy and importlib load inside the functions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calcjax._errors import UsageError
from calcjax._schema import DTYPES

#: The default point: a seeded standard-normal vector, so runs are repeatable.
DEFAULT_SEED = 0


def usage(message: str) -> Exception:
    return UsageError(message)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def user_frame(err: BaseException, path: str | None) -> str:
    """`` (file.py:12)`` for the deepest frame of the traceback in the user's file."""
    import os
    import traceback

    if path is None:
        return ""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [fr for fr in frames if os.path.abspath(fr.filename) == os.path.abspath(path)]
    return f" ({mine[-1].filename}:{mine[-1].lineno})" if mine else ""


def source_file(f: Any) -> str | None:
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
        raise usage(f"expected MODULE:FUNCTION (e.g. loss.py:f or mypkg.losses:f), got {target!r}")
    path = None
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = module_part
        if not os.path.isfile(path):
            raise usage(f"no such file: {path}")
        name = "_calcjax_user_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(path)[:-3])
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise usage(f"cannot import {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        directory = os.path.dirname(os.path.abspath(path))
        sys.path.insert(0, directory)  # so the file can import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise usage(
                f"importing {path} failed: {type(err).__name__}: {first_line(err)}{user_frame(err, path)}"
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
                raise usage(
                    f"no module named {module_part!r} (give a file path like loss.py:f, "
                    "or run from the folder that holds the module)"
                ) from None
            raise usage(f"importing {module_part} failed: {first_line(err)}") from None
        except Exception as err:
            raise usage(
                f"importing {module_part} failed: {type(err).__name__}: {first_line(err)}"
                f"{user_frame(err, getattr(err, 'filename', None))}"
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
            raise usage(
                f"{module_part} has no function {func_part!r}; it defines: {shown or 'nothing callable'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise usage(f"{target} is a {type(obj).__name__}, not a function")
    return obj


def load_x(args: argparse.Namespace) -> tuple[Any, str]:
    """``(x, description)`` from ``--x`` or the default seeded vector."""
    import numpy as np

    if args.x is not None:
        if args.n is not None:
            raise usage("give either --n or --x, not both (--x sets n)")
        try:
            with open(args.x, "rb") as handle:
                magic = handle.read(6)
        except FileNotFoundError:
            raise usage(f"no such file: {args.x}") from None
        except OSError as err:
            raise usage(f"cannot read {args.x}: {first_line(err)}") from None
        if magic != b"\x93NUMPY":
            raise usage(
                f"{args.x} is not a .npy file (it does not start with NumPy's header); "
                "save x with numpy.save('x.npy', x)"
            )
        try:
            x = np.load(args.x, allow_pickle=False)
        except FileNotFoundError:
            raise usage(f"no such file: {args.x}") from None
        except (OSError, ValueError) as err:
            raise usage(f"cannot read {args.x} as a .npy array: {first_line(err)}") from None
        if not isinstance(x, np.ndarray) or x.size == 0:
            raise usage(f"{args.x} must hold one non-empty array")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise usage(f"{args.x} holds dtype {x.dtype}; x must be real numbers")
        dtype = args.dtype or (x.dtype.name if x.dtype.name in DTYPES else "float64")
        return x.astype(dtype), f"x from {args.x}: shape {x.shape}, {dtype}"
    n = 1000 if args.n is None else args.n
    if n < 1:
        raise usage(f"--n must be a positive integer, got {n}")
    dtype = args.dtype or "float32"
    x = np.random.default_rng(DEFAULT_SEED).standard_normal(n).astype(dtype)
    return x, (
        f"x = numpy.random.default_rng({DEFAULT_SEED}).standard_normal({n}) as {dtype} "
        "(give your own with --x FILE.npy)"
    )


def _reload_target(target: str, cwd: str) -> Any:
    """In a worker process: the user's function again, loaded from its file or module."""
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return load_function(target)


class WorkerTarget:
    """A user's ``MODULE:FUNCTION`` that worker processes can receive: it pickles as its name.

    A function loaded from a file path lives in a module worker processes cannot
    import by name; this wrapper travels as ``(target, cwd)`` and each worker loads
    the file itself (once per unpickling).
    """

    def __init__(self, target: str, fn: Any) -> None:
        import os

        module_part, _, func_part = target.rpartition(":")
        if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
            target = f"{os.path.abspath(module_part)}:{func_part}"
        self.target, self.cwd, self.fn = target, os.getcwd(), fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (_reload_target, (self.target, self.cwd))

    def __repr__(self) -> str:
        return f"<{self.target}>"
