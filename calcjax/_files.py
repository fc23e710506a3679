"""Writing files so that a reader never sees half of one, and checking first that they can be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from calcjax._errors import UsageError

__all__ = ["check_writable_dir", "check_writable_file", "write_atomic"]


def write_atomic(path: Path | str, text: str, *, newline: str = "\n") -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same directory, then move it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``/`` at worst)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path, what: str) -> None:
    """``UsageError`` unless a file can be created (and removed) in ``folder``.

    ``os.access`` first (a permission bit), then an actual write: the only check
    that a read-only mount, ``/proc`` or a root-owned folder tells the truth about.
    """
    if not folder.is_dir():
        raise UsageError(f"{what}: {folder} is a file, not a folder")
    reason = None if os.access(folder, os.W_OK | os.X_OK) else "permission denied"
    if reason is None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".calcjax-write-check-", dir=folder)
        except OSError as err:
            reason = err.strerror or type(err).__name__
        else:
            os.close(fd)
            os.unlink(tmp)
    if reason is not None:
        raise UsageError(f"{what}: cannot write in {folder} ({reason})")


def check_writable_dir(path: Path | str, what: str) -> None:
    """``UsageError`` (one line, exit 2) unless ``path`` is a folder, or can be made one, that takes files.

    Nothing is left behind: a missing folder is not created, the probe file is removed.
    ``what`` names the option or input in the message, e.g. ``"--out results"``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what}: {path} is a file, not a folder")
    _probe(_nearest_existing(path), what)


def check_writable_file(path: Path | str, what: str) -> None:
    """``UsageError`` unless ``path`` can be written as a file: not a folder, in a folder that takes files."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what}: {path} is a folder; give a file name, e.g. {path / 'out.csv'}")
    folder = Path(os.path.dirname(os.path.abspath(path)))
    if not folder.exists():
        raise UsageError(f"{what}: cannot write {path}: no such folder {folder}")
    _probe(folder, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{what}: cannot write {path} (permission denied)")
