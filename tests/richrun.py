"""A real run with everything an export must show: a sub-agent, a compaction, a steering message,
a failed check, a long result that gets folded and secrets (an env credential, a goal secret_env
value and a key-shaped string). Shared by the export tests (html, jsonl)."""

from __future__ import annotations

from goalproc import CHECK, KEY
from test_subagents import first_user, is_main

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.compaction import SUMMARY_REQUEST
from tenax.core.budget import Budgets
from tenax.testing import Reply, Script, Simulator, ToolCall

ENV_SECRET = "envsecret-4f9a8b7c6d"
GOAL_SECRET = "hunter2hunter2"
SHAPED_KEY = "sk-ant-api03-" + "Zx9" * 12
STEER = "use <b>printf</b> & [b]not[/b] echo"
SUB_FINDINGS = "gamma says <script>alert(1)</script> broken"
SUMMARY = "HANDOFF <i>summary</i>: spawned gamma, next write the file"


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


class Router:
    def __init__(self) -> None:
        self.main = Script([
            Reply(text=f"Listing; the token is {ENV_SECRET} and the db password {GOAL_SECRET}. <img src=x>",
                  tool_calls=[call("bash", command=f"seq 1 1800; echo {SHAPED_KEY}")]),
            Reply(text="Claiming too early.", tool_calls=[call("complete_goal", summary="early")]),
            Reply(tool_calls=[call("spawn_agent", task="gamma: check the file", role="explorer")]),
            Reply(tool_calls=[call("bash", command="head -c 9000 /dev/zero | tr '\\0' a; echo")]),
            Reply(text="Fixing.", tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(text="Done.", tool_calls=[call("complete_goal", summary="wrote fixed")]),
        ])
        self.sub = Script([Reply(tool_calls=[call("read_file", path="status.txt")]),
                           Reply(tool_calls=[call("report", outcome="success", findings=SUB_FINDINGS)])])

    def __call__(self, req):
        if SUMMARY_REQUEST in req.last_user_text:
            return Reply(text=SUMMARY)
        if is_main(req):
            return self.main(req)
        if "gamma" in first_user(req.body):
            return self.sub(req)
        return Reply(text="no script")


def rich_run(store, workspace, monkeypatch, **run_options) -> str:
    """Run the goal to success (``run_options`` go to run_goal); returns its id. MY_SERVICE_TOKEN is
    set to ENV_SECRET in the env."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_SECRET)
    with Simulator(Router(), min_cacheable_tokens=256) as sim:
        gid = create_goal(store, GoalRequest(
            objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK,
            model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=Budgets(max_turns=20),
            compaction={"window": 12_000, "threshold": 0.5, "keep_turns": 1}), api_key=KEY)
        goal = store.get_goal(gid)
        store.update_goal(gid, config={**(goal.config or {}), "secret_env": {"DB_PASSWORD": GOAL_SECRET}})
        store.push_steering(gid, STEER)
        assert run_goal(store, gid, api_key=KEY, **run_options) == "succeeded"
    return gid
