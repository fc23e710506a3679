"""``calcjax check MODULE:FUNCTION``: is this gradient right? Exit 0 pass, 1 fail, 2 usage error.

The module import stays light (argparse only); JAX and calcjax's maths load in :func:`run`.
"""

from __future__ import annotations

import argparse
import sys

from calcjax._commands._user import first_line, load_function, load_x, usage
from calcjax._schema import DTYPES

EPILOG = """\
examples:
  calcjax check mymodel.py:loss                      # jax.grad(loss), i.e. its custom rules
  calcjax check mymodel.py:loss --grad mymodel.py:loss_grad --n 500 --dtype float64
  calcjax check sim.py:loss --x params.npy --mode full

FUNCTION takes one array x (shape (n,), or the shape of --x) and returns a scalar; it may be JAX
code or any Python function of NumPy arrays. --grad names a function returning the gradient.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("target", metavar="MODULE:FUNCTION", help="your function (loss.py:f or pkg.mod:f)")
    parser.add_argument(
        "--grad",
        metavar="MODULE:FUNCTION",
        default=None,
        help="the gradient to check (default: jax.grad of FUNCTION, which exercises its custom rules)",
    )
    parser.add_argument("--n", type=int, default=None, help="length of x (default 1000; ignored with --x)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="dtype of x (default float32)")
    parser.add_argument("--x", metavar="FILE.npy", default=None, help="the point x, from a .npy file")
    parser.add_argument("--directions", type=int, default=None, help="random directions (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the directions (default 0)")
    parser.add_argument(
        "--mode", choices=("random", "full"), default="random", help="random directions, or every coordinate"
    )
    parser.add_argument(
        "--blackbox",
        action="store_true",
        help="evaluate FUNCTION as a black box (traceable=False) instead of detecting it",
    )


def run(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 x stays float64; float32 is asked for explicitly

    from calcjax._check import DEFAULT_DIRECTIONS, check_gradient

    directions = DEFAULT_DIRECTIONS if args.directions is None else args.directions
    if directions < 1:
        raise usage(f"--directions must be a positive integer, got {directions}")
    f = load_function(args.target)
    grad = None if args.grad is None else load_function(args.grad)
    x, described = load_x(args)
    print(f"calcjax check {args.target}: {described}", file=sys.stderr)
    try:
        res = check_gradient(
            f,
            x,
            grad,
            directions=directions,
            seed=args.seed,
            mode=args.mode,
            traceable=False if args.blackbox else None,
        )
    except (TypeError, ValueError) as err:
        raise usage(f"{args.target}: {first_line(err)}") from None
    print(res)
    return 0 if res.passed else 1
