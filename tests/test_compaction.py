"""Compaction end to end: real SDKs over HTTP to the simulator, a real Docker sandbox, real SQLite.

The simulator validates every request as strictly as the real APIs (tool pairing, role
alternation), so a compaction that broke the conversation would fail the goal with a 400."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from goalproc import CHECK, KEY, goal_env, kill_9_when, start_goal_process

from tenax.compaction import SUMMARY_REQUEST
from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.core.journal import fold
from tenax.core.messages import ToolResultPart
from tenax.store import open_store
from tenax.testing import Reply, SimError, Simulator, ToolCall

pytestmark = pytest.mark.docker

MODEL = "anthropic:claude-sonnet-4-6"


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def big_output(tag: str, chars: int = 6000) -> ToolCall:
    """A bash call whose output is ~chars characters and contains ``tag`` once, at the start."""
    return call("bash", command=f"echo {tag}; head -c {chars} /dev/zero | tr '\\0' a; echo")


class Routed:
    """Main-session replies in order; handoff-summary requests answered separately."""

    def __init__(self, main: list[Reply], summary_reply: Reply | None = None):
        self.main = list(main)
        self.summary_reply = summary_reply
        self.summaries = 0
        self.main_requests: list[int] = []  # indexes into sim.requests of main-session calls
        self.calls = 0

    def __call__(self, req) -> Reply:
        self.calls += 1
        if SUMMARY_REQUEST in req.last_user_text:
            self.summaries += 1
            if self.summary_reply is not None:
                return self.summary_reply
            return Reply(text=f"HANDOFF-SUMMARY-{self.summaries}: progress is good; next: finish the fix.")
        if self.main:
            return self.main.pop(0)
        return Reply(tool_calls=[call("complete_goal", summary="done")])


def start(store, sim, workspace, *, compaction=None, strategy="continuous", max_turns=30) -> str:
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK, model=MODEL,
                      base_url=sim.url, budgets=Budgets(max_turns=max_turns), strategy=strategy, compaction=compaction)
    return create_goal(store, req, api_key=KEY)


def main_session(store, gid):
    return [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]


def compactions(store, gid):
    return [s for s in store.steps(main_session(store, gid).id) if s.kind == "compaction"]


def assert_pairing(msgs):
    assert msgs[0].role == "user"
    for i, m in enumerate(msgs):
        if i:
            assert m.role != msgs[i - 1].role, "roles must alternate"
        if m.role == "assistant" and m.tool_calls:
            nxt = msgs[i + 1]
            ids = [p.tool_call_id for p in nxt.parts[: len(m.tool_calls)] if isinstance(p, ToolResultPart)]
            assert ids == [c.id for c in m.tool_calls]


def body_text(rec) -> str:
    return json.dumps(rec.body, ensure_ascii=False)


def test_threshold_compaction_keeps_pairing_cache_and_recall(store, workspace):
    policy = Routed([
        Reply(text="Planning.", tool_calls=[call("update_plan", items=[
            {"text": "inspect status.txt", "status": "in_progress"},
            {"text": "write fixed into status.txt", "status": "pending"}])]),
        Reply(tool_calls=[call("note", kind="pitfall", text="sed -i on status.txt breaks its permissions here")]),
        Reply(tool_calls=[big_output("NEEDLE-QX7 archived marker")]),
        Reply(tool_calls=[big_output("filler-two")]),
        Reply(tool_calls=[big_output("filler-three")]),
        Reply(tool_calls=[call("recall", query="NEEDLE-QX7")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ])
    window = 12_000
    with Simulator(policy, min_cacheable_tokens=256) as sim:
        gid = start(store, sim, workspace, compaction={"window": window, "threshold": 0.5, "keep_turns": 1})
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    assert all(r.status == 200 for r in sim.requests), [r.error for r in sim.requests if r.status != 200]

    comps = compactions(store, gid)
    assert comps and comps[0].payload["reason"] == "threshold"
    limit = window * 0.5
    first = comps[0].payload
    assert first["tokens_before"] >= limit and first["tokens_after"] < first["tokens_before"]
    assert first["archived"] and first["archived"][1] == first["kept_from"] - 1

    # the turn before the first compaction was still under the threshold: it fired at the threshold
    sid = main_session(store, gid).id
    steps = store.steps(sid)
    before = [s for s in steps if s.kind == "assistant" and s.seq < comps[0].seq]
    u = before[-2].payload["usage"]
    assert u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"] + u["output_tokens"] < limit

    # the summary request rides the main session's prefix: same system, same tools
    summary_reqs = [r for r in sim.requests if SUMMARY_REQUEST in body_text(r)]
    assert len(summary_reqs) == policy.summaries == len(comps)
    first_req = sim.requests[0].body
    for r in summary_reqs:
        assert r.body["system"] == first_req["system"] and r.body["tools"] == first_req["tools"]
    # the request after the compaction: ledger + summary + kept tail; prefix still cached
    i = sim.requests.index(summary_reqs[0])
    after = sim.requests[i + 1]
    text = body_text(after)
    assert "MEMORY LEDGER" in text and "HANDOFF-SUMMARY-1" in text
    assert "write fixed into status.txt" in text and "sed -i on status.txt breaks its permissions" in text
    assert after.body["system"] == first_req["system"] and after.body["tools"] == first_req["tools"]
    assert after.usage["cache_read_input_tokens"] > 0
    assert "NEEDLE-QX7" not in text  # archived out of the context ...
    # ... but nothing was deleted, and recall finds it with its step id
    needle_step = next(s for s in steps if s.kind == "tool_result" and "NEEDLE-QX7" in s.payload["content"])
    recall_result = next(s for s in steps if s.kind == "tool_result" and "match(es) for 'NEEDLE-QX7'" in s.payload["content"])
    assert f"step {needle_step.seq} (tool_result)" in recall_result.payload["content"]
    assert "NEEDLE" in recall_result.payload["content"]
    assert_pairing(fold(steps))


def test_context_too_long_forces_compaction_and_retry(store, workspace):
    policy = Routed([
        Reply(tool_calls=[call("bash", command="echo one")]),
        Reply(tool_calls=[call("bash", command="echo two")]),
        Reply(error=SimError(status=400, kind="context_too_long")),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ], summary_reply=Reply(text="Summary anyway.", tool_calls=[call("bash", command="echo should-not-run")]))
    with Simulator(policy) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    statuses = [r.status for r in sim.requests]
    assert statuses.count(400) == 1
    comps = compactions(store, gid)
    assert [c.payload["reason"] for c in comps] == ["context_too_long"]
    # the model called a tool in its summary: ignored (never journaled), pairing intact, text kept
    steps = store.steps(main_session(store, gid).id)
    assert not any("should-not-run" in json.dumps(s.payload) for s in steps if s.kind in ("assistant", "tool_result"))
    assert "Summary anyway." in comps[0].payload["summary"]
    bad = statuses.index(400)
    assert SUMMARY_REQUEST in body_text(sim.requests[bad + 1])  # compaction right after the error
    retry = sim.requests[bad + 2]
    assert retry.status == 200 and "Summary anyway." in body_text(retry)  # then the same turn retried
    assert store.get_goal(gid).turns == 4  # the refused call is not a turn; its retry is
    assert_pairing(fold(steps))


def test_ledger_survives_kill_9_and_resume(tmp_path, workspace):
    db = tmp_path / "tenax.db"
    env = goal_env(db)
    policy = Routed([
        Reply(tool_calls=[call("update_plan", items=[{"text": f"PLAN-ITEM-{i}", "status": "pending"} for i in range(5)])]),
        Reply(tool_calls=[call("note", kind="decision", text="DECISION-use-write_file-not-sed")]),
        Reply(tool_calls=[call("bash", command="cat /nonexistent-PITFALL-path")]),
        Reply(tool_calls=[call("bash", command="echo run >> runs.txt; sleep 60")]),
        Reply(tool_calls=[big_output("after-resume")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ])
    with Simulator(policy, min_cacheable_tokens=256) as sim:
        proc = start_goal_process(workspace, sim.url, env, model=MODEL)
        kill_9_when(proc, lambda: (workspace / "runs.txt").exists())
        store = open_store(f"sqlite:///{db}")
        gid = store.list_goals()[0].id
        # a user steers the goal while it is down, through the CLI
        out = subprocess.run([sys.executable, "-m", "tenax.cli", "steer", gid, "STEER: keep the fix minimal"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        goal = store.get_goal(gid)
        # a window that the next big tool output (~1500 tokens) pushes past 80%
        last = [s for s in store.steps(main_session(store, gid).id) if s.kind == "assistant"][-1].payload["usage"]
        used = last["input_tokens"] + last["cache_read_tokens"] + last["cache_write_tokens"] + last["output_tokens"]
        window = int((used + 800) / 0.8)
        store.update_goal(gid, config={**goal.config, "compaction": {"window": window, "keep_turns": 1}})
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    assert (workspace / "runs.txt").read_text() == "run\n"
    comps = compactions(store, gid)
    assert comps
    ledger = comps[0].payload["ledger"]
    for i in range(5):
        assert f"PLAN-ITEM-{i}" in ledger
    assert "DECISION-use-write_file-not-sed" in ledger
    assert "PITFALL-path" in ledger.split("## Pitfalls")[1].split("##")[0]
    assert '"STEER: keep the fix minimal"' in ledger
    # the steering message reached the model verbatim, once
    steer_reqs = [r for r in sim.requests if "STEER: keep the fix minimal" in body_text(r)]
    assert steer_reqs
    sid = main_session(store, gid).id
    assert len([s for s in store.steps(sid) if s.payload.get("why") == "steering"]) == 1
    assert store.pending_steering(gid) == []
    # the first request after the compaction carried the whole ledger
    i = next(k for k, r in enumerate(sim.requests) if SUMMARY_REQUEST in body_text(r))
    text = body_text(sim.requests[i + 1])
    assert all(f"PLAN-ITEM-{k}" in text for k in range(5)) and "STEER: keep the fix minimal" in text
    store.close()


def test_ralph_strategy_runs_end_to_end(store, workspace):
    policy = Routed([
        Reply(tool_calls=[call("update_plan", items=[{"text": "RALPH-PLAN fix status", "status": "in_progress"}])]),
        Reply(tool_calls=[call("bash", command="echo half > status.txt")]),
        Reply(text="Iteration one done: status.txt now says half."),  # ends its turn: next iteration
        Reply(tool_calls=[call("bash", command="cat status.txt")]),
        Reply(tool_calls=[call("bash", command="echo still-working")]),
        Reply(tool_calls=[call("bash", command="echo third-turn")]),  # K=3 turns: next iteration
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ])
    with Simulator(policy, min_cacheable_tokens=256) as sim:
        gid = start(store, sim, workspace, strategy="ralph", compaction={"ralph_turns": 3})
        assert store.get_goal(gid).strategy == "ralph"
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    assert all(r.status == 200 for r in sim.requests)
    assert policy.summaries == 0  # Ralph needs no summary call
    comps = compactions(store, gid)
    assert [c.payload["mode"] for c in comps] == ["ralph", "ralph"]
    first = sim.requests[0].body
    fresh = [sim.requests[3], sim.requests[6]]  # the first request of iterations 2 and 3
    for n, r in zip((2, 3), fresh):
        assert len(r.body["messages"]) == 1  # a fresh context ...
        text = body_text(r)
        assert f"Ralph iteration {n}" in text and "Make status.txt say fixed." in text and "RALPH-PLAN" in text
        assert r.body["system"] == first["system"] and r.body["tools"] == first["tools"]  # ... same prefix
        assert r.usage["cache_read_input_tokens"] > 0
    assert "status.txt now says half" in body_text(fresh[0])
    # the work continued from the workspace: iteration 2 read what iteration 1 wrote
    steps = store.steps(main_session(store, gid).id)
    assert any(s.kind == "tool_result" and "half" in s.payload["content"] for s in steps if s.seq > comps[0].seq)
    assert_pairing(fold(steps))


def test_bad_strategy_is_refused(store, workspace):
    from tenax.core.errors import ConfigError

    with Simulator(Routed([])) as sim:
        with pytest.raises(ConfigError, match="unknown strategy"):
            start(store, sim, workspace, strategy="yolo")
