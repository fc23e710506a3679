"""Multi-host FD gradients: two local CPU processes joined by ``jax.distributed.initialize``.

Each process runs the same program (SPMD); ``devices=jax.devices()`` spans both
processes' devices, and each process evaluates half of the coordinates.
"""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    pid, port = int(sys.argv[1]), sys.argv[2]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import calcjax

    assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
    inst = calcjax.get_problem("rosenbrock").instance(40, "float64")
    mesh = Mesh(np.asarray(jax.devices()), ("fd",))
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec()), inst.x0_np)
    g = jax.jit(lambda x: calcjax.gradient(inst.f, x, devices=jax.devices()))(x)
    g = np.asarray(multihost_utils.process_allgather(g, tiled=True))
    ref = inst.reference_gradient()
    print("relerr", float(np.linalg.norm(g - ref) / np.linalg.norm(ref)))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gradient_over_two_processes_matches_reference():
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(pid), port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"},
        )
        for pid in (0, 1)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        rel = float(out.split("relerr")[-1])
        assert rel < 1e-8
