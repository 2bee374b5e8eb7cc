"""The configuration's budgets and sandbox limits reach a goal: a project `.tenax/config.toml` sets a
default turn budget and the container's memory and pids limits, read inside the real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tenax.store import open_store
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker
KEY = "sim-test-key"


def test_project_config_sets_budgets_and_sandbox_limits(tmp_path):
    ws = tmp_path / "ws"
    (ws / ".tenax").mkdir(parents=True)
    (ws / "status.txt").write_text("broken\n")
    (ws / ".tenax" / "config.toml").write_text('max_turns = 2\nmem_limit = "768m"\npids_limit = 100\n')
    probe = ("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
             "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max")  # cgroup v2 or v1
    script = Script([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": probe})])] * 5)
    db = tmp_path / "t.db"
    env = {**os.environ, "TENAX_DB": f"sqlite:///{db}", "ANTHROPIC_API_KEY": KEY, "XDG_CONFIG_HOME": str(tmp_path / "x")}
    with Simulator(script) as sim:
        done = subprocess.run([sys.executable, "-m", "tenax.cli", "goal", "probe the limits", "-w", str(ws),
                               "-c", "false", "-m", "anthropic:claude-sonnet-4-6", "--base-url", sim.url],
                              cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stdout + done.stderr  # budget_exhausted: the config's 2 turns
    store = open_store(f"sqlite:///{db}")
    goal = store.list_goals()[0]
    assert goal.budgets["max_turns"] == 2 and goal.turns == 2
    main = next(s for s in store.sessions_for_goal(goal.id) if s.role == "main")
    result = next(s.payload["content"] for s in store.steps(main.id) if s.kind == "tool_result")
    assert str(768 * 1024 * 1024) in result and "100" in result, json.dumps(result)
    store.close()
