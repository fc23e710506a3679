"""calcjax.cli: parser and dispatch; ``python -m calcjax`` is the same command."""

import subprocess
import sys

import pytest

from calcjax import cli


def test_every_command_is_a_module_with_add_arguments_and_run():
    import importlib

    assert set(cli.SUBCOMMANDS) == {"bench", "report", "compare", "check", "tutorial", "ab"}
    for module, _ in cli.SUBCOMMANDS.values():
        assert module.startswith("calcjax._commands.")
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments)
        assert callable(mod.run)


def test_python_m_calcjax_is_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "calcjax", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("calcjax ")


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_usage_error_is_one_line_and_status_2(capsys):
    assert cli.main(["tutorial", "--steps", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "calcjax tutorial: error: --steps must be >= 0, got -1\n"


def test_usage_error_is_the_shared_one():
    from calcjax._errors import UsageError

    assert cli.UsageError is UsageError
    with pytest.raises(SystemExit):
        cli.main(["nope"])


def test_every_subpackage_is_listed_for_the_wheel():
    """pyproject's explicit package list names every package under calcjax/ (else the wheel lacks it)."""
    import tomllib
    from pathlib import Path

    root = Path(cli.__file__).resolve().parent
    found = {".".join(p.parent.relative_to(root.parent).parts) for p in root.rglob("__init__.py")}
    listed = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert found == set(listed)
