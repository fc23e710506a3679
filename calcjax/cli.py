"""The ``calcjax`` command: ``bench``, ``report``, ``compare``, ``check``, ``tutorial`` and ``ab``.

Parser and dispatch only: each command is a module of :mod:`calcjax._commands`
with ``add_arguments(parser)`` and ``run(args) -> int``. Those modules import
only the standard library (and, for ``report``, the report package) at the top,
so ``calcjax --help`` and ``calcjax report`` need no JAX; each imports what it
needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from calcjax import __version__
from calcjax._errors import UsageError

__all__ = ["SUBCOMMANDS", "UsageError", "build_parser", "main"]

#: subcommand -> (module with ``add_arguments(parser)`` and ``run(args) -> int``, help)
SUBCOMMANDS = {
    "bench": ("calcjax._commands.bench", "run the benchmark suite and write results/<run>/"),
    "report": ("calcjax._commands.report", "rebuild CSV, tables and plots from raw benchmark JSON"),
    "compare": ("calcjax._commands.compare", "compare every gradient method on your own function"),
    "check": (
        "calcjax._commands.check",
        "check a hand-written or custom gradient against FD",
    ),
    "tutorial": ("calcjax._commands.tutorial", "the tutorial's examples, rewritten with calcjax"),
    "ab": ("calcjax._commands.ab", "time two code versions interleaved and gate B against A"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcjax",
        description="Finite differences vs autodiff in JAX: how accurate, how fast, on your hardware.",
    )
    parser.add_argument("--version", action="version", version=f"calcjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UsageError as err:
        print(f"calcjax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"calcjax {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if err.filename is None:  # not a file's failure: a bug, shown in full
            raise
        # Paths are checked before the work starts; this is what the checks cannot see
        # (a disk that fills, a folder removed meanwhile): one line too.
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        print(f"calcjax {args.command}: error: {where}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
