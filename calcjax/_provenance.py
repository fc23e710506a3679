"""Provenance of a benchmark run, taken from the tree itself: commit, changes, source hash.

A run's numbers are only as good as the knowledge of which code made them.
pytest-benchmark's ``commit_info.dirty`` comes from ``git describe --dirty`` at
the *end* of a run, so it cannot tell a README edit from a code edit, and a
copied tree (a GPU machine) may carry a stale ``.git`` or none. This module
records instead, at the start and at the end of a run, a :class:`Snapshot` of
the *measured sources* (:data:`MEASURED`):

- the commit (from git, or from the sender of a copied tree through
  :data:`ENV_COMMIT` or an argument);
- a content hash of the measured sources as they are in the working tree
  (:func:`source_hash`), with a per-file manifest;
- whether the measured sources differ from the commit, and which files;
- git's own lists of changed and untracked files (whole repository).

:func:`verify` recomputes the hash of the recorded commit from git objects
(``git ls-tree`` and ``git cat-file``, never the working tree) and says whether
a run matches it. :func:`describe` gives the provenance line every table shows.

JSON shape (schema 1), one top-level key :data:`RAW_KEY` of pytest-benchmark's
JSON, beside ``machine_info`` and ``commit_info``::

    "provenance": {
      "schema": 1,
      "measured": ["calcjax", "bench", "conftest.py", "pyproject.toml"],
      "start": SNAPSHOT,
      "end": SNAPSHOT
    }

    SNAPSHOT = {
      "time": "2026-11-30T16:20:00+00:00",   # UTC, when it was taken
      "commit": "<40 hex>" | null,           # the commit the sources are claimed to be
      "commit_from": "git" | "sender" | null,
      "local_head": "<40 hex>" | null,       # this tree's own HEAD (stale on a copied tree)
      "source_hash": "<64 hex>",             # sha256, see source_hash()
      "files": {"calcjax/__init__.py": "<64 hex>", ...},  # sha256 of each measured file
      "dirty": true | false | null,          # measured sources differ from the commit (null: unknown)
      "dirty_files": ["calcjax/x.py", ...] | null,  # modified, added or deleted measured files
      "changed": [...] | null,               # git status: tracked files changed (whole repository)
      "untracked": [...] | null              # git status: untracked files and folders
    }

``dirty`` and ``dirty_files`` compare the working tree's manifest with the
commit's, read from git objects; they are ``null`` when this tree's git does not
hold the commit (a copy whose ``.git`` is stale or missing): :func:`verify`, run
where the commit is, settles it. ``changed`` and ``untracked`` are git's view and
``null`` unless the local HEAD is the recorded commit. Every record's
``extra_info`` carries :func:`record_fields` (:data:`RECORD_FIELDS`), so a
record taken out of its file still names its code.

Example:
    >>> describe(None)
    'commit not recorded · sources not recorded'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calcjax._errors import UsageError

__all__ = [
    "ENV_COMMIT",
    "MEASURED",
    "RAW_KEY",
    "RECORD_FIELDS",
    "SCHEMA",
    "RunProvenance",
    "Snapshot",
    "Verification",
    "capture",
    "check_clean",
    "describe",
    "manifest_from_commit",
    "read",
    "record_fields",
    "run_block",
    "source_hash",
    "stamp",
    "tree_manifest",
    "verify",
]

#: Paths (relative to the repository root) whose content decides what a benchmark measures.
MEASURED = ("calcjax", "bench", "conftest.py", "pyproject.toml")
#: Environment variable through which the sender of a copied tree names its commit (40 hex digits).
ENV_COMMIT = "CALCJAX_SOURCE_COMMIT"
#: Top-level key of pytest-benchmark's JSON that holds :func:`run_block`.
RAW_KEY = "provenance"
#: Version of the JSON shape described in the module docstring.
SCHEMA = 1
#: Fields :func:`record_fields` adds to each record's ``extra_info``.
RECORD_FIELDS = ("source_commit", "source_hash", "source_dirty")

#: Folders and file endings that are never sources: caches the tools write while running.
_JUNK_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis"})
_JUNK_SUFFIXES = (".pyc", ".pyo")
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_SHORT = 7  # hex digits of a short commit id
_HASH_SHORT = 8  # hex digits of a short source hash
_LIST_MAX = 200  # git status lists longer than this are cut, with a last entry saying how many


# --------------------------------------------------------------------------- hashing


def _is_source(rel: str) -> bool:
    """Whether a repository-relative POSIX path is a measured source (not a cache file)."""
    parts = rel.split("/")
    if parts[0] not in MEASURED or (len(parts) == 1 and parts[0] not in ("conftest.py", "pyproject.toml")):
        return False
    if any(p in _JUNK_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return False
    return not parts[-1].endswith(_JUNK_SUFFIXES)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_manifest(repo_root: Path | str) -> dict[str, str]:
    """SHA-256 of every measured source file in the working tree, by relative POSIX path.

    Caches (``__pycache__``, ``*.pyc``, tool caches) are left out. A symbolic link
    is hashed by its target text, as git stores it.

    Args:
      repo_root: the repository root (the folder holding ``pyproject.toml``).

    Returns:
      ``{path: sha256 hex}`` sorted by path.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "pyproject.toml").write_text("[project]\\n")
        >>> list(tree_manifest(root))
        ['pyproject.toml']
    """
    root = Path(repo_root)
    out: dict[str, str] = {}
    for top in MEASURED:
        path = root / top
        if path.is_symlink() or path.is_file():
            _add(out, root, path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in _JUNK_DIRS and not d.endswith(".egg-info"))
            for d in dirnames:  # a link to a folder is a file to git
                if (here / d).is_symlink():
                    _add(out, root, here / d)
            for name in filenames:
                _add(out, root, here / name)
    return dict(sorted(out.items(), key=lambda kv: kv[0].encode()))


def _add(out: dict[str, str], root: Path, path: Path) -> None:
    rel = path.relative_to(root).as_posix()
    if not _is_source(rel):
        return
    data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    out[rel] = _sha256(data)


def source_hash(manifest: Mapping[str, str]) -> str:
    """The content hash of the measured sources: SHA-256 over sorted ``path NUL sha256(bytes) LF``.

    The same files with the same bytes give the same hash on every machine,
    whatever their modes, times or order on disk.

    Example:
        >>> source_hash({}) == source_hash({})
        True
        >>> source_hash({"a.py": "0" * 64}) == source_hash({"b.py": "0" * 64})
        False
    """
    h = hashlib.sha256()
    for path in sorted(manifest, key=str.encode):
        h.update(path.encode() + b"\0" + manifest[path].encode() + b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- git


class _GitError(Exception):
    pass


def _git(root: Path, *args: str, data: bytes | None = None) -> bytes:
    env = {**os.environ, "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], input=data, capture_output=True, env=env, check=False
        )
    except OSError as err:  # no git on this machine
        raise _GitError(f"git cannot run: {err}") from None
    if proc.returncode != 0:
        raise _GitError(proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
    return proc.stdout


def _head(root: Path) -> str | None:
    try:
        return _git(root, "rev-parse", "--verify", "-q", "HEAD").decode().strip() or None
    except _GitError:
        return None


def _prefix(root: Path) -> str:
    """Where ``root`` sits inside its git work tree (``""`` at the top)."""
    return _git(root, "rev-parse", "--show-prefix").decode().strip()


def manifest_from_commit(repo_root: Path | str, commit: str) -> dict[str, str]:
    """SHA-256 of every measured source file of ``commit``, read from git objects.

    The working tree is not read: ``git ls-tree`` lists the commit's files and
    ``git cat-file --batch`` gives their bytes.

    Args:
      repo_root: a folder inside the git work tree that holds the commit.
      commit: a commit id (or any name git resolves to a commit).

    Returns:
      ``{path: sha256 hex}`` like :func:`tree_manifest`.

    Raises:
      LookupError: git cannot run here, or this repository does not hold ``commit``.
    """
    root = Path(repo_root)
    try:
        prefix = _prefix(root)
        _git(root, "cat-file", "-e", f"{commit}^{{commit}}")
        listing = _git(root, "ls-tree", "-r", "-z", "--full-name", commit, "--", *MEASURED)
    except _GitError as err:
        raise LookupError(f"commit {commit!r} is not in the git repository at {root}: {err}") from None
    blobs: list[tuple[str, str]] = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.decode().split("\t", 1)
        _mode, kind, sha = meta.split()
        rel = path[len(prefix) :]
        if kind == "blob" and _is_source(rel):  # a submodule ("commit") has no bytes here
            blobs.append((rel, sha))
    out: dict[str, str] = {}
    if blobs:
        stream = _git(root, "cat-file", "--batch", data="".join(f"{s}\n" for _, s in blobs).encode())
        pos = 0
        for rel, sha in blobs:
            end = stream.index(b"\n", pos)
            header = stream[pos:end].decode().split()
            if header[0] != sha or header[1] != "blob":
                raise LookupError(f"git cat-file gave {header} for {rel} ({sha})")
            size = int(header[2])
            out[rel] = _sha256(stream[end + 1 : end + 1 + size])
            pos = end + 1 + size + 1
    return dict(sorted(out.items(), key=lambda kv: kv[0].encode()))


def _status(root: Path) -> tuple[list[str], list[str]]:
    """git's changed (tracked) and untracked paths of the whole repository."""
    raw = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    changed, untracked = [], []
    items = iter(raw.split(b"\0"))
    for item in items:
        if not item:
            continue
        code, path = item[:2].decode(), item[3:].decode()
        if code == "??":
            untracked.append(path)
        elif code != "!!":
            changed.append(path)
            if "R" in code or "C" in code:
                next(items, None)  # the rename's source path follows
    return _cut(sorted(changed)), _cut(sorted(untracked))


