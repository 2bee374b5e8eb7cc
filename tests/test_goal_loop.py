"""End-to-end goal runs: real SDKs over HTTP to the simulator, a real Docker sandbox, real SQLite."""

from __future__ import annotations

import json
import signal

import pytest
from goalproc import CHECK, KEY, goal_env, kill_9_when, start_goal_process, wait_for

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.core.journal import fold
from tenax.core.messages import ToolResultPart
from tenax.store import open_store
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker



def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def start(store, sim, workspace, *, provider="anthropic", check=CHECK, budgets=None) -> str:
    names = {"anthropic": "anthropic:claude-sonnet-4-6", "openai": "openai:gpt-5.5", "openai-chat": "openai-chat:qwen3"}
    base = sim.url if provider == "anthropic" else sim.url + "/v1"
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=check,
                      model=names[provider], base_url=base, budgets=budgets or Budgets(max_turns=15))
    return create_goal(store, req, api_key=KEY)


def assert_pairing(store, goal_id):
    main = [s for s in store.sessions_for_goal(goal_id) if s.role == "main"][0]
    msgs = fold(store.steps(main.id))
    for i, m in enumerate(msgs):
        if m.role == "assistant" and m.tool_calls:
            nxt = msgs[i + 1]
            ids = [p.tool_call_id for p in nxt.parts[: len(m.tool_calls)] if isinstance(p, ToolResultPart)]
            assert ids == [c.id for c in m.tool_calls]
    return main, msgs


FIX = [
    Reply(text="Reading.", tool_calls=[call("read_file", path="status.txt")]),
    Reply(text="Fixing.", tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
    Reply(text="Done.", tool_calls=[call("complete_goal", summary="wrote fixed")]),
]


@pytest.mark.parametrize("provider", ["anthropic", "openai", "openai-chat"])
def test_goal_succeeds_through_each_provider(provider, store, workspace):
    with Simulator(Script(list(FIX))) as sim:
        gid = start(store, sim, workspace, provider=provider)
        status = run_goal(store, gid, api_key=KEY)
    assert status == "succeeded"
    assert (workspace / "status.txt").read_text() == "fixed\n"
    goal = store.get_goal(gid)
    assert goal.turns == 3 and goal.status == "succeeded" and goal.summary == "wrote fixed"
    paths = {r.path for r in sim.requests}
    expected = {"anthropic": "/v1/messages", "openai": "/v1/responses", "openai-chat": "/v1/chat/completions"}[provider]
    assert paths == {expected}
    assert all(r.status == 200 for r in sim.requests)
    usage = store.usage_for_goal(gid)
    assert len(usage) == 3 and all(u.output_tokens > 0 for u in usage)
    assert goal.input_tokens + goal.cache_read_tokens + goal.cache_write_tokens > 0
    main, msgs = assert_pairing(store, gid)
    # the read_file result really came from the container
    assert "broken" in msgs[2].parts[0].content


def test_failing_check_keeps_the_loop_going(store, workspace):
    script = Script([
        Reply(text="I think it's done.", tool_calls=[call("complete_goal", summary="nothing")]),
        Reply(tool_calls=[call("bash", command="echo fixed > status.txt")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed it")]),
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    # the 2nd request carried the failed check back as an error tool result
    second = json.dumps(sim.requests[1].body)
    assert "NOT complete" in second and '"is_error": true' in second
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    checks = [s.payload for s in store.steps(main.id) if s.kind == "event" and s.payload["type"] == "check"]
    assert [c["passed"] for c in checks] == [False, True]
    assert store.get_goal(gid).turns == 3


def test_giving_up_gets_a_continuation_not_an_exit(store, workspace):
    script = Script([
        Reply(text="This is impossible, I can't do it. Should I stop?"),
        Reply(text="Still impossible."),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="ok")]),
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    second = sim.requests[1].body["messages"][-1]
    text = json.dumps(second)
    assert second["role"] == "user"
    assert "do not ask the user; decide and proceed" in text
    assert "Make status.txt say fixed." in text and "turns: 1 used" in text
    third = json.dumps(sim.requests[2].body["messages"][-1])
    assert "2 in a row" in third  # the stuck policy gets firmer


def test_turn_budget_stops_with_budget_exhausted(store, workspace):
    script = Script([Reply(tool_calls=[call("bash", command=f"echo {i}")]) for i in range(20)])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace, budgets=Budgets(max_turns=4))
        assert run_goal(store, gid, api_key=KEY) == "budget_exhausted"
    goal = store.get_goal(gid)
    assert goal.turns == 4 and len(sim.requests) == 4
    wrap = [r for r in sim.requests if "Wrap up now" in json.dumps(r.body["messages"][-1])]
    assert len(wrap) == 1  # told once, near the end


def test_token_budget_stops_with_budget_exhausted(store, workspace):
    script = Script([Reply(text="x" * 4000, tool_calls=[call("bash", command="true")]) for _ in range(20)])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace, budgets=Budgets(max_tokens=2500))
        assert run_goal(store, gid, api_key=KEY) == "budget_exhausted"
    goal = store.get_goal(gid)
    assert goal.input_tokens + goal.cache_write_tokens + goal.output_tokens >= 2500
    assert goal.turns < 20


def test_model_switch_on_resume_is_refused(store, workspace):
    from tenax.core.errors import ModelSwitchRefused

    with Simulator(Script([])) as sim:
        gid = start(store, sim, workspace)
        with pytest.raises(ModelSwitchRefused, match="sub-agent"):
            run_goal(store, gid, api_key=KEY, model_override="anthropic:claude-haiku-4-5")


def test_kill_9_mid_tool_then_resume_repeats_nothing(tmp_path, workspace):
    """A tenax process is SIGKILLed while a tool runs; resume settles that call without running it
    again and finishes the goal."""
    db = tmp_path / "tenax.db"
    script = Script([
        Reply(tool_calls=[call("bash", command="echo run >> runs.txt; sleep 60")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="done after resume")]),
    ])
    with Simulator(script) as sim:
        proc = start_goal_process(workspace, sim.url, goal_env(db))
        kill_9_when(proc, lambda: (workspace / "runs.txt").exists())
        store = open_store(f"sqlite:///{db}")
        gid = store.list_goals()[0].id
        assert store.get_goal(gid).status == "running"  # nothing had a chance to clean up
        status = run_goal(store, gid, api_key=KEY)
    assert status == "succeeded"
    assert (workspace / "runs.txt").read_text() == "run\n"  # the interrupted command was not repeated
    main, msgs = assert_pairing(store, gid)
    interrupted = msgs[2].parts[0]
    assert interrupted.is_error and "interrupted" in interrupted.content
    assert len(sim.requests) == 3  # no model call was repeated either
    store.close()


def test_sigterm_stops_the_goal_resumably(tmp_path, workspace):
    db = tmp_path / "tenax.db"
    script = Script([
        Reply(tool_calls=[call("bash", command="touch started; sleep 60")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="ok")]),
    ])
    with Simulator(script) as sim:
        proc = start_goal_process(workspace, sim.url, goal_env(db))
        assert wait_for(lambda: (workspace / "started").exists())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out  # stopped: the documented exit code
        assert "stopped" in out and "tenax resume" in out
        store = open_store(f"sqlite:///{db}")
        gid = store.list_goals()[0].id
        assert store.get_goal(gid).status == "stopped"
        # the interrupted command does not go on, and the container is stopped but kept for resume
        import subprocess

        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", f"tenax-{gid}"],
                               capture_output=True, text=True)
        assert state.returncode == 0 and state.stdout.strip() == "false", state
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
        store.close()


