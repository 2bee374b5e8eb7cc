"""What the terminal shows for each journal event: its useful fields, verbatim, on one line."""

from __future__ import annotations

import sqlite3

import pytest
from goalproc import CHECK, goal_env
from test_cli_markup import run_cli

from tenax.cli import render_event
from tenax.testing import Reply, Script, SimError, Simulator, ToolCall

# payloads as the engine and the goal policy journal them
EVENTS = [
    ({"type": "provider_outage", "error": "Error code: 529 - overloaded", "status": 529, "wait_s": 30.0,
      "attempts": 6, "outage_waits": 3},
     "provider outage: HTTP 529: Error code: 529 - overloaded; waiting 30 s (outage wait 3, 6 attempts failed)"),
    ({"type": "provider_retry", "attempt": 2, "max_attempts": 6, "status": 529, "error": "overloaded", "wait_s": 20.0},
     "provider retry: HTTP 529: overloaded; next attempt 3/6 in 20 s"),
    ({"type": "provider_retries", "failed_attempts": [{"number": 1, "ok": False, "status": 429, "error": "rate limited"}]},
     "provider retried 1 failed attempt(s) before answering: HTTP 429: rate limited"),
    ({"type": "resumed", "settled": 2, "interrupted": 1},
     "resumed: 2 pending tool call(s) settled, 1 of them interrupted mid-run (not repeated)"),
    ({"type": "check", "command": "pytest -q", "passed": False, "exit_code": 1, "timed_out": False,
      "output_tail": "collected 3\n\nFAILED test_x.py::test_a - [/x] assert 1 == 2\n"},
     "check `pytest -q` failed (exit 1)  FAILED test_x.py::test_a - [/x] assert 1 == 2"),
    ({"type": "check", "command": "sleep 99", "passed": False, "exit_code": -1, "timed_out": True, "output_tail": ""},
     "check `sleep 99` failed (timed out)"),
    ({"type": "judge", "passed": False, "report": "tests are [red]missing[/red]"},
     "judge rejected: tests are [red]missing[/red]"),
    ({"type": "budget_exhausted", "budget": "max_usd", "spent": {"turns": 12, "tokens": 40000, "usd": 1.0312, "minutes": 3.5}},
     "budget exhausted: max_usd (spent turns 12, tokens 40,000, usd 1.031, minutes 3.5)"),
    ({"type": "status", "status": "failed", "error": "provider said 400: [/bold] bad request"},
     "status failed: provider said 400: [/bold] bad request"),
    ({"type": "usage_limit", "error": "429 usage limit", "until": "2030-01-01T06:00:00+00:00", "parked": True},
     "usage limit: 429 usage limit; parked until 2030-01-01T06:00:00+00:00"),
    ({"type": "stuck", "signature": "bash: make", "count": 4, "step_back": 1, "action": "review"},
     "stuck: 4 repeats without progress (bash: make); step-back 1, next: review"),
    ({"type": "interrupted_call", "turn": 7, "usage": {"input_tokens": 1200, "output_tokens": 80}, "estimated": True},
     "interrupted call (turn 7): cut off by a crash, counted as ~1,200 input + ~80 output tokens (estimated)"),
    ({"type": "brand_new", "detail": "[/x] \x1b[2J"}, 'event brand_new {"detail": "[/x] \\u001b[2J"}'),
]


@pytest.mark.parametrize("payload, line", EVENTS, ids=[e[0]["type"] for e in EVENTS])
def test_each_event_shows_its_fields(capsys, payload, line):
    render_event("event", payload)
    out = capsys.readouterr().out
    assert out == line + "\n"


def test_status_running_and_the_objective_are_not_repeated(capsys):
    render_event("event", {"type": "status", "status": "running"})
    render_event("user", {"text": "the objective", "why": "objective"})
    assert capsys.readouterr().out == ""


def test_steering_is_labelled_as_the_users(capsys):
    render_event("user", {"text": "[user steering message] use [b]uv[/b]", "why": "steering", "verbatim": "use [b]uv[/b]"})
    assert capsys.readouterr().out == "steering (you) use [b]uv[/b]\n"


def test_terminal_escapes_in_tool_output_are_made_visible(capsys):
    render_event("tool_result", {"tool_call_id": "t1", "content": "a\x1b[2Jb\x07", "is_error": False})
    assert capsys.readouterr().out == "  ← a\\x1b[2Jb\\x07\n"


def test_a_display_fault_is_reported_not_raised(capsys):
    render_event("assistant", {"no": "message"})  # a payload shape the display does not know
    err = capsys.readouterr().err
    assert "cannot display a assistant step: KeyError" in err


@pytest.mark.docker
def test_retries_and_a_failed_check_show_live(tmp_path, workspace):
    """A real goal: an overloaded provider answers on the second attempt, the first completion fails its check."""
    db = tmp_path / "e.db"
    script = Script([
        Reply(error=SimError(status=529, message="Overloaded [/x]", retry_after=0.2)),
        Reply(text="Claiming too early.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "s"})]),
        Reply(text="Fixing.", tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
        Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "s"})]),
    ])
    with Simulator(script) as sim:
        r = run_cli(goal_env(db, COLUMNS="250"), "goal", "fix it", "--workspace", str(workspace), "--check", CHECK,
                    "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "provider retry: HTTP 529: " in out and "Overloaded [/x]" in out and "next attempt 2/" in out, out
    assert "provider retried 1 failed attempt(s) before answering: HTTP 529" in out
    assert f"check `{CHECK}` failed (exit 1)" in out and f"check `{CHECK}` passed" in out
    assert sqlite3.connect(db).execute("select status from goals").fetchone()[0] == "succeeded"