def _cut(paths: list[str]) -> list[str]:
    if len(paths) <= _LIST_MAX:
        return paths
    return [*paths[:_LIST_MAX], f"... and {len(paths) - _LIST_MAX} more"]


def _differ(tree: Mapping[str, str], commit: Mapping[str, str]) -> list[str]:
    """Measured files whose bytes differ, or that only one side has."""
    return sorted((p for p in set(tree) | set(commit) if tree.get(p) != commit.get(p)), key=str.encode)


# --------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class Snapshot:
    """The state of the measured sources at one moment (one ``start``/``end`` entry of the JSON).

    Attributes:
      time: when it was taken, ISO 8601 UTC.
      commit: the full commit id the sources are claimed to be, or ``None``.
      commit_from: ``"git"`` (this tree's HEAD), ``"sender"`` (named by whoever copied the
        tree here) or ``None``.
      local_head: this tree's own HEAD, or ``None`` (stale or missing on a copied tree).
      source_hash: :func:`source_hash` of the working tree's measured sources.
      files: the working tree's manifest (:func:`tree_manifest`).
      dirty: whether the measured sources differ from ``commit``; ``None`` when this tree's
        git cannot tell (the commit is not here).
      dirty_files: the measured files that differ (modified, added or deleted), or ``None``.
      changed: git's changed tracked files over the whole repository, or ``None`` when git's
        view is not about ``commit``.
      untracked: git's untracked files and folders, or ``None`` likewise.
    """

    time: str
    commit: str | None
    commit_from: str | None
    local_head: str | None
    source_hash: str
    files: dict[str, str] = field(repr=False)
    dirty: bool | None
    dirty_files: list[str] | None
    changed: list[str] | None
    untracked: list[str] | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object stored in the run (see the module docstring)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """The inverse of :meth:`as_dict`; unknown keys are ignored, missing ones are ``None``."""
        names = cls.__dataclass_fields__
        values = {k: data.get(k) for k in names}
        values["files"] = dict(values["files"] or {})
        return cls(**values)


