"""What `tenax goal` shows a person: the end-of-run summary, and under a terminal (tmux) the live status
line. Real `tenax` processes, the simulator over real HTTP, a Docker sandbox, SQLite."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from goalproc import CHECK, OBJECTIVE, goal_env, wait_for

from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker


def git(ws, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=ws, check=True,
                   capture_output=True)


def test_end_summary_in_a_git_workspace(workspace, tmp_path):
    (workspace / "notes.txt").write_text("a\nb\n")
    git(workspace, "init", "-q")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "start")
    script = Script([
        # the agent commits its first change: the diff is against the goal's start, not HEAD
        Reply(tool_calls=[ToolCall(name="bash", arguments={
            "command": "echo c >> notes.txt && git -c safe.directory='*' -c user.name=a -c user.email=a@a "
                       "commit -qam wip; echo fixed > status.txt; echo new > added.txt"})]),
        Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "status fixed"})]),
    ])
    with Simulator(script) as sim:
        r = subprocess.run([sys.executable, "-m", "tenax.cli", "goal", OBJECTIVE, "--workspace", str(workspace),
                            "--check", CHECK, "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url],
                           env={**goal_env(tmp_path / "t.db"), "COLUMNS": "200"}, capture_output=True, text=True,
                           timeout=300)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "why: status fixed" in out
    assert f"last check: check `{CHECK}` passed" in out
    assert re.search(r"notes\.txt +\| 1 \+\n", out) and re.search(r"status\.txt +\| 2 \+-", out)
    assert "added.txt (new, untracked)" in out and "2 files changed" in out
    assert "cost per model" in out and "claude-sonnet-4-6" in out and "cache saved" in out
    assert "cost per agent" in out and "main" in out
    assert "export the transcript: tenax export" in out


def slow(script: Script, seconds: float):
    """The script's replies, each after `seconds` of model "thinking"."""
    def policy(req):
        time.sleep(seconds)
        return script(req)
    return policy


def test_status_line_and_summary_under_tmux(workspace, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    script = Script([
        Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "sleep 6; echo fixed > status.txt"})]),
        Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "status fixed"})]),
    ])
    sock = f"tenax-test-{os.getpid()}"
    env = goal_env(tmp_path / "t.db")
    run = tmp_path / "run.sh"
    with Simulator(slow(script, 4)) as sim:
        cmd = [sys.executable, "-m", "tenax.cli", "goal", OBJECTIVE, "--workspace", str(workspace), "--check", CHECK,
               "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url, "--max-usd", "5"]
        run.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.isidentifier()) +
                       f"{shlex.join(cmd)}\necho EXITED $?\nsleep 600\n")
        tmux = ["tmux", "-L", sock]
        subprocess.run([*tmux, "new-session", "-d", "-x", "160", "-y", "50", "sh", str(run)], check=True)
        try:
            def screen() -> str:
                return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout

            seen: list[str] = []

            def shows(*want: str) -> bool:
                seen.append(screen())
                return all(re.search(w, seen[-1]) for w in want)

            # while the model thinks, then while the tool runs: the line under the transcript
            assert wait_for(lambda: shows(r"turn 1 · \d+ s · [\d,]+ tokens · \d+% cached · \$[\d.]+ of \$5 · "
                                          r"thinking… \d+ s"), 60), seen[-1]
            assert wait_for(lambda: shows(r"turn 1 · .* · running bash [2-9] s"), 60), seen[-1]
            assert wait_for(lambda: shows(r"turn 2 · .*[1-9][\d,]* tokens · .* · thinking…"), 60), seen[-1]
            assert wait_for(lambda: shows("EXITED 0"), 120), seen[-1]
            final = seen[-1]
            assert "succeeded" in final and "why: status fixed" in final and "cost per model" in final
            assert "export the transcript: tenax export" in final
            assert "thinking…" not in final and "running bash" not in final  # the status line is transient
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_summary_costs_per_agent_add_up(workspace, store, monkeypatch):
    from richrun import rich_run

    from tenax.export.summary import end_summary

    gid = rich_run(store, workspace, monkeypatch)
    s = end_summary(store, gid)
    [agent] = store.agents_for_goal(gid)
    rows = {r[0]: r for r in s.by_agent}
    assert set(rows) == {"main", agent.id} and rows[agent.id][1:4] == [agent.role, agent.model, agent.status]
    usage = store.usage_for_goal(gid)
    cost = {sid: sum(u.cost_usd for u in usage if u.session_id == sid) for sid in {u.session_id for u in usage}}
    assert rows[agent.id][-2] == f"${cost[agent.session_id]:.4f}" and float(rows[agent.id][-2][1:]) > 0
    main = next(x for x in store.sessions_for_goal(gid) if x.role == "main")
    assert rows["main"][-2] == f"${cost[main.id]:.4f}"
    [model_row] = s.by_model
    assert model_row[0] == "claude-sonnet-4-6" and model_row[1] == str(len(usage))
    assert model_row[-2] == f"${store.get_goal(gid).cost_usd:.4f}" and float(model_row[-1][1:]) > 0  # cache saved
    assert s.check == [("check", "bold"), f" `{CHECK}` ", ("passed", "green")]
    assert s.diff == ["modified status.txt"]


