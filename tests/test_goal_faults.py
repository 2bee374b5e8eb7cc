"""Faults a whole goal must survive, end to end: real SDKs over HTTP to the simulator, a real
Docker sandbox, a real SQLite file."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from goalproc import CHECK, KEY

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.core.messages import Message
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def start(store, sim, workspace, check=CHECK) -> str:
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=check,
                      model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=Budgets(max_turns=12))
    return create_goal(store, req, api_key=KEY)


def main_steps(store, gid):
    main = next(s for s in store.sessions_for_goal(gid) if s.role == "main")
    return store.steps(main.id)


def results_of(store, gid) -> list[dict]:
    return [s.payload for s in main_steps(store, gid) if s.kind == "tool_result"]


def test_a_tool_call_cut_off_by_max_tokens_is_answered_not_run(store, workspace):
    """A write_file whose JSON was cut by the output limit is never "repaired" and run: the model
    is told it was cut off, and goes on."""
    huge = "fixed\n" + "x" * 400_000  # far past the model's output limit: the call's JSON is cut
    script = Script([
        Reply(text="Writing it all at once.", tool_calls=[call("write_file", path="status.txt", content=huge)]),
        Reply(text="Smaller.", tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    first = results_of(store, gid)[0]
    assert first["is_error"] and "cut off by max_tokens" in first["content"] and "not run" in first["content"]
    assistant = next(s for s in main_steps(store, gid) if s.kind == "assistant")
    assert assistant.payload["stop_reason"] == "max_tokens"
    assert Message.model_validate(assistant.payload["message"]).tool_calls[0].arguments == {}
    assert (workspace / "status.txt").read_text() == "fixed\n"


def _container(gid: str) -> str:
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=tenax.goal={gid}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] if out else ""


def _when(path, action, timeout=60.0):
    def watch():
        end = time.time() + timeout
        while time.time() < end:
            if path.exists():
                action()
                return
            time.sleep(0.05)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("how", ["rm", "kill"])
def test_the_container_dies_mid_tool_and_at_check_time_and_the_goal_still_succeeds(store, workspace, how):
    """The container is removed (or killed) while a command runs, and again while the check runs.
    The tool result says what happened, a fresh container serves the same workspace, the check is
    run again there, and the goal succeeds."""
    check = "touch /workspace/.checking; sleep 1; " + CHECK
    script = Script([
        Reply(tool_calls=[call("bash", command="touch /workspace/.in-tool; sleep 30")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed")]),
    ])
    box: dict = {}

    def murder():
        cid = _container(box["gid"])
        cmd = ["docker", "rm", "-f", cid] if how == "rm" else ["docker", "kill", cid]
        subprocess.run(cmd, capture_output=True, check=True)

    with Simulator(script) as sim:
        gid = box["gid"] = start(store, sim, workspace, check=check)
        watchers = [_when(workspace / ".in-tool", murder), _when(workspace / ".checking", murder)]
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
        for w in watchers:
            w.join(5)
    first = results_of(store, gid)[0]
    assert "container" in first["content"].lower() and ("removed" in first["content"] or "killed" in first["content"])
    checks = [s.payload for s in main_steps(store, gid) if s.kind == "event" and s.payload.get("type") == "check"]
    assert len(checks) == 1 and checks[0]["passed"]  # one verification: re-run inside it, in the fresh container
    assert "[sandbox]" in checks[0]["output_tail"] and "container" in checks[0]["output_tail"]
    assert len(sim.requests) == 3  # nothing was asked of the model twice


def test_a_model_that_never_calls_a_tool_is_reported_not_looped_on(store, workspace):
    """A server that drops the tools from the prompt looks like a model that only talks: after a few
    such turns the goal fails saying so, instead of burning the night on continuations."""
    with Simulator(Script([Reply(text="I would fix it like this: ...")] * 30)) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "failed"
    goal = store.get_goal(gid)
    assert "without ever calling a tool" in goal.error and "dropping the tools" in goal.error
    assert goal.turns == 5 and len(sim.requests) == 5


def test_a_container_left_by_a_runner_killed_after_its_goal_ended_goes_at_the_next_start(store, workspace, tmp_path):
    """A runner killed between a goal's final status and its container's removal left the container
    running for good (the goal never runs again). The next goal started on the store removes it; a
    stopped goal (resumable) keeps its own."""
    import docker

    from tenax.app import store_labels
    from tenax.sandbox import DockerSandbox, cleanup_by_label

    client = docker.from_env()
    script = Script([Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
                     Reply(tool_calls=[call("complete_goal", summary="fixed")])])
    with Simulator(script) as sim:
        left = {}
        for name, status in (("ended", "succeeded"), ("stopped", "stopped")):
            ws = tmp_path / name
            ws.mkdir()
            gid = start(store, sim, ws)
            store.set_status(gid, "running")
            store.set_status(gid, status)
            DockerSandbox(ws, goal_id=gid, labels=store_labels(store)).start()  # what its dead runner left
            left[name] = gid
        try:
            assert all(client.containers.list(all=True, filters={"label": f"tenax.goal={g}"}) for g in left.values())
            gid = start(store, sim, workspace)
            assert run_goal(store, gid, api_key=KEY) == "succeeded"
            assert not client.containers.list(all=True, filters={"label": f"tenax.goal={left['ended']}"})
            assert client.containers.list(all=True, filters={"label": f"tenax.goal={left['stopped']}"})
        finally:
            for g in left.values():
                cleanup_by_label(client, goal_id=g)
            client.close()


def test_an_ended_goal_left_to_linger_runs_nothing_and_its_container_goes_after(store, workspace):
    """``remove_after_s`` (the daemon's workers): the container of an ended goal is removed later, so
    its removal does not slow the next goal's start; what ran in it (a background job here) is killed
    at once, not left running meanwhile."""
    import docker

    client = docker.from_env()
    script = Script([Reply(tool_calls=[call("start_job", command="sleep 300")]),
                     Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
                     Reply(tool_calls=[call("complete_goal", summary="fixed")])])
    with Simulator(script) as sim:
        gid = start(store, sim, workspace)
        ended: dict[str, float] = {}
        runner = threading.Thread(target=lambda: ended.setdefault(run_goal(store, gid, api_key=KEY, remove_after_s=4),
                                                                  time.monotonic()))
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while store.get_goal(gid).status != "succeeded" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.get_goal(gid).status == "succeeded"
            time.sleep(1)  # the kill is at once; the removal 4 s after the end
            (box,) = client.containers.list(filters={"label": f"tenax.goal={gid}"})
            processes = [p[-1] for p in box.top(ps_args="-eo pid,args")["Processes"]]
            assert not any("sleep 300" in p for p in processes), processes
        finally:
            runner.join(30)
        assert list(ended) == ["succeeded"]
        assert not client.containers.list(all=True, filters={"label": f"tenax.goal={gid}"})
        client.close()


def test_goals_run_one_after_another_in_one_process_leak_no_descriptors(store, tmp_path):
    """Each engine's start froze the heap (gc.freeze), so the garbage of every goal before it, its
    Docker client's connections with it, was never collected: about ten descriptors per goal, until
    the full suite's process passed 1024 (seen in CI). Only the first start of a process freezes."""
    import gc
    import os

    def fds() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    counts = []
    for n in range(4):
        ws = tmp_path / f"ws{n}"
        ws.mkdir()
        (ws / "status.txt").write_text("broken\n")
        script = Script([Reply(tool_calls=[call("bash", command="true")]),
                         Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
                         Reply(tool_calls=[call("complete_goal", summary="fixed")])])
        with Simulator(script) as sim:
            assert run_goal(store, start(store, sim, ws), api_key=KEY) == "succeeded"
        counts.append(fds())
    assert counts[-1] - counts[1] <= 2, counts
