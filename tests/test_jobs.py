"""Background jobs end to end: a real container, the simulator, a real store."""

from __future__ import annotations

import json

import pytest
from goalproc import CHECK, KEY
from test_subagents import call

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.config import load_settings
from tenax.core.budget import Budgets
from tenax.testing import Reply, Script, Simulator

pytestmark = pytest.mark.docker


def test_a_60s_job_outlives_a_10s_command_timeout_and_wait_job_returns_its_result(store, workspace):
    script = Script([
        Reply(tool_calls=[call("start_job", command="sleep 60 && echo fixed > status.txt && echo built-ok")]),
        Reply(tool_calls=[call("start_job", command="echo second; exit 3")]),
        Reply(tool_calls=[call("job_status"), call("job_status", id="job1"), call("job_status", id="job9"),
                          call("job_status", id="$(reboot)")]),
        Reply(tool_calls=[call("bash", command="sleep 1; cat status.txt")]),
        Reply(tool_calls=[call("wait_job", id="job1", timeout=300)]),
        Reply(tool_calls=[call("complete_goal", summary="the build job fixed it")]),
    ])
    settings = load_settings().model_copy(update={"exec_timeout": 10.0})
    with Simulator(script) as sim:
        req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK,
                          model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=Budgets(max_turns=10))
        gid = create_goal(store, req, api_key=KEY)
        assert run_goal(store, gid, api_key=KEY, settings=settings) == "succeeded"

    def results(i):
        return [b for b in sim.requests[i].body["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert "started job1" in json.dumps(results(1)) and "started job2" in json.dumps(results(2))
    latest, first, missing, hostile = results(3)
    assert "job2: finished, exit code 3" in json.dumps(latest) and "second" in json.dumps(latest) and latest["is_error"]
    assert "job1: still running" in json.dumps(first) and not first.get("is_error")
    assert "no such job job9" in json.dumps(missing) and "unknown job id" in json.dumps(hostile)
    assert "broken" in json.dumps(results(4))  # the job is still going, past the 10 s command timeout
    waited = json.dumps(results(5))
    assert "job1: finished, exit code 0" in waited and "built-ok" in waited
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    events = [s.payload for s in store.steps(main.id) if s.kind == "event" and s.payload["type"].startswith("job_")]
    assert [e["type"] for e in events] == ["job_started", "job_started", "job_wait", "job_done"]
    assert events[3]["waited_s"] > 40 and events[3]["exit_code"] == "0"
    goal = store.get_goal(gid)
    assert goal.turns == 6 and goal.elapsed_s >= 55  # the wait counts toward wall time, not toward tokens