def _watched_run(store, workspace, policy, budgets, **run_options) -> tuple[str, str, list[tuple[str, str]]]:
    """Run a goal against the simulator with a status line: (goal id, status, [(step kind, the
    line's text right after that step)])."""
    from goalproc import KEY

    from tenax.app import GoalRequest, create_goal, fan_out, run_goal
    from tenax.export.live import StatusLine

    seen: list[tuple[str, str]] = []
    with Simulator(policy) as sim:
        gid = create_goal(store, GoalRequest(objective=OBJECTIVE, workspace=str(workspace), check=CHECK,
                                             model="anthropic:claude-sonnet-4-6", base_url=sim.url,
                                             budgets=budgets), api_key=KEY)
        line = StatusLine(store, gid)
        status = run_goal(store, gid, api_key=KEY, **run_options,
                          on_event=fan_out(line, lambda kind, p: seen.append((kind, line.text().plain))))
    return gid, status, seen


def test_status_line_follows_a_run_with_a_provider_retry(workspace, store):
    """The line's text after each step of a real run (simulator, sandbox, store): thinking, waiting on
    a 429's retry-after, running a tool, the totals from the store, the budget."""
    from tenax.core.budget import Budgets
    from tenax.harness.retry import RetryPolicy
    from tenax.testing import SimError

    script = Script([
        Reply(error=SimError(status=429, message="rate limited", retry_after=2)),
        Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
        Reply(tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "fixed"})]),
    ])
    gid, status, seen = _watched_run(store, workspace, script, Budgets(max_usd=2),
                                     model_options={"retry": RetryPolicy(max_attempts=3)})
    assert status == "succeeded"

    def first(kind: str) -> str:
        return next(t for k, t in seen if k == kind)

    def last(kind: str) -> str:
        return [t for k, t in seen if k == kind][-1]

    assert re.fullmatch(r"turn 1 · \d+ s · 0 tokens · 0% cached · \$0\.0000 of \$2 · thinking… 0 s", first("request"))
    retry = [t for k, t in seen if "waiting on retry" in t]
    assert retry and re.search(r"^turn 1 · .* · waiting on retry 2 s$", retry[0]), seen
    assert re.search(r"^turn 1 · .* · running write_file 0 s$", first("tool_started")), seen
    goal = store.get_goal(gid)
    total = goal.input_tokens + goal.cache_read_tokens + goal.cache_write_tokens + goal.output_tokens
    assert last("assistant").startswith("turn 2 · ") and f"{total:,} tokens" in last("assistant")
    assert f"${goal.cost_usd:.4f} of $2" in last("assistant") and goal.cost_usd > 0


def test_status_line_counts_running_sub_agents(workspace, store):
    from test_subagents import Router

    from tenax.core.budget import Budgets

    def call(name, **arguments):
        return ToolCall(name=name, arguments=arguments)

    router = Router(main=[
        Reply(tool_calls=[call("spawn_agent", task="delta: look around", role="explorer", background=True)]),
        Reply(tool_calls=[call("bash", command="sleep 1")]),  # the agent is still busy (its tool sleeps 5 s)
        Reply(tool_calls=[call("wait_agents")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ], subs={"delta": [Reply(tool_calls=[call("bash", command="sleep 5")]),
                       Reply(tool_calls=[call("report", outcome="success", findings="nothing")])]})
    _, status, seen = _watched_run(store, workspace, router, Budgets(max_turns=10))
    assert status == "succeeded"
    started = [t for k, t in seen if k == "tool_started"]
    results = [t for k, t in seen if k == "tool_result"]
    # counted from its spawn (the ledger row exists before spawn_agent's result is journaled); how long
    # it then stays running depends on how fast a loaded machine runs its sleep, so that is not checked
    assert results[0].endswith("1 sub-agent(s) running"), results
    assert "sub-agent" not in started[3]  # after wait_agents it has ended
