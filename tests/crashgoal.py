"""Run (or resume) the goal of a workspace and SIGKILL this very process at a chosen point.

    python crashgoal.py DB BASE_URL WORKSPACE KILL_AT [mid-tool]

The process kills itself with a real SIGKILL right after the KILL_AT-th journal step of the run
is committed (a step boundary), or, with ``mid-tool``, 0.15 s into the first bash call at or
after that step (while the command runs in the sandbox). Used by tests/test_crash_points.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from tenax.app import GoalRequest, create_goal, open_store, run_goal
from tenax.core.budget import Budgets

KEY = "sim-test-key"


def main() -> None:
    db, base_url, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[4])
    workspace = str(Path(sys.argv[3]).resolve())
    mid_tool = len(sys.argv) > 5 and sys.argv[5] == "mid-tool"
    store = open_store(f"sqlite:///{db}")
    goals = [g for g in store.list_goals(limit=1000) if g.workspace == workspace]  # one DB serves every trial
    gid = goals[0].id if goals else create_goal(store, GoalRequest(
        objective="Make status.txt say fixed.", workspace=workspace, check="grep -qx fixed status.txt",
        model="anthropic:claude-sonnet-4-6", base_url=base_url, budgets=Budgets(max_turns=60)), api_key=KEY)
    seen = 0

    def on_event(kind: str, payload: dict) -> None:
        nonlocal seen
        seen += 1
        if mid_tool:
            if seen >= kill_at and kind == "tool_started" and payload.get("name") == "bash":
                threading.Timer(0.15, os.kill, (os.getpid(), signal.SIGKILL)).start()
        elif seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    print(run_goal(store, gid, api_key=KEY, on_event=on_event), flush=True)


if __name__ == "__main__":
    main()