def _run(store, gid, *, retry_attempts=2):
    """Run the goal through the app with fast provider retries; returns (status, outage waits)."""
    from tenax.harness.retry import RetryPolicy

    waits: list[float] = []
    options = {"retry": RetryPolicy(max_attempts=retry_attempts, base_delay=0.01), "sleep": lambda s: None}
    return run_goal(store, gid, api_key=KEY, model_options=options, sleep=waits.append), waits


def test_provider_outage_is_waited_out_not_fatal(store, workspace):
    from tenax.testing import SimError

    overloaded = Reply(error=SimError(status=529, message="Overloaded"))
    script = Script([overloaded] * 4 + list(FIX[1:]))
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        status, waits = _run(store, gid)
        assert status == "succeeded"
    assert waits == [30.0, 60.0]  # two exhausted calls, backing off further each time
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    outages = [s.payload for s in store.steps(main.id) if s.kind == "event" and s.payload["type"] == "provider_outage"]
    assert len(outages) == 2 and "529" in outages[0]["error"]
    assert store.get_goal(gid).turns == 2


def test_non_retryable_provider_error_fails_with_a_clear_reason(store, workspace):
    from tenax.testing import SimError

    script = Script([Reply(error=SimError(status=401, message="invalid x-api-key"))])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        status, waits = _run(store, gid)
        assert status == "failed"
    goal = store.get_goal(gid)
    assert "401" in goal.error and "API key" in goal.error
    assert waits == [] and len(sim.requests) == 1


def test_project_instructions_are_frozen_into_the_system_prompt(store, workspace):
    (workspace / "AGENTS.md").write_text("Always write 'fixed' in lowercase.\n")
    script = Script([
        Reply(tool_calls=[call("write_file", path="AGENTS.md", content="EDITED BY THE AGENT\n")]),
        *FIX[1:],
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    systems = [json.dumps(r.body["system"], sort_keys=True) for r in sim.requests]
    assert "Always write 'fixed' in lowercase." in systems[0]
    assert len(set(systems)) == 1 and "EDITED BY THE AGENT" not in systems[0]  # frozen for the session
    assert (workspace / "AGENTS.md").read_text() == "EDITED BY THE AGENT\n"
