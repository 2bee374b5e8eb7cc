"""Fixtures shared by the end-to-end tests: a real SQLite store and a small workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenax.store import open_store


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace whose goal is to make status.txt say "fixed"."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "status.txt").write_text("broken\n")
    return ws


@pytest.fixture
def store(tmp_path: Path):
    """A real SQLite store in a file of its own."""
    s = open_store(f"sqlite:///{tmp_path / 'tenax.db'}")
    yield s
    s.close()
