"""How many coordinates one finite-difference batch perturbs on an accelerator.

On a CPU the batch comes from a byte budget (:func:`calcjax.auto_batch_size`,
measured: a few MiB, to stay in cache). An accelerator is different: XLA often
fuses a batch's perturbed points into ``f``'s reduction without ever writing
them, so the nominal ``points * n * itemsize`` per coordinate overstates what a
batch needs, and every extra batch costs a kernel launch and a loop step. On an
accelerator the batch is therefore read from the compiled program itself
(``compiled.memory_analysis()``): all ``n`` coordinates in one batch when that
program fits :data:`ACCELERATOR_MEMORY_SHARE` of the device's memory and
:data:`ACCELERATOR_BATCH_BYTES` (then calcjax runs what naive ``vmap`` runs),
else the largest power of two whose compiled batch fits them. Where the device
reports no memory limit, or the backend no memory analysis, the nominal rule is
used, as before.

Everything here takes the device and the measurement as arguments, so the rule
is tested on a CPU with a simulated device memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax

__all__ = [
    "ACCELERATOR_BATCH_BYTES",
    "ACCELERATOR_MEMORY_SHARE",
    "accelerator_batch",
    "choose_batch",
    "compiled_bytes",
    "default_device",
    "device_memory",
]

#: An automatic batch may take at most this share of an accelerator's memory.
ACCELERATOR_MEMORY_SHARE = 1 / 16

#: Compiled bytes of one batch's program beyond which a batch is not made larger on an accelerator.
#: A batch this big that writes its points is bound by memory traffic (a GiB is a third of a
#: millisecond at an H100's rated 3.35 TB/s), so growing it saves only the loop step between
#: batches (far smaller: issue 21 measured it) while the points it writes grow with it; a batch
#: that XLA fuses into ``f`` compiles to far fewer bytes and still goes in one piece.
ACCELERATOR_BATCH_BYTES = 2**30

#: Compiles tried, after the one of all ``n`` coordinates, before settling on one coordinate per batch.
_MAX_TRIES = 8


def default_device() -> jax.Device:
    """The device an uncommitted computation runs on: ``jax.default_device``'s if set, else the first."""
    chosen = jax.config.jax_default_device
    if chosen is None:
        return jax.devices()[0]
    if isinstance(chosen, str):  # a platform name
        return jax.devices(chosen)[0]
    return chosen


def device_memory(device: Any) -> int | None:
    """Bytes JAX may allocate on ``device`` (``memory_stats()["bytes_limit"]``), ``None`` if unknown."""
    try:
        stats = device.memory_stats() or {}
    except (RuntimeError, AttributeError, NotImplementedError):  # backend without stats
        return None
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def compiled_bytes(fn: Callable[..., Any], args: Sequence[jax.ShapeDtypeStruct]) -> float | None:
    """Peak bytes of ``jax.jit(fn)`` compiled for ``args`` (shapes only: nothing runs).

    Arguments, outputs and temporaries, aliased bytes counted once (or XLA's own
    peak where it reports a larger one). ``None`` when the program cannot be
    lowered here (``fn`` closes over something that will not lower) or the
    backend gives no memory analysis; ``inf`` when it lowers but does not
    compile (XLA ran out of memory compiling it, say): too big.
    """
    try:
        lowered = jax.jit(fn).lower(*args)
    except Exception:  # any failure to lower means "cannot measure here"
        return None
    try:
        compiled = lowered.compile()
    except Exception:  # a program that does not compile does not fit
        return math.inf
    try:
        m = compiled.memory_analysis()
    except Exception:  # backends without memory analysis raise various errors
        return None
    if m is None:
        return None
    total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    return max(int(total), int(getattr(m, "peak_memory_in_bytes", 0) or 0))


def _power_of_two_floor(k: float) -> int:
    return 1 << max(0, int(k).bit_length() - 1) if k >= 1 else 1


def accelerator_batch(
    n: int,
    *,
    budget_bytes: int,
    measure: Callable[[int], float | None],
    nominal: Callable[[int | None], int],
    fixed_bytes: int = 0,
    batch_bytes: int | None = None,
) -> int:
    """The batch for ``n`` coordinates on an accelerator with ``budget_bytes`` to spend.

    ``measure(b)`` is the peak bytes of the compiled program of one batch of
    ``b`` coordinates (:func:`compiled_bytes`); ``fixed_bytes`` is what the
    whole computation holds besides (its output); ``batch_bytes``, if given,
    caps ``measure(b)`` too. All ``n`` when ``measure(n)`` fits both
    (``measure(n) + fixed_bytes <= budget_bytes``); else a power of two scaled
    from the measured bytes and checked by measuring it, halving (or scaling
    down by the measured excess) until it fits, down to 1. When ``measure``
    gives ``None`` (no memory analysis), ``nominal(None)``: the nominal byte
    rule of :func:`calcjax.auto_batch_size`, as before; when the program of all
    ``n`` does not compile, the search starts from ``nominal(budget_bytes)``.
    """
    whole = measure(n)
    if whole is None:
        return nominal(None)
    room = budget_bytes - fixed_bytes
    if room <= 0:  # the output alone fills the share: the smallest batch
        return 1
    if batch_bytes is not None:
        room = min(room, batch_bytes)
    if whole <= room:
        return n
    b = _power_of_two_floor(n * room / whole) if math.isfinite(whole) else nominal(budget_bytes)
    b = min(b, _power_of_two_floor(n - 1)) if n > 1 else 1
    for _ in range(_MAX_TRIES):
        if b <= 1:
            return 1
        got = measure(b)
        if got is None:
            return min(b, nominal(budget_bytes))
        if got <= room:
            return b
        shrink = b * room / got if math.isfinite(got) else 0
        b = min(b // 2, _power_of_two_floor(shrink))
    return 1


def choose_batch(
    n: int,
    *,
    device: Any,
    nominal: Callable[[int | None], int],
    measure: Callable[[int], float | None],
    fixed_bytes: int = 0,
    memory_bytes: int | None = None,
) -> int:
    """The automatic batch for ``n`` coordinates on ``device``.

    On a CPU, ``nominal(None)``: the measured cache-sized rule, unchanged. On
    an accelerator, :func:`accelerator_batch` with
    :data:`ACCELERATOR_MEMORY_SHARE` of its memory (``memory_bytes``, read from
    the device when ``None``) and batches of at most
    :data:`ACCELERATOR_BATCH_BYTES`; ``nominal(None)`` when the device reports
    no memory limit.
    """
    if device.platform == "cpu":
        return nominal(None)
    limit = device_memory(device) if memory_bytes is None else memory_bytes
    if not limit:
        return nominal(None)
    budget = int(limit * ACCELERATOR_MEMORY_SHARE)
    return accelerator_batch(
        n,
        budget_bytes=budget,
        measure=measure,
        nominal=nominal,
        fixed_bytes=fixed_bytes,
        batch_bytes=ACCELERATOR_BATCH_BYTES,
    )
