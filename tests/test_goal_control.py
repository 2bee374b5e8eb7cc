"""Control of a running goal from elsewhere (another terminal, the daemon): stop and pause win
within one tool call and during a retry wait; a raised budget is seen in place; a usage limit
parks the goal until its reset. Real SDKs over HTTP to the simulator, real sandbox, real SQLite."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from goalproc import CHECK, KEY

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.harness.retry import RetryPolicy
from tenax.testing import Reply, Script, SimError, Simulator, ToolCall

pytestmark = pytest.mark.docker
FAST = {"retry": RetryPolicy(max_attempts=2, base_delay=0.01), "sleep": lambda s: None}


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def start(store, sim, workspace, budgets=None) -> str:
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK,
                      model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=budgets or Budgets(max_turns=20))
    return create_goal(store, req, api_key=KEY)


def events(store, gid, kind):
    main = next(s for s in store.sessions_for_goal(gid) if s.role == "main")
    return [s.payload for s in store.steps(main.id) if s.kind == "event" and s.payload.get("type") == kind]


def later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.start()
    return t


def once_exists(path, fn, timeout=60.0):
    """Run fn as soon as path exists (from another thread, as another terminal would)."""
    def watch():
        end = time.time() + timeout
        while time.time() < end and not path.exists():
            time.sleep(0.05)
        fn()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_stop_from_elsewhere_wins_within_one_tool_call_and_resumes(store, workspace):
    script = Script([
        Reply(tool_calls=[call("bash", command="touch one; sleep 2"), call("bash", command="touch two")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="ok")]),
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        once_exists(workspace / "one", lambda: store.update_goal(gid, control="stop"))  # while it runs
        assert run_goal(store, gid, api_key=KEY) == "stopped"
        assert (workspace / "one").exists() and not (workspace / "two").exists()  # the next call was not run
        goal = store.get_goal(gid)
        assert goal.control is None and "stop" in goal.error and len(sim.requests) == 1
        assert run_goal(store, gid, api_key=KEY) == "succeeded"  # resumable; the skipped call was answered


def test_stop_wins_during_an_outage_wait(store, workspace):
    overloaded = Reply(error=SimError(status=529, message="Overloaded"))
    with Simulator(Script([overloaded] * 10)) as sim:
        gid = start(store, sim, workspace)
        later(1.5, lambda: store.update_goal(gid, control="stop"))
        began = time.monotonic()
        assert run_goal(store, gid, api_key=KEY, model_options=FAST) == "stopped"
        assert time.monotonic() - began < 15  # not the 30 s outage wait
    assert events(store, gid, "provider_outage")


def test_pause_then_resume(store, workspace):
    script = Script([
        Reply(tool_calls=[call("bash", command="touch started; sleep 1")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="ok")]),
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        once_exists(workspace / "started", lambda: store.update_goal(gid, control="pause"))
        assert run_goal(store, gid, api_key=KEY) == "paused"
        assert store.get_goal(gid).status == "paused"
        assert run_goal(store, gid, api_key=KEY) == "succeeded"


def test_a_budget_raised_while_running_is_seen_in_place(store, workspace):
    script = Script([Reply(tool_calls=[call("bash", command=f"touch s{i}; sleep 0.3")]) for i in range(3)] + [
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="ok")]),
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace, budgets=Budgets(max_turns=2))
        once_exists(workspace / "s0", lambda: store.update_goal(gid, budgets={"max_turns": 10}))
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    assert store.get_goal(gid).turns == 5


def test_a_usage_limit_parks_the_goal_until_its_reset(store, workspace):
    limited = Reply(error=SimError(status=429, message="usage limit reached", retry_after=3600))
    with Simulator(Script([limited])) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY, park_on_limit=True) == "waiting"
    goal = store.get_goal(gid)
    wait = (goal.not_before - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < wait <= 3600 and "usage limit" in goal.waiting_on
    assert events(store, gid, "usage_limit")[0]["parked"] is True
    assert goal.cost_usd == 0 and len(sim.requests) == 1  # parked at once, not retried all night
