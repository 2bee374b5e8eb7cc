"""One runner per goal: a second `resume` of a running goal is refused, a dead runner's goal shows
as interrupted and resumes. Real processes, real SIGKILL, the simulator, a real SQLite file."""

from __future__ import annotations

import pytest
from goalproc import KEY, goal_env, kill_9_when, start_goal_process, wait_for

from tenax.app import run_goal
from tenax.store import open_store
from tenax.store.errors import GoalBusy
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def test_a_second_runner_is_refused_and_a_dead_runners_goal_resumes(tmp_path, workspace):
    db = tmp_path / "tenax.db"
    script = Script([
        Reply(tool_calls=[call("bash", command="touch started; sleep 60")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="ok")]),
    ])
    with Simulator(script) as sim:
        proc = start_goal_process(workspace, sim.url, goal_env(db))
        assert wait_for(lambda: (workspace / "started").exists())
        store = open_store(f"sqlite:///{db}")
        gid = store.list_goals()[0].id
        with pytest.raises(GoalBusy, match=rf"pid {proc.pid}\b"):
            run_goal(store, gid, api_key=KEY)
        assert store.get_goal(gid).shown_status == "running"
        assert len(sim.requests) == 1  # the refused runner sent nothing and journaled nothing
        kill_9_when(proc, lambda: True)
        assert store.get_goal(gid).status == "running"
        assert store.get_goal(gid).shown_status == "interrupted"
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
        store.close()
