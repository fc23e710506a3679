"""``calcjax tutorial``: the tutorial's three examples, rewritten with calcjax.

"Calculus Essentials for Machine Learning" computes a derivative with a fixed
``eps=1e-5``, a gradient with a Python loop, and ten steps of gradient descent
on ``x**2``. Here each is printed beside its calcjax counterpart and the exact
answer.
"""

from __future__ import annotations

import argparse

from calcjax._errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10, help="gradient-descent steps (default 10)")


def run(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import calcjax
    from calcjax import baselines

    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")

    print("1. Derivative of f(x) = x**2 (exact: 2x)")
    xs = np.linspace(-3, 3, 7)
    d = calcjax.derivative(lambda t: t**2, jnp.asarray(xs))
    for x, dx in zip(xs, np.asarray(d), strict=True):
        tut = baselines.numerical_derivative(lambda t: t**2, x)
        print(f"   x={x: .1f}  tutorial eps=1e-5: {tut: .10f}  calcjax.derivative: {dx: .10f}")

    print("\n2. Gradient of L(w) = w1**2 + 2*w2**2 at w = (1, -2) (exact: (2, -8))")
    loss = lambda w: w[0] ** 2 + 2 * w[1] ** 2
    w = np.array([1.0, -2.0])
    print(f"   tutorial loop:     {baselines.numpy_loop_gradient(loss, w)}")
    print(f"   calcjax.gradient:  {np.asarray(calcjax.gradient(loss, jnp.asarray(w)))}")
    print(f"   jax.grad:          {np.asarray(jax.grad(loss)(jnp.asarray(w)))}")

    print(f"\n3. Gradient descent on x**2, lr=0.1, x0=5.0, {args.steps} steps (exact: x_k = 5 * 0.8**k)")
    x_tut, _ = baselines.tutorial_gradient_descent(lambda t: 2 * t, 5.0, 0.1, args.steps)
    res = calcjax.gradient_descent(lambda t: t**2, jnp.float64(5.0), lr=0.1, steps=args.steps)
    fd = calcjax.gradient_descent(
        lambda t: t**2, jnp.float64(5.0), lr=0.1, steps=args.steps, method="fd-central"
    )
    print(f"   tutorial loop:                       x = {x_tut:.10f}")
    print(f"   calcjax.gradient_descent (jax.grad): x = {float(res.x):.10f}")
    print(f"   calcjax.gradient_descent (FD):       x = {float(fd.x):.10f}")
    print(f"   exact:                               x = {5 * 0.8**args.steps:.10f}")
    return 0
