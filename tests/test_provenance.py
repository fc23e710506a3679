"""Provenance from the tree: real git repositories made in tmp_path, committed, edited, copied."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from calcjax import _provenance as prov
from calcjax._errors import UsageError

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(root), "-c", "commit.gpgsign=false", *args],
        capture_output=True,
        check=True,
        env={**_GIT_ENV, "PATH": "/usr/bin:/bin"},
    )
    return out.stdout.decode().strip()


def make_repo(root: Path) -> str:
    """A small calcjax-shaped repository with one commit; returns the commit id."""
    files = {
        "pyproject.toml": "[project]\nname = 'x'\n",
        "conftest.py": "# root conftest\n",
        "calcjax/__init__.py": "VALUE = 1\n",
        "calcjax/_maths.py": "def f(x):\n    return x\n",
        "bench/test_b.py": "def test_b():\n    pass\n",
        "README.md": "readme\n",
        "tests/test_t.py": "def test_t():\n    pass\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    root.mkdir()
    return root, make_repo(root)


def test_manifest_is_the_measured_sources_only(repo):
    root, _ = repo
    (root / "calcjax/__pycache__").mkdir()
    (root / "calcjax/__pycache__/_maths.cpython-311.pyc").write_bytes(b"\0junk")
    (root / "bench/.pytest_cache").mkdir()
    (root / "bench/.pytest_cache/x").write_text("cache")
    files = prov.tree_manifest(root)
    assert list(files) == [
        "bench/test_b.py",
        "calcjax/__init__.py",
        "calcjax/_maths.py",
        "conftest.py",
        "pyproject.toml",
    ]
    # each entry is the SHA-256 of the file's bytes, computed independently here
    assert files["calcjax/__init__.py"] == hashlib.sha256(b"VALUE = 1\n").hexdigest()


def test_source_hash_depends_on_paths_and_bytes_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "calcjax").mkdir(parents=True)
    # written in different orders, with different modes: same hash
    (a / "calcjax/x.py").write_text("x")
    (a / "calcjax/y.py").write_text("y")
    (b / "calcjax/y.py").write_text("y")
    (b / "calcjax/x.py").write_text("x")
    (b / "calcjax/x.py").chmod(0o755)
    assert prov.source_hash(prov.tree_manifest(a)) == prov.source_hash(prov.tree_manifest(b))
    (b / "calcjax/x.py").write_text("x ")  # one byte more
    assert prov.source_hash(prov.tree_manifest(a)) != prov.source_hash(prov.tree_manifest(b))
    (b / "calcjax/x.py").write_text("x")
    (b / "calcjax/x.py").rename(b / "calcjax/w.py")  # same bytes, other name, same order
    assert prov.source_hash(prov.tree_manifest(a)) != prov.source_hash(prov.tree_manifest(b))


def test_commit_manifest_comes_from_git_objects_not_the_tree(repo):
    root, commit = repo
    clean = prov.tree_manifest(root)
    assert prov.manifest_from_commit(root, commit) == clean
    (root / "calcjax/_maths.py").write_text("edited\n")
    (root / "calcjax/new.py").write_text("new\n")
    # the working tree changed; the commit's manifest did not
    assert prov.manifest_from_commit(root, commit) == clean
    with pytest.raises(LookupError, match="not in the git repository"):
        prov.manifest_from_commit(root, "0" * 40)


def test_clean_tree(repo):
    root, commit = repo
    snap = prov.capture(root, env={})
    assert (snap.commit, snap.commit_from, snap.local_head) == (commit, "git", commit)
    assert snap.dirty is False
    assert snap.dirty_files == []
    assert snap.changed == []
    assert snap.untracked == []
    assert snap.source_hash == prov.source_hash(prov.tree_manifest(root))
    prov.check_clean(snap)  # does not raise
    block = prov.run_block(snap, prov.capture(root, env={}))
    raw = {"provenance": block}
    assert prov.describe(raw) == f"commit {commit[:7]} (clean) · sources {snap.source_hash[:8]}"
    result = prov.verify(raw, root)
    assert (result.ok, result.status) == (True, "match")
    assert str(result).startswith(f"run matches commit {commit[:7]}: 5 measured files")


def test_a_readme_edit_is_not_a_dirty_source(repo):
    root, _ = repo
    (root / "README.md").write_text("edited\n")
    (root / "notes.txt").write_text("untracked, not measured\n")
    snap = prov.capture(root, env={})
    assert snap.dirty is False
    assert snap.changed == ["README.md"]
    assert snap.untracked == ["notes.txt"]


def test_dirty_sources_are_named_refused_and_shown(repo):
    root, commit = repo
    (root / "calcjax/_maths.py").write_text("def f(x):\n    return 2 * x\n")
    (root / "bench/test_new.py").write_text("def test_new():\n    pass\n")
    (root / "conftest.py").unlink()
    snap = prov.capture(root, env={})
    assert snap.dirty is True
    assert snap.dirty_files == ["bench/test_new.py", "calcjax/_maths.py", "conftest.py"]
    assert snap.changed == ["calcjax/_maths.py", "conftest.py"]
    assert snap.untracked == ["bench/test_new.py"]
    with pytest.raises(UsageError, match=r"differ from commit .*calcjax/_maths\.py.*--allow-dirty"):
        prov.check_clean(snap)
    prov.check_clean(snap, allow_dirty=True)
    raw = {"provenance": prov.run_block(snap, snap)}
    assert (
        prov.describe(raw) == f"commit {commit[:7]} (dirty: 3 files changed) · sources {snap.source_hash[:8]}"
    )
    result = prov.verify(raw, root)
    assert (result.ok, result.status) == (False, "mismatch")
    assert result.differing == ("bench/test_new.py", "calcjax/_maths.py", "conftest.py")
    assert "does NOT match" in str(result)
    assert "at the start" in str(result)
    assert prov.record_fields(raw["provenance"]) == {
        "source_commit": commit,
        "source_hash": snap.source_hash,
        "source_dirty": True,
    }


def test_an_edit_during_the_run_is_caught(repo):
    root, commit = repo
    start = prov.capture(root, env={})
    (root / "calcjax/_maths.py").write_text("edited while running\n")
    end = prov.capture(root, env={})
    raw = {"provenance": prov.run_block(start, end)}
    assert prov.read(raw).changed_during_run
    assert prov.read(raw).dirty is True
    assert prov.describe(raw) == (
        f"commit {commit[:7]} (clean at the start; sources changed during the run) · "
        f"sources {start.source_hash[:8]}"
    )
    result = prov.verify(raw, root)
    assert result.ok is False
    assert "by the end of the run" in str(result)
    assert result.differing == ("calcjax/_maths.py",)


def test_copied_tree_without_git_takes_the_senders_commit_and_is_proved(repo, tmp_path):
    root, commit = repo
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".git"))
    snap = prov.capture(copy, env={prov.ENV_COMMIT: commit})
    assert (snap.commit, snap.commit_from, snap.local_head) == (commit, "sender", None)
    assert snap.dirty is None
    assert snap.changed is None
    prov.check_clean(snap)  # unknown is not refused: verify settles it
    raw = {"provenance": prov.run_block(snap, snap), "benchmarks": []}
    assert "(from the sender, unverified)" in prov.describe(raw)
    assert prov.verify(raw, root).ok is True  # back where the commit is
    # a copy that was edited after it left the sender is caught
    (copy / "calcjax/__init__.py").write_text("VALUE = 2\n")
    edited = prov.capture(copy, sender_commit=commit)
    result = prov.verify({"provenance": prov.run_block(edited, edited)}, root)
    assert result.ok is False
    assert result.differing == ("calcjax/__init__.py",)


def test_stale_git_in_the_copy(repo, tmp_path):
    """A copy whose .git is older than the sender's commit: the sender's commit wins."""
    root, old = repo
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # .git as of the first commit
    (root / "calcjax/_maths.py").write_text("def f(x):\n    return 3 * x\n")
    git(root, "commit", "-qam", "second")
    new = git(root, "rev-parse", "HEAD")
    shutil.copy(root / "calcjax/_maths.py", copy / "calcjax/_maths.py")  # the sources travel
    snap = prov.capture(copy, env={prov.ENV_COMMIT: new})
    assert (snap.commit, snap.local_head) == (new, old)
    assert snap.dirty is None  # the copy's git does not hold the new commit
    assert snap.changed is None  # git status there compares with the stale HEAD: not recorded
    raw = {"provenance": prov.run_block(snap, snap)}
    assert prov.verify(raw, copy).status == "unknown commit"
    assert prov.verify(raw, root).ok is True


def test_bad_sender_commit_is_a_usage_error(repo):
    root, _ = repo
    with pytest.raises(UsageError, match=r"CALCJAX_SOURCE_COMMIT must be a full commit id.*'abc123'"):
        prov.capture(root, env={prov.ENV_COMMIT: "abc123"})
    with pytest.raises(UsageError, match="sender's commit must be a full commit id"):
        prov.capture(root, sender_commit="main")


def test_verify_old_and_odd_runs(repo):
    root, commit = repo
    old = {"commit_info": {"id": commit, "dirty": True}, "benchmarks": []}
    assert prov.verify(old, root).status == "not recorded"
    assert prov.describe(old) == f"commit {commit[:7]} (tree dirty by git describe) · sources not recorded"
    assert prov.describe({"commit_info": {"id": "unknown", "dirty": False}}) == (
        "commit not recorded · sources not recorded"
    )
    snap = prov.capture(root, env={})
    nameless = {"provenance": prov.run_block(prov.Snapshot.from_dict({**snap.as_dict(), "commit": None}))}
    assert prov.verify(nameless, root).status == "no commit"


def test_stamp_writes_json_that_reads_back(repo):
    root, commit = repo
    start = prov.capture(root, env={})
    end = prov.capture(root, env={})
    output = {"benchmarks": [{"extra_info": {"suite": "gradient"}}, {"extra_info": {}}]}
    prov.stamp(output, start, end)
    back = json.loads(json.dumps(output))
    assert back["provenance"]["schema"] == prov.SCHEMA
    assert back["provenance"]["measured"] == list(prov.MEASURED)
    assert prov.Snapshot.from_dict(back["provenance"]["start"]) == start
    for bench in back["benchmarks"]:
        assert {k: bench["extra_info"][k] for k in prov.RECORD_FIELDS} == {
            "source_commit": commit,
            "source_hash": start.source_hash,
            "source_dirty": False,
        }
    assert prov.verify(back, root).ok is True


def test_root_below_the_top_of_the_work_tree(tmp_path):
    """A project folder inside a larger git work tree: paths are relative to the project."""
    top = tmp_path / "mono"
    (top / "proj").mkdir(parents=True)
    (top / "other.txt").write_text("x")
    root = top / "proj"
    (root / "calcjax").mkdir()
    (root / "calcjax/a.py").write_text("a\n")
    (root / "pyproject.toml").write_text("[project]\n")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", "-A")
    git(top, "commit", "-qm", "mono")
    snap = prov.capture(root, env={})
    assert snap.dirty is False
    assert list(snap.files) == ["calcjax/a.py", "pyproject.toml"]
    assert prov.verify({"provenance": prov.run_block(snap, snap)}, root).ok is True


def test_this_checkout_can_be_captured():
    snap = prov.capture(env={})
    assert "calcjax/_provenance.py" in snap.files
    assert len(snap.source_hash) == 64


@pytest.mark.parametrize("module", ["_provenance", "_gate", "_history"])
def test_report_building_blocks_import_no_jax(module):
    """These modules run where reports are rebuilt: stdlib, NumPy, SciPy, pandas and each other only."""
    import ast
    import sys

    path = Path(prov.__file__).with_name(f"{module}.py")
    allowed = {"numpy", "scipy", "pandas"} | set(sys.stdlib_module_names)
    siblings = {"calcjax._errors", "calcjax._gate", "calcjax._provenance"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names = [f"{base}.{a.name}" if base == "calcjax" else base for a in node.names]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed or name in siblings, f"{module} imports {name}"


def test_sender_prints_the_export_line(repo, tmp_path, capsys):
    root, commit = repo
    assert prov._main([str(root)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"export CALCJAX_SOURCE_COMMIT={commit}"
    assert "measured sources clean" in err
    (root / "calcjax/_maths.py").write_text("edited\n")
    assert prov._main([str(root)]) == 0
    assert "DIRTY: calcjax/_maths.py" in capsys.readouterr().err
    (tmp_path / "nogit").mkdir()
    assert prov._main([str(tmp_path / "nogit")]) == 1
