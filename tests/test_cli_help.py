"""--version, and -h with an example on every command (found from the typer app)."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from test_cli import tenax
from test_cli_hostile import commands


def test_version():
    r = tenax("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"tenax {version('tenax')}"


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=" ".join)
def test_h_is_help_with_an_example(path):
    r = tenax(*path, "-h", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout and f"Example: tenax {' '.join(path)} " in r.stdout, r.stdout


def test_h_at_the_top():
    r = tenax("-h")
    assert r.returncode == 0 and "Commands" in r.stdout and "--version" in r.stdout
