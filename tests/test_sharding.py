"""The sharded FD gradient on 4 forced host devices equals the single-device one.

Forced host devices must be set before JAX starts, so the check runs in a
subprocess; the rest of the test session keeps its single CPU device.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

import calcjax

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jax.flatten_util import ravel_pytree
    import calcjax

    assert len(jax.devices()) == 4, jax.devices()
    out = {}
    cases = [(name, "float64") for name in ["quadratic", "rosenbrock", "logistic", "mlp"]]
    cases += [("quadratic", "float32"), ("mlp", "float32")]
    for name, dtype in cases:
        inst = calcjax.get_problem(name).instance(42, dtype)
        flat = ravel_pytree(inst.x0)[0]
        one = ravel_pytree(calcjax.gradient(inst.f, inst.x0))[0]
        four = ravel_pytree(calcjax.gradient(inst.f, inst.x0, devices=4))[0]
        jitted = jax.jit(lambda x: calcjax.gradient(inst.f, x, devices="all", batch_size=3))
        three = ravel_pytree(jitted(inst.x0))[0]
        # Rounding of f (different batch shapes may round differently) over the smallest step.
        noise = float(np.finfo(dtype).eps * (1 + abs(inst.f(inst.x0))) / np.min(calcjax.default_step(flat)))
        out[f"{name}-{dtype}"] = [
            float(np.max(np.abs(one - four))),
            float(np.max(np.abs(one - three))),
            noise,
        ]
    inst = calcjax.get_problem("rosenbrock").instance(20, "float64")
    rich1 = calcjax.richardson_gradient(inst.f, inst.x0)
    rich4 = calcjax.richardson_gradient(inst.f, inst.x0, devices=4)
    cs1 = calcjax.complex_step_gradient(inst.f, inst.x0)
    cs4 = calcjax.complex_step_gradient(inst.f, inst.x0, devices=4)
    fwd1 = calcjax.gradient(inst.f, inst.x0, scheme="forward", order=1)
    fwd2 = calcjax.gradient(inst.f, inst.x0, scheme="forward", order=1, devices=2)
    out["richardson"] = [float(np.max(np.abs(rich1.value - rich4.value))), 0.0, 1e-12]
    out["complex"] = [float(np.max(np.abs(cs1 - cs4))), 0.0, 1e-12]
    out["forward"] = [float(np.max(np.abs(fwd1 - fwd2))), 0.0, 1e-12]
    print(json.dumps(out))
    """
)


def _run_forced(script: str, devices: int = 4) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_sharded_gradient_equals_single_device_on_4_forced_cpu_devices():
    proc = _run_forced(SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 9
    for case, (d4, d3, noise) in results.items():
        # Other batch shapes may round f differently, which FD amplifies to
        # about eps*|f|/h: equal to that rounding (in practice mostly bit for bit).
        assert d4 <= 8 * noise, (case, d4, noise)
        assert d3 <= 8 * noise, (case, d3, noise)


def test_devices_argument_is_validated():
    f = lambda x: (x**2).sum()
    x = jax.numpy.ones(3)
    n_local = len(jax.local_devices())
    with pytest.raises(ValueError, match=rf"devices={n_local + 1} but {n_local} local device"):
        calcjax.gradient(f, x, devices=n_local + 1)
    with pytest.raises(ValueError, match="devices must be None, 'all', a device count"):
        calcjax.gradient(f, x, devices="gpu0")
    with pytest.raises(ValueError, match="devices=0"):
        calcjax.gradient(f, x, devices=0)


def test_single_device_mesh_matches_default():
    f = lambda x: (jax.numpy.sin(x) * x).sum()
    x = jax.numpy.linspace(0.0, 1.0, 11)
    assert (calcjax.gradient(f, x, devices=1) == calcjax.gradient(f, x)).all()
    assert (calcjax.gradient(f, x, devices=jax.local_devices()[:1]) == calcjax.gradient(f, x)).all()
