"""Circling and no-progress guards end to end: the simulator over real HTTP, a real Docker
sandbox, a real SQLite store, reviewer sub-agents scripted through the simulator."""

from __future__ import annotations

import json

import pytest
from goalproc import CHECK, KEY
from test_subagents import _text, call
from test_subagents import is_main_body as is_main

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.core.messages import ToolCallPart
from tenax.core.protocols import ToolOutcome
from tenax.goal.guards import CirclingGuard, GuardConfig, error_lines, normalize
from tenax.testing import Reply, Script, Simulator, ToolCall

REVIEW = "A coding agent is circling"
ANSWER = "The assumption that fixd is the right word is wrong; write exactly fixed."


def router(main: list[Reply], subs: dict[str, list[Reply]]):
    scripts = {k: Script(v) for k, v in subs.items()}
    main_script = Script(main)

    def policy(req):
        if is_main(req.body):
            return main_script(req)
        task = _text(req.body["messages"][0]["content"])
        return next((s(req) for k, s in scripts.items() if k in task), Reply(text="no script"))
    return policy


def start(store, sim, workspace, *, budgets=None, **extra) -> str:
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK,
                      model="anthropic:claude-sonnet-4-6", base_url=sim.url,
                      budgets=budgets or Budgets(max_turns=30), **extra)
    return create_goal(store, req, api_key=KEY)


def main_bodies(sim) -> list[dict]:
    return [r.body for r in sim.requests if is_main(r.body)]


def events(store, gid, kind) -> list[dict]:
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    return [s.payload for s in store.steps(main.id) if s.kind == "event" and s.payload.get("type") == kind]


WRONG_FIX = [call("write_file", path="status.txt", content="fixd\n"), call("complete_goal", summary="fixed")]
REPORT = Reply(tool_calls=[call("report", outcome="success", findings=ANSWER, passed=False)])


def test_normalized_signatures_ignore_timestamps_addresses_and_temp_paths():
    a = "2026-01-02 10:11:12 ERROR at 0x7f3a2b1c in /tmp/pytest-of-u/x1/t.py: took 0.31s"
    b = "2027-05-06T01:02:03.456Z ERROR at 0x55aa in /tmp/pytest-of-u/x9/t.py: took 12.5s"
    assert normalize(a) == normalize(b)
    assert error_lines("ok\nE   AssertionError: 1 != 2\nall good") == "E AssertionError: 1 != 2"
    assert GuardConfig.of({"guards": {"repeat": 5, "bogus": 1}}).repeat == 5


@pytest.mark.docker
def test_the_guard_keeps_only_its_window_over_a_long_run(tmp_path):
    """3,000 turns of distinct calls and edits: the circling guard's state stays the size of its
    window (it once kept every signature ever seen, so each turn cost more than the one before)."""
    guard = CirclingGuard("objective", str(tmp_path), None, GuardConfig(no_progress_turns=10**6))
    for turn in range(3000):
        assert guard.before_turn(None) == ()  # type: ignore[arg-type]
        bash = ToolCallPart(id=f"b{turn}", name="bash", arguments={"command": f"echo {turn}"})
        guard.after_tool(bash, ToolOutcome(content=f"exit code: 1\nerror: case {turn} failed"), None)  # type: ignore[arg-type]
        edit = ToolCallPart(id=f"e{turn}", name="edit_file", arguments={"path": "a.py", "old": f"x{turn}" * 50,
                                                                        "new": f"y{turn}" * 50})
        guard.after_tool(edit, ToolOutcome(content="ok"), None)  # type: ignore[arg-type]
    window = guard.config.window
    assert len(guard._seen) <= 3 * window
    assert len(guard._examples) <= 2 * len(guard._seen) + 16 + 3
    assert sum(map(len, guard._edits.pairs.values())) <= guard._edits.KEEP


def test_repeating_a_failing_fix_three_times_steps_back_with_a_reviewer_and_a_pitfall_that_survives(store, workspace):
    main = [Reply(tool_calls=WRONG_FIX) for _ in range(3)] + [
        Reply(text="Let me think about the reviewer's note."),  # ends the turn: Ralph starts a fresh context
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ]
    with Simulator(router(main, {REVIEW: [REPORT]})) as sim:
        gid = start(store, sim, workspace, strategy="ralph")
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    stuck = events(store, gid, "stuck")
    assert len(stuck) == 1 and stuck[0]["count"] == 3 and stuck[0]["action"] == "review"
    assert "check:" in stuck[0]["signature"] or "call: write_file" in stuck[0]["signature"]
    bodies = main_bodies(sim)
    fourth = _text(bodies[3]["messages"][-1]["content"])
    assert "STEP BACK" in fourth and ANSWER in fourth
    reviews = [r.body for r in sim.requests if REVIEW in _text(r.body["messages"][0]["content"])]
    assert reviews and {t["name"] for t in reviews[0]["tools"]} == {"read_file", "list_files", "grep", "report"}
    task = _text(reviews[0]["messages"][0]["content"])
    assert "Make status.txt say fixed." in task and "fixd" in task and "MEMORY LEDGER" in task
    pitfalls = [n.text for n in store.notes(gid, "pitfall")]
    assert any(ANSWER in p and "dead end" in p for p in pitfalls)
    # the Ralph restart after turn 4 is a fresh context whose first message is the ledger
    fresh = _text(bodies[4]["messages"][0]["content"])
    assert "MEMORY LEDGER" in fresh and ANSWER in fresh and len(bodies[4]["messages"]) < len(bodies[3]["messages"])
    assert events(store, gid, "step_back")[0]["answer"].startswith(ANSWER)


@pytest.mark.docker
def test_circling_after_the_step_backs_ends_stuck_with_a_report_under_budget(store, workspace):
    main = [Reply(tool_calls=WRONG_FIX) for _ in range(40)]
    with Simulator(router(main, {REVIEW: [REPORT, REPORT, REPORT]})) as sim:
        gid = start(store, sim, workspace, budgets=Budgets(max_turns=40), guards={"step_backs": 2})
        assert run_goal(store, gid, api_key=KEY) == "stuck"
    goal = store.get_goal(gid)
    assert goal.turns < 40 and goal.turns == 12  # 2 reviews, 1 fresh context, then the end at the 4th repeat
    actions = [e["action"] for e in events(store, gid, "stuck")]
    assert actions == ["review", "review", "fresh_context", "end"]
    assert "stuck: the same spot repeated 3 times after 3 step-backs" in goal.error
    assert ANSWER in goal.error and "tenax steer" in goal.error
    assert len(main_bodies(sim)) == 12


@pytest.mark.docker
def test_no_progress_guard_fires_after_quiet_turns(store, workspace):
    # different harmless reads: no repeat, no workspace change, no check result
    main = [Reply(tool_calls=[call("bash", command=f"echo look {i}")]) for i in range(6)] + [
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ]
    with Simulator(router(main, {REVIEW: [REPORT]})) as sim:
        gid = start(store, sim, workspace, guards={"no_progress_turns": 4})
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    stuck = events(store, gid, "stuck")
    assert len(stuck) == 1 and stuck[0]["signature"].startswith("no progress: 4 turns")
    assert any("STEP BACK" in _text(b["messages"][-1]["content"]) for b in main_bodies(sim))
