"""The benchmark suite's options, defined and checked once for ``pytest bench`` and ``calcjax bench``.

Both front ends add the same options (:func:`add_to_pytest`, :func:`add_to_argparse`),
take them as text and check them with the same :func:`resolve`, so a value one
accepts the other accepts, with the same meaning and the same error message.

Standard library only: ``calcjax --help`` and the checks run without JAX.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calcjax._bench.profiles import PROFILES
from calcjax._schema import DTYPES

__all__ = ["DEVICES", "OPTIONS", "BenchOptions", "OptionError", "add_to_argparse", "add_to_pytest", "resolve"]

#: ``--device`` values (calcjax._devices.DEVICE_CHOICES, kept here so the checks need no JAX;
#: a test pins the two together).
DEVICES = ("cpu", "gpu", "auto")


class OptionError(ValueError):
    """A bad benchmark option; each front end turns it into its own usage error."""


@dataclass(frozen=True)
class Option:
    """One option: its flags, destination, help; ``flag=True`` for an on/off switch."""

    flags: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    flag: bool = False


OPTIONS = (
    Option(
        ("--device",),
        "device",
        "where to run: cpu, gpu, or auto (a GPU if JAX sees one). Default: auto.",
        "DEVICE",
    ),
    Option(
        ("--profile",),
        "profile",
        "sizes and time budgets: ci, quick, default or full. Default: 'default' with --benchmark-only "
        "(always so under calcjax bench), else 'ci' (tiny sizes, each benchmark run once as a test).",
        "NAME",
    ),
    Option(
        ("--quick",),
        "quick",
        "shorthand for --profile quick: n = 100, 1000, the headline methods (about a minute on 2 CPU cores)",
        flag=True,
    ),
    Option(
        ("--full",), "full", "shorthand for --profile full: everything feasible, up to n = 1e6", flag=True
    ),
    Option(
        ("--dtypes", "--dtype"),
        "dtypes",
        "comma-separated dtypes from float32,float64. Default: the accuracy suites run both; the timing "
        "suites take the profile's (float64 in quick and default, both in full).",
        "LIST",
    ),
    Option(
        ("--sizes",),
        "sizes",
        "comma-separated n of the gradient suite (e.g. 10,1000 or 1e6), overriding the profile's",
        "LIST",
    ),
    Option(
        ("--max-call-s",),
        "max_call_s",
        "run every case predicted to take at most S seconds per call (every timing suite), instead of "
        "the profile's limit (e.g. 1 s in default, 10 s in full)",
        "S",
    ),
    Option(
        ("--cpu-devices",),
        "cpu_devices",
        "on a CPU, force N host devices for the sharding suite; 0: JAX's default. They share the "
        "machine's cores.",
        "N",
    ),
)


def add_to_pytest(group: Any) -> None:
    """Add :data:`OPTIONS` to a pytest option group (``parser.getgroup(...)``)."""
    for o in OPTIONS:
        if o.flag:
            group.addoption(*o.flags, dest=o.dest, action="store_true", default=False, help=o.help)
        else:
            group.addoption(*o.flags, dest=o.dest, default=None, metavar=o.metavar, help=o.help)


def add_to_argparse(parser: argparse.ArgumentParser, *, defaults: dict[str, str] | None = None) -> None:
    """Add :data:`OPTIONS` to an argparse parser; ``defaults`` (text, as typed) replace ``None``."""
    defaults = defaults or {}
    for o in OPTIONS:
        if o.flag:
            parser.add_argument(*o.flags, dest=o.dest, action="store_true", default=False, help=o.help)
        else:
            default = defaults.get(o.dest)
            text = o.help + (f" Default here: {default}." if default is not None else "")
            parser.add_argument(*o.flags, dest=o.dest, default=default, metavar=o.metavar, help=text)


@dataclass(frozen=True)
class BenchOptions:
    """The options, checked. ``None``: not given (the profile's or JAX's default)."""

    device: str
    profile: str
    dtypes: tuple[str, ...] | None
    sizes: tuple[int, ...] | None
    max_call_s: float | None
    cpu_devices: int | None

    def argv(self) -> list[str]:
        """The options as pytest arguments, for the suite's process (only those given)."""
        out = [f"--profile={self.profile}", f"--device={self.device}"]
        if self.dtypes is not None:
            out.append(f"--dtypes={','.join(self.dtypes)}")
        if self.sizes is not None:
            out.append(f"--sizes={','.join(map(str, self.sizes))}")
        if self.max_call_s is not None:
            out.append(f"--max-call-s={self.max_call_s!r}")
        if self.cpu_devices is not None:
            out.append(f"--cpu-devices={self.cpu_devices}")
        return out


def resolve(get: Callable[[str], Any], *, benchmark_only: bool) -> BenchOptions:
    """Check the options (``get(dest)`` gives each as typed, or ``None``) and resolve the profile.

    Raises:
      OptionError: the first bad option, named with its value.
    """
    device = get("device") or "auto"
    if device not in DEVICES:
        raise OptionError(f"--device: unknown device {device!r}; valid: {', '.join(DEVICES)}")
    return BenchOptions(
        device=device,
        profile=_profile(get("profile"), bool(get("quick")), bool(get("full")), benchmark_only),
        dtypes=_optional(get("dtypes"), _dtypes),
        sizes=_optional(get("sizes"), _sizes),
        max_call_s=_optional(get("max_call_s"), _seconds),
        cpu_devices=_optional(get("cpu_devices"), _cpu_devices),
    )


def _optional(value: Any, parse: Callable[[str], Any]) -> Any:
    return None if value is None else parse(str(value))


def _profile(name: str | None, quick: bool, full: bool, benchmark_only: bool) -> str:
    chosen = {n for n, given in [(name, name is not None), ("quick", quick), ("full", full)] if given}
    if len(chosen) > 1:
        raise OptionError(f"choose one profile, got {' and '.join(sorted(chosen))}")
    if not chosen:
        return "default" if benchmark_only else "ci"
    (name,) = chosen
    if name not in PROFILES:
        raise OptionError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    return name


def _items(text: str, what: str) -> list[str]:
    items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))  # once each, in order
    if not items:
        raise OptionError(f"{what} must be a non-empty comma-separated list, got {text!r}")
    return items


def _dtypes(text: str) -> tuple[str, ...]:
    items = _items(text, "--dtypes")
    bad = [t for t in items if t not in DTYPES]
    if bad:
        raise OptionError(f"--dtypes: unknown value {bad[0]!r}; valid: {', '.join(DTYPES)}")
    return tuple(items)


def _whole(text: str) -> int:
    """``"1000"`` or ``"1e6"`` as an int; ``ValueError`` for anything else."""
    value = float(text) if "e" in text.lower() else int(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(text)
    return int(value)


def _sizes(text: str) -> tuple[int, ...]:
    message = f"--sizes must be comma-separated positive integers (e.g. 10,1000 or 1e6), got {text!r}"
    try:
        sizes = [_whole(t) for t in _items(text, "--sizes")]
    except (ValueError, OptionError):
        raise OptionError(message) from None
    if min(sizes) < 1:
        raise OptionError(message)
    return tuple(dict.fromkeys(sizes))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise OptionError(f"--max-call-s must be a positive number of seconds, got {text!r}")
    return value


def _cpu_devices(text: str) -> int | None:
    try:
        value = _whole(text)
    except ValueError:
        value = -1
    if value < 0:
        raise OptionError(f"--cpu-devices must be a whole number >= 0 (0: JAX's default), got {text!r}")
    return value or None
