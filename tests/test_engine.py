"""The engine on its own: hooks, incremental state, truncated calls.

Real parts: the real anthropic SDK over HTTP to the simulator, a real Docker sandbox, a real
SQLite file. Engines here are built by hand with only the hooks a test names.
"""

from __future__ import annotations

import json

import pytest
from goalproc import CHECK, KEY

from tenax.app import GoalRequest, build_model, create_goal, main_session
from tenax.core.budget import Budgets
from tenax.core.engine import Engine
from tenax.goal.hooks import SteeringHook
from tenax.goal.policy import GoalPolicy, drive
from tenax.sandbox import DockerSandbox, ToolBox
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


class CountingStore:
    """The real store, counting full journal reads (``steps`` with no ``after_seq``)."""

    def __init__(self, store):
        self._store = store
        self.full_reads = 0

    def steps(self, session_id, **kw):
        if not kw.get("after_seq"):
            self.full_reads += 1
        return self._store.steps(session_id, **kw)

    def __getattr__(self, name):
        return getattr(self._store, name)


def bare_engine(store, gid, sim, hooks=lambda store, gid: []):
    """A goal engine with the goal policy and only the given hooks (no compaction)."""
    goal = store.get_goal(gid)
    sandbox = DockerSandbox(goal.workspace, goal_id=gid)
    sandbox.start()
    toolbox = ToolBox(sandbox)
    policy = GoalPolicy(store, gid, sandbox, toolbox)
    sid, system, tools = main_session(store, goal, policy.tools())
    model = build_model(goal.model, sim.url, KEY)
    return Engine(store, gid, sid, model, system, tools, policy, hooks=hooks(store, gid)), policy, sandbox


def new_goal(store, sim, workspace, turns=15):
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK,
                      model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=Budgets(max_turns=turns))
    return create_goal(store, req, api_key=KEY)


def test_steering_reaches_the_model_on_an_engine_without_compaction(store, workspace):
    steer_text = "Use lowercase [only] please"
    box: dict = {}
    script = Script([
        Reply(text="Looking.", tool_calls=[call("read_file", path="status.txt")]),
        Reply(text="Fixing.", tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(text="Done.", tool_calls=[call("complete_goal", summary="ok")]),
    ])

    def policy(req):
        if req.n_messages == 1:  # while the first call is answered, another terminal steers the goal
            store.push_steering(box["gid"], steer_text)
        return script(req)

    with Simulator(policy) as sim:
        gid = box["gid"] = new_goal(store, sim, workspace)
        engine, goal_policy, sandbox = bare_engine(store, gid, sim, hooks=lambda s, g: [SteeringHook(s, g)])
        assert not any(type(h).__name__ in ("Compactor", "Ralph") for h in engine.hooks)
        try:
            assert drive(engine, goal_policy) == "succeeded"
        finally:
            sandbox.stop()
    bodies = [json.dumps(r.body["messages"]) for r in sim.requests]
    assert steer_text not in bodies[0]
    assert "[user steering message] " + steer_text in bodies[1]  # verbatim, as the user's, next call
    assert all(b.count(steer_text) == 1 for b in bodies[1:])  # delivered once, kept in the context
    assert not store.pending_steering(gid)  # consumed once journaled


def test_the_journal_is_read_in_full_once_per_run_not_per_turn(store, workspace):
    """Turn 30 must not refold the whole journal: the engine keeps its state incrementally."""
    replies = [Reply(text=f"step {i}", tool_calls=[call("bash", command=f"echo {i}")]) for i in range(28)]
    replies += [Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
                Reply(tool_calls=[call("complete_goal", summary="ok")])]
    with Simulator(Script(replies)) as sim:
        gid = new_goal(store, sim, workspace, turns=40)
        counting = CountingStore(store)
        engine, policy, sandbox = bare_engine(counting, gid, sim)
        try:
            assert drive(engine, policy) == "succeeded"
        finally:
            sandbox.stop()
    assert store.get_goal(gid).turns == 30
    assert counting.full_reads <= 2, counting.full_reads  # the open, and the wrap-up check's one look


def test_a_display_that_raises_never_ends_the_run(store, workspace):
    """The engine calls on_event after each journal step; a broken renderer or exporter is not
    allowed to leave an unattended goal `running` forever."""
    from tenax.app import run_goal

    def broken(kind, payload):
        raise ValueError("closing tag '[/x]' doesn't match any open tag")

    script = Script([Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
                     Reply(tool_calls=[call("complete_goal", summary="ok")])])
    with Simulator(script) as sim:
        gid = new_goal(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY, on_event=broken) == "succeeded"
    assert store.get_goal(gid).status == "succeeded"