def _check_commit(value: str, origin: str) -> str:
    text = value.strip().lower()
    if not _SHA.fullmatch(text):
        raise UsageError(f"{origin} must be a full commit id (40 hex digits), got {value!r}")
    return text


def _default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def capture(
    repo_root: Path | str | None = None,
    *,
    sender_commit: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Snapshot:
    """Take a :class:`Snapshot` of the measured sources now.

    The commit is ``sender_commit``, else the environment's :data:`ENV_COMMIT`, else
    this tree's HEAD. Where this tree's git holds that commit, ``dirty`` and
    ``dirty_files`` compare the working tree with it file by file; otherwise they
    are ``None`` and :func:`verify`, run where the commit is, proves the copy.

    Args:
      repo_root: the repository root (default: the tree this module was imported from).
      sender_commit: the commit a copied tree was made from (40 hex digits).
      env: environment to read :data:`ENV_COMMIT` from (default ``os.environ``).

    Returns:
      The snapshot; ``snapshot.as_dict()`` is what the run stores.

    Raises:
      UsageError: ``sender_commit`` or :data:`ENV_COMMIT` is not a full commit id.

    Example:
        >>> snap = capture()
        >>> len(snap.source_hash)
        64
    """
    root = Path(repo_root) if repo_root is not None else _default_root()
    env = os.environ if env is None else env
    if sender_commit is not None:
        claimed: str | None = _check_commit(sender_commit, "the sender's commit")
    elif env.get(ENV_COMMIT):
        claimed = _check_commit(env[ENV_COMMIT], ENV_COMMIT)
    else:
        claimed = None
    files = tree_manifest(root)
    head = _head(root)
    commit = claimed or head
    dirty: bool | None = None
    dirty_files: list[str] | None = None
    if commit is not None:
        try:
            dirty_files = _differ(files, manifest_from_commit(root, commit))
            dirty = bool(dirty_files)
        except LookupError:
            pass
    changed = untracked = None
    if head is not None and head == commit:
        with contextlib.suppress(_GitError):
            changed, untracked = _status(root)
    return Snapshot(
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=commit,
        commit_from=None if commit is None else ("sender" if claimed else "git"),
        local_head=head,
        source_hash=source_hash(files),
        files=files,
        dirty=dirty,
        dirty_files=dirty_files,
        changed=changed,
        untracked=untracked,
    )


def check_clean(snapshot: Snapshot, *, allow_dirty: bool = False) -> None:
    """Refuse a run whose measured sources have uncommitted changes, unless allowed.

    A snapshot whose cleanliness is unknown (a copied tree without the commit's
    objects) passes: :func:`verify` settles it later.

    Args:
      snapshot: the run's start snapshot.
      allow_dirty: the user passed ``--allow-dirty``.

    Raises:
      UsageError: the sources are dirty and ``allow_dirty`` is false; the message names
        the files.
    """
    if snapshot.dirty and not allow_dirty:
        files = snapshot.dirty_files or []
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        raise UsageError(
            f"the measured sources differ from commit {(snapshot.commit or '?')[:_SHORT]} ({shown}): "
            "commit them, or pass --allow-dirty (every table of the run will then say so)"
        )


def run_block(start: Snapshot, end: Snapshot | None = None) -> dict[str, Any]:
    """The run's :data:`RAW_KEY` object from its start and end snapshots."""
    return {
        "schema": SCHEMA,
        "measured": list(MEASURED),
        "start": start.as_dict(),
        "end": end.as_dict() if end is not None else None,
    }


def record_fields(block: Mapping[str, Any] | None) -> dict[str, Any]:
    """What each record's ``extra_info`` carries: commit, source hash and dirty flag.

    ``source_dirty`` is true when the sources differed from the commit at the start
    or changed during the run, ``None`` when unknown or not recorded.

    Example:
        >>> record_fields(None)
        {'source_commit': None, 'source_hash': None, 'source_dirty': None}
    """
    prov = read({RAW_KEY: block} if block is not None else {})
    return {"source_commit": prov.commit, "source_hash": prov.source_hash, "source_dirty": prov.dirty}


def stamp(output_json: dict[str, Any], start: Snapshot, end: Snapshot) -> None:
    """Put the run block into pytest-benchmark's JSON and :func:`record_fields` into every record.

    Meant for the bench plugin's ``pytest_benchmark_update_json`` hook.
    """
    block = run_block(start, end)
    output_json[RAW_KEY] = block
    fields = record_fields(block)
    for bench in output_json.get("benchmarks") or ():
        extra = bench.setdefault("extra_info", {})
        if isinstance(extra, dict):
            extra.update(fields)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunProvenance:
    """What a run's JSON says about its code, for tables and :func:`verify`.

    Attributes:
      recorded: the run has a :data:`RAW_KEY` block (runs made before it have not).
      commit: full commit id, or ``None``.
      commit_from: ``"git"``, ``"sender"``, ``"commit_info"`` (old runs) or ``None``.
      source_hash: the start snapshot's source hash, or ``None``.
      dirty: sources differed from the commit at the start or changed during the run;
        ``None`` when unknown.
      dirty_files: files that differed at the start, or ``None``.
      changed_during_run: the end snapshot's hash differs from the start's.
      legacy_dirty: pytest-benchmark's ``commit_info.dirty`` (whole tree, end of run).
      start, end: the snapshots, when recorded.
    """

    recorded: bool
    commit: str | None
    commit_from: str | None
    source_hash: str | None
    dirty: bool | None
    dirty_files: list[str] | None
    changed_during_run: bool
    legacy_dirty: bool | None = None
    start: Snapshot | None = None
    end: Snapshot | None = None


def read(raw: Mapping[str, Any] | None) -> RunProvenance:
    """The provenance of a run from its pytest-benchmark JSON (old runs included).

    Example:
        >>> read({"commit_info": {"id": "bab16fe" + "0" * 33, "dirty": True}}).commit[:7]
        'bab16fe'
    """
    raw = raw or {}
    block = raw.get(RAW_KEY)
    info = raw.get("commit_info") if isinstance(raw.get("commit_info"), dict) else {}
    legacy = info.get("dirty") if isinstance(info.get("dirty"), bool) else None
    if not isinstance(block, Mapping) or not isinstance(block.get("start"), Mapping):
        cid = str(info.get("id") or "").lower()
        commit = cid if _SHA.fullmatch(cid) else None
        return RunProvenance(
            recorded=False,
            commit=commit,
            commit_from="commit_info" if commit else None,
            source_hash=None,
            dirty=None,
            dirty_files=None,
            changed_during_run=False,
            legacy_dirty=legacy,
        )
    start = Snapshot.from_dict(block["start"])
    end = Snapshot.from_dict(block["end"]) if isinstance(block.get("end"), Mapping) else None
    moved = end is not None and end.source_hash != start.source_hash
    dirty = True if (start.dirty or moved) else start.dirty
    return RunProvenance(
        recorded=True,
        commit=start.commit,
        commit_from=start.commit_from,
        source_hash=start.source_hash,
        dirty=dirty,
        dirty_files=start.dirty_files,
        changed_during_run=moved,
        legacy_dirty=legacy,
        start=start,
        end=end,
    )


def describe(raw: Mapping[str, Any] | None) -> str:
    """The provenance line of a table: short commit, clean or dirty, short source hash.

    Examples:
        >>> describe({"commit_info": {"id": "bab16fedeaf1c67d2b93d1ef5f501a980e6c4522", "dirty": True}})
        'commit bab16fe (tree dirty by git describe) · sources not recorded'
        >>> snap = {"commit": "ab" * 20, "commit_from": "git", "source_hash": "3f2a9c1e" + "0" * 56,
        ...         "files": {}, "dirty": False, "dirty_files": []}
        >>> describe({"provenance": {"schema": 1, "start": snap, "end": snap}})
        'commit abababa (clean) · sources 3f2a9c1e'
    """
    prov = read(raw)
    commit = "commit not recorded" if prov.commit is None else f"commit {prov.commit[:_SHORT]}"
    if not prov.recorded:
        note = " (tree dirty by git describe)" if prov.legacy_dirty and prov.commit else ""
        return f"{commit}{note} · sources not recorded"
    notes = []
    if prov.dirty_files:
        k = len(prov.dirty_files)
        notes.append(f"dirty: {k} file{'s' if k != 1 else ''} changed")
    elif prov.start is not None and prov.start.dirty is None:
        notes.append("from the sender, unverified" if prov.commit_from == "sender" else "unverified")
    else:
        notes.append("clean at the start" if prov.changed_during_run else "clean")
    if prov.changed_during_run:
        notes.append("sources changed during the run")
    hashed = f"sources {prov.source_hash[:_HASH_SHORT]}" if prov.source_hash else "sources not recorded"
    return f"{commit} ({'; '.join(notes)}) · {hashed}"


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`.

    Attributes:
      ok: the run's sources are exactly the commit's (at the start and the end of the run);
        ``False`` when they differ; ``None`` when it cannot be checked.
      status: ``"match"``, ``"mismatch"``, ``"not recorded"``, ``"no commit"`` or
        ``"unknown commit"``.
      message: one line for a person.
      commit: the run's commit, or ``None``.
      differing: measured files whose bytes differ from the commit (when the run kept its
        manifest).
    """

    ok: bool | None
    status: str
    message: str
    commit: str | None = None
    differing: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


def verify(run: Mapping[str, Any], repo_root: Path | str | None = None) -> Verification:
    """Check a run's recorded source hash against its commit, read from git objects.

    The commit's measured sources are read with ``git ls-tree`` and ``git cat-file``
    (never the working tree), hashed like the run's tree was, and compared with the
    run's start and end hashes.

    Args:
      run: the run's pytest-benchmark JSON, or its :data:`RAW_KEY` block.
      repo_root: a folder in the git repository that holds the commit (default: the tree
        this module was imported from).

    Returns:
      A :class:`Verification`; ``str()`` of it is one line.
    """
    root = Path(repo_root) if repo_root is not None else _default_root()
    raw = run if RAW_KEY in run or "benchmarks" in run or "commit_info" in run else {RAW_KEY: run}
    prov = read(raw)
    if not prov.recorded:
        return Verification(
            None, "not recorded", "run has no source hash (made before provenance was recorded)"
        )
    if prov.commit is None:
        return Verification(None, "no commit", "run names no commit to check its sources against")
    short = prov.commit[:_SHORT]
    try:
        files = manifest_from_commit(root, prov.commit)
    except LookupError:
        return Verification(
            None,
            "unknown commit",
            f"commit {short} is not in the repository at {root}: fetch it, then verify again",
            prov.commit,
        )
    expected = source_hash(files)
    snaps = [s for s in (prov.start, prov.end) if s is not None]
    if all(s.source_hash == expected for s in snaps):
        return Verification(
            True,
            "match",
            f"run matches commit {short}: {len(files)} measured files, sources {expected[:_HASH_SHORT]}",
            prov.commit,
        )
    differing = sorted({p for s in snaps if s.files for p in _differ(s.files, files)}, key=str.encode)
    when = "at the start" if snaps[0].source_hash != expected else "by the end of the run"
    which = f": {', '.join(differing[:5])}{' …' if len(differing) > 5 else ''}" if differing else ""
    return Verification(
        False,
        "mismatch",
        f"run does NOT match commit {short} {when}: {len(differing) or 'some'} "
        f"measured file(s) differ{which}",
        prov.commit,
        tuple(differing),
    )


def _shell_env(snapshot: Snapshot) -> str:
    """``export`` line a sender prints for the copied tree (``python -m calcjax._provenance``)."""
    return f"export {ENV_COMMIT}={snapshot.commit}" if snapshot.commit else ""


def _main(argv: Iterable[str]) -> int:
    """``python -m calcjax._provenance [ROOT]``: print the export line for a copied tree.

    The line names this tree's HEAD; the message on stderr says whether the measured
    sources are clean, since a copy of a dirty tree cannot be proved against the commit.
    """
    args = list(argv)
    snap = capture(args[0] if args else Path.cwd())
    if snap.commit is None:
        print("no git commit here: nothing to send", file=sys.stderr)
        return 1
    print(_shell_env(snap))
    state = "clean" if snap.dirty is False else f"DIRTY: {', '.join(snap.dirty_files or ['unknown'])}"
    print(f"# measured sources {state}; source hash {snap.source_hash[:_HASH_SHORT]}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
