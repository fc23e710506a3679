"""``calcjax ab``: two versions timed interleaved by real worker processes; bad input refused.

The scheduling and the paired test are checked with fake measurements in ``test_gate.py``;
here two real workers time a tiny selection, so the whole path (export, workers, hook on B
only, table, exit status) runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from calcjax._commands import ab
from calcjax._gate import ENV_SLOWDOWN
from calcjax.cli import main

ROOT = Path(__file__).resolve().parent.parent
#: A tiny selection: quick to compile and time; 16 pairs give the signed-rank test room below 0.002.
TINY = ["--problems", "quadratic", "--methods", "fd-central,ad-reverse", "--n", "10"]
QUICK = [*TINY, "--rounds", "16", "--round-s", "0.01"]


def _has_git() -> bool:
    if shutil.which("git") is None:
        return False
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, check=False)
    return out.returncode == 0


@pytest.mark.slow
def test_injected_slowdown_is_flagged_on_b_only_and_a_a_is_not(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_SLOWDOWN, "fd-central=3")
    a = "HEAD" if _has_git() else str(ROOT)  # a git revision exported, where there is git
    assert main(["ab", a, "worktree", *QUICK, "--fail-above", "1.25", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    gate_lines = out[out.index("gate:") :].splitlines()
    assert gate_lines[0].startswith("gate: 1 benchmark(s) significantly slower")
    assert "quadratic n=10 float64 fd-central" in gate_lines[1]
    (md,) = tmp_path.glob("ab-*.md")
    assert "fd-central × 3" in md.read_text()
    assert md.with_suffix(".html").read_text().count("<tr>") == 3  # header and two benchmarks
    raw = json.loads(md.with_suffix(".json").read_text())
    assert raw["slowdown"] == {"fd-central": 3.0}
    assert len(raw["observations"]) == 2 * 2 * 16  # benchmarks × sides × rounds

    monkeypatch.delenv(ENV_SLOWDOWN)
    assert main(["ab", str(ROOT), "worktree", *QUICK, "--fail-above", "1.25"]) == 0
    assert "gate: no benchmark significantly slower" in capsys.readouterr().out


@pytest.mark.skipif(not _has_git(), reason="needs git and a git checkout")
def test_a_revision_is_exported_with_its_package(tmp_path):
    v = ab.resolve_version("HEAD", tmp_path)
    assert (v.root / "calcjax" / "__init__.py").is_file()
    assert v.root.parent == tmp_path
    assert len(v.commit or "") == 40
    assert ab.resolve_version("worktree", tmp_path).root == ROOT


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope-no-such-dir-or-rev"], "nope-no-such-dir-or-rev"),
        (["worktree", "--methods", "fd-nope"], "'fd-nope'"),
        (["worktree", "--n", "0"], "'0'"),
        (["worktree", "--rounds", "5"], "at least 10"),
        (["worktree", "--fail-above", "1"], "--fail-above"),
        (["worktree", "--round-s", "-1"], "--round-s"),
    ],
)
def test_bad_input_is_a_usage_error(argv, message, capsys, tmp_path):
    if argv[0] == "nope-no-such-dir-or-rev" and not _has_git():
        pytest.skip("needs git")
    assert main(["ab", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_calcjax_is_refused(tmp_path, capsys):
    assert main(["ab", str(tmp_path), *TINY]) == 2
    assert "no calcjax source tree" in capsys.readouterr().err
