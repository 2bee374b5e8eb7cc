"""Bad input through the CLI: each message names the option and the value, and nothing is created."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import docker
import pytest
from test_cli import tenax

from tenax.app import GoalRequest, create_goal
from tenax.store import open_store

KEY = {"ANTHROPIC_API_KEY": "k"}


@pytest.mark.parametrize("args, message", [
    (["--max-usd", "nan"], "--max-usd must be a finite positive number, got nan"),
    (["--max-usd", "inf"], "--max-usd must be a finite positive number, got inf"),
    (["--max-usd", "1e999"], "--max-usd must be a finite positive number, got inf"),
    (["--max-usd", "-2"], "--max-usd must be a finite positive number, got -2.0"),
    (["--max-minutes", "nan"], "--max-minutes must be a finite positive number, got nan"),
    (["--max-turns", "0"], "--max-turns must be a positive whole number, got 0"),
    (["--max-tokens", "-5"], "--max-tokens must be a positive whole number, got -5"),
    (["--compact-at", "nan"], "--compact-at must be a fraction between 0.05 and 1.0, got nan"),
    (["--compact-at", "2"], "--compact-at must be a fraction between 0.05 and 1.0, got 2.0"),
    (["--compact-at", "0"], "--compact-at must be a fraction between 0.05 and 1.0, got 0.0"),
])
def test_numeric_options_name_the_option_and_value(tmp_path, args, message):
    db = tmp_path / "v.db"
    r = tenax("goal", "x", "--workspace", str(tmp_path), *args, env={"TENAX_DB": f"sqlite:///{db}", **KEY})
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "JSON" not in r.stderr
    assert not db.exists()  # refused before the store is even opened
    if args[0] != "--compact-at":
        r = tenax("resume", "ffffffff", *args, env={"TENAX_DB": f"sqlite:///{db}"})
        assert r.returncode == 2 and message in r.stderr, r.stderr


def _goal_rows(db: Path) -> int:
    return sqlite3.connect(db).execute("select count(*) from goals").fetchone()[0]


def _containers_on(workspace: Path) -> int:
    """tenax containers (label tenax=1) that mount this workspace; other tests' containers don't count."""
    found = docker.from_env().containers.list(all=True, sparse=True, filters={"label": "tenax=1"})
    return sum(any(m.get("Source") == str(workspace) for m in c.attrs.get("Mounts", [])) for c in found)


@pytest.mark.docker
def test_bad_input_creates_no_goal_and_no_container(tmp_path, workspace):
    db = tmp_path / "c.db"
    env = {"TENAX_DB": f"sqlite:///{db}", **KEY}
    store = open_store(env["TENAX_DB"])  # one real goal row, so the count is known to work
    create_goal(store, GoalRequest(objective="seed", workspace=str(workspace), model="anthropic:m"), api_key="k")
    store.close()
    assert _goal_rows(db) == 1 and _containers_on(workspace) == 0
    ws = ["--workspace", str(workspace)]
    cases = [
        (["goal", "x", "--workspace", str(tmp_path / "missing")], {}, "does not exist"),
        (["goal", "x", *ws, "--model", "gemini:pro"], {}, "unknown model provider"),
        (["goal", "x", *ws, "--model", "anthropic:"], {}, "missing model name"),
        (["goal", "x", *ws, "--network", "host"], {}, "is refused"),
        (["goal", "x", *ws], {"TENAX_IMAGE": "tenax-no-such-image:never"}, "tenax-no-such-image:never"),
        (["goal", "x", *ws, "--strategy", "zigzag"], {}, "unknown strategy"),
        (["goal", "  ", *ws], {}, "objective is empty"),
        (["goal", "x", *ws, "--max-usd", "nan"], {}, "--max-usd"),
        (["goal", "x", *ws, "--base-url", "ftp://x"], {}, "bad base URL"),
    ]
    for args, extra, message in cases:
        r = tenax(*args, env={**env, **extra})
        assert r.returncode == 2 and message in r.stderr, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert _goal_rows(db) == 1, args
        assert _containers_on(workspace) == 0, args
