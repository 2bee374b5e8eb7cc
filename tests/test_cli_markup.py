"""Model text and tool output are data: the terminal shows them verbatim, never as rich markup."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from goalproc import CHECK, KEY, goal_env

from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker

HOSTILE = "[/x] [red]oops[/red] [link=file:///etc/passwd]x[/link] :smile:"


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenax.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_hostile_text_is_shown_verbatim_and_the_goal_ends(tmp_path: Path, workspace: Path):
    db = tmp_path / "t.db"
    env = goal_env(db, COLUMNS="250")
    script = Script([
        Reply(text=f"Thinking about {HOSTILE}", tool_calls=[
            ToolCall(name="bash", arguments={"command": f"printf '%s\\n' '{HOSTILE}'"})]),
        Reply(text="Fixing.", tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
        Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": f"summary {HOSTILE}"})]),
    ])
    with Simulator(script) as sim:
        r = run_cli(env, "goal", f"objective {HOSTILE}", "--workspace", str(workspace), "--check", CHECK,
                    "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == 0, out
    assert f"model Thinking about {HOSTILE}" in r.stdout  # the model's text
    assert f"--- stdout ---⏎ {HOSTILE}" in r.stdout  # the tool's output
    assert HOSTILE.replace("'", "") in r.stdout.replace("'", "").replace("\\", "")  # the tool call's arguments
    assert "succeeded" in r.stdout
    status = sqlite3.connect(db).execute("select status from goals").fetchone()[0]
    assert status == "succeeded"

    gid = sqlite3.connect(db).execute("select id from goals").fetchone()[0]
    show = run_cli(env, "show", gid)
    assert show.returncode == 0 and "Traceback" not in show.stderr, show.stderr
    assert f"objective {HOSTILE}" in show.stdout and f"summary {HOSTILE}" in show.stdout
    assert f"--- stdout ---⏎ {HOSTILE}" in show.stdout
    ls = run_cli(env, "ls")
    assert ls.returncode == 0 and f"objective {HOSTILE}"[:49] + "…" in ls.stdout, ls.stdout + ls.stderr  # ls cuts at 50
    md = run_cli(env, "export", gid)
    assert md.returncode == 0 and f"Thinking about {HOSTILE}" in md.stdout
