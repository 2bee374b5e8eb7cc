"""What `tenax goal` shows a person: the end-of-run summary, and under a terminal (tmux) the live status
line. Real `tenax` processes, the simulator over real HTTP, a Docker sandbox, SQLite."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from goalproc import CHECK, OBJECTIVE, goal_env

from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker


def git(ws, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=ws, check=True,
                   capture_output=True)


def test_end_summary_in_a_git_workspace(workspace, tmp_path):
    (workspace / "notes.txt").write_text("a\nb\n")
    git(workspace, "init", "-q")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "start")
    script = Script([
        # the agent commits its first change: the diff is against the goal's start, not HEAD
        Reply(tool_calls=[ToolCall(name="bash", arguments={
            "command": "echo c >> notes.txt && git -c safe.directory='*' -c user.name=a -c user.email=a@a "
                       "commit -qam wip; echo fixed > status.txt; echo new > added.txt"})]),
        Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "status fixed"})]),
    ])
    with Simulator(script) as sim:
        r = subprocess.run([sys.executable, "-m", "tenax.cli", "goal", OBJECTIVE, "--workspace", str(workspace),
                            "--check", CHECK, "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url],
                           env={**goal_env(tmp_path / "t.db"), "COLUMNS": "200"}, capture_output=True, text=True,
                           timeout=300)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "why: status fixed" in out
    assert f"last check: check `{CHECK}` passed" in out
    assert re.search(r"notes\.txt +\| 1 \+\n", out) and re.search(r"status\.txt +\| 2 \+-", out)
    assert "added.txt (new, untracked)" in out and "2 files changed" in out
    assert "cost per model" in out and "claude-sonnet-4-6" in out and "cache saved" in out
    assert "cost per agent" in out and "main" in out
    assert "export the transcript: tenax export" in out
