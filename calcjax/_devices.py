"""Choosing the device to run on: ``cpu``, ``gpu`` or ``auto``, with errors that list what exists."""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["DEVICE_CHOICES", "DeviceError", "available_backends", "device_info", "resolve_device"]

DEVICE_CHOICES = ("cpu", "gpu", "auto")


class DeviceError(RuntimeError):
    """The requested device kind is not available here."""


def available_backends() -> dict[str, list[jax.Device]]:
    """Every backend JAX can start here, with its devices (``{"cpu": [...], "gpu": [...]}``)."""
    found: dict[str, list[jax.Device]] = {}
    for platform in ("cpu", "gpu", "tpu"):
        try:
            devices = jax.devices(platform)
        except RuntimeError:
            continue
        if devices:
            found[platform] = list(devices)
    return found


def _describe(found: dict[str, list[jax.Device]]) -> str:
    return "; ".join(f"{platform}: {len(devs)} x {devs[0].device_kind}" for platform, devs in found.items())


def resolve_device(spec: str = "auto") -> jax.Device:
    """The first device of kind ``spec`` (``"cpu"``, ``"gpu"`` or ``"auto"``: a GPU if there is one).

    Raises:
      ValueError: ``spec`` is not one of ``cpu``, ``gpu``, ``auto``.
      DeviceError: ``gpu`` was asked for and JAX sees none; the message lists
        what is available and how to install CUDA support.
    """
    if spec not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {spec!r}; valid: {', '.join(DEVICE_CHOICES)}")
    found = available_backends()
    if spec == "auto":
        spec = "gpu" if "gpu" in found else "cpu"
    if spec not in found:
        raise DeviceError(
            f"no {spec.upper()} is available to JAX {jax.__version__}; available: {_describe(found)}. "
            "For NVIDIA GPUs install the CUDA build: pip install 'calcjax[cuda12]' or 'calcjax[cuda13]'"
        )
    return found[spec][0]


def device_info(device: jax.Device) -> dict[str, Any]:
    """Facts about ``device`` for a benchmark record: backend, kind, count of its kind."""
    return {
        "device": f"{device.platform}:{device.id}",
        "backend": device.platform,
        "device_kind": device.device_kind,
        "device_count": len(jax.devices(device.platform)),
    }
