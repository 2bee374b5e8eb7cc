"""`tenax goal --json` / `tenax resume --json`: a real goal (a `tenax` process, the simulator over real
HTTP, a Docker sandbox, SQLite) streams its journal as jsonl lines of the export's schema on stdout,
nothing else there, and exits with the documented code for its status."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from importlib import resources

import pytest
from goalproc import CHECK, OBJECTIVE, goal_env
from jsonschema_subset import errors

from tenax.cli import EXIT_CODES
from tenax.store import open_store
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker

SCHEMA = json.loads(resources.files("tenax.export").joinpath("transcript.schema.json").read_text())


def tenax(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenax.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def goal_args(workspace, sim, *extra: str) -> list[str]:
    return ["goal", OBJECTIVE, "--workspace", str(workspace), "--check", CHECK, "--model",
            "anthropic:claude-sonnet-4-6", "--base-url", sim.url, "--json", *extra]


def parse(stdout: str) -> list[dict]:
    lines = [json.loads(line) for line in stdout.splitlines()]  # every line is JSON, nothing else on stdout
    for i, obj in enumerate(lines):
        assert not errors(obj, SCHEMA), (i, errors(obj, SCHEMA), json.dumps(obj)[:300])
    return lines


def steps(lines: list[dict]) -> list[tuple[str, dict]]:
    return [(x["kind"], x["payload"]) for x in lines if x["type"] == "step"]


def test_json_stream_of_a_goal_that_succeeds_after_a_failed_check(workspace, tmp_path):
    script = Script([
        Reply(text="Done already?", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "nothing"})]),
        Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "echo fixed > status.txt"})]),
        Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "wrote fixed"})]),
    ])
    with Simulator(script) as sim:
        r = tenax(*goal_args(workspace, sim), env=goal_env(tmp_path / "t.db"))
    assert r.returncode == EXIT_CODES["succeeded"] == 0, r.stderr
    lines = parse(r.stdout)
    assert lines[0]["type"] == "goal" and lines[0]["status"] == "pending"
    assert lines[-1]["type"] == "goal" and lines[-1]["status"] == "succeeded" and lines[-1]["turns"] == 3
    gid = lines[0]["id"]
    assert f"goal {gid} started" in r.stderr and "succeeded" in r.stderr  # the human lines went to stderr
    assert "modified status.txt" in r.stderr and f"tenax export {gid}" in r.stderr  # the summary too (no git here)
    kinds = [k for k, _ in steps(lines)]
    assert kinds.count("assistant") == 3 and kinds.count("request") == 3 and "tool_result" in kinds
    checks = [p["passed"] for k, p in steps(lines) if k == "event" and p.get("type") == "check"]
    assert checks == [False, True]
    # the stream is the journal: same steps, same order, no gaps or repeats
    store = open_store(f"sqlite:///{tmp_path / 't.db'}")
    main = store.sessions_for_goal(gid)[0]
    assert [(x["session_id"], x["seq"]) for x in lines if x["type"] == "step"] == \
        [(main.id, s.seq) for s in store.steps(main.id)]
    store.close()


def test_json_exit_codes_for_budget_resume_and_bad_input(workspace, tmp_path):
    env = goal_env(tmp_path / "t.db")
    script = Script([
        Reply(tool_calls=[ToolCall(name="read_file", arguments={"path": "status.txt"})]),
        Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
        Reply(tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "fixed"})]),
    ])
    with Simulator(script) as sim:
        r = tenax(*goal_args(workspace, sim, "--max-turns", "1"), env=env)
        assert r.returncode == EXIT_CODES["budget_exhausted"] == 3, r.stderr
        lines = parse(r.stdout)
        assert lines[-1]["status"] == "budget_exhausted"
        gid = lines[0]["id"]
        r2 = tenax("resume", gid, "--max-turns", "10", "--json", env=env)
    assert r2.returncode == 0, r2.stderr
    again = parse(r2.stdout)
    assert again[0]["type"] == "goal" and again[-1]["status"] == "succeeded"
    # on resume the journal so far comes first: the earlier run's steps, then the new ones, each once
    seqs = [x["seq"] for x in again if x["type"] == "step"]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] > max(x["seq"] for x in lines if x["type"] == "step")

    bad = tenax("goal", OBJECTIVE, "--workspace", str(workspace), "--max-usd", "nan", "--json", env=env)
    assert bad.returncode == EXIT_CODES["bad input"] == 2
    assert bad.stdout == "" and "--max-usd" in bad.stderr and "Traceback" not in bad.stderr


def test_json_stop_by_signal_exits_130_with_a_complete_stream(workspace, tmp_path):
    script = Script([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "sleep 120"})])])
    with Simulator(script) as sim:
        proc = subprocess.Popen([sys.executable, "-m", "tenax.cli", *goal_args(workspace, sim)],
                                env=goal_env(tmp_path / "t.db"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        out = []
        for line in proc.stdout:  # read the stream live until the tool is running
            out.append(line)
            if '"kind": "tool_started"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CODES["stopped"] == 130, err
    lines = parse("".join(out) + rest)
    assert lines[-1]["type"] == "goal" and lines[-1]["status"] == "stopped"
    assert ("event", "stopped") == next((k, p["status"]) for k, p in reversed(steps(lines)) if p.get("type") == "status")
    assert "resume with: tenax resume" in err


def test_stream_of_a_rich_run_has_every_step_of_every_session_once(workspace, store, monkeypatch):
    """Sub-agents journal without calling on_event: their steps still stream, each once, and the
    stream holds exactly the export's sessions and steps (redacted the same way)."""
    from richrun import ENV_SECRET, GOAL_SECRET, rich_run

    from tenax.export.stream import JsonStream
    from tenax.export.transcript import to_jsonl

    out: list[str] = []
    holder: dict[str, JsonStream] = {}

    def on_event(kind, payload):  # the goal exists only once rich_run created it
        if "s" not in holder:
            gid = store.list_goals(limit=1)[0].id
            holder["s"] = JsonStream(store, gid, out.append)
            holder["s"].start()
        holder["s"](kind, payload)

    gid = rich_run(store, workspace, monkeypatch, on_event=on_event)
    holder["s"].finish()
    lines = parse("".join(out))
    exported = [json.loads(x) for x in to_jsonl(store, gid)]

    def keyed(objs, t):
        return sorted(json.dumps(o, sort_keys=True) for o in objs if o["type"] == t)

    assert keyed(lines, "step") == keyed(exported, "step")  # each step of each session, once
    assert {o["id"] for o in lines if o["type"] == "session"} == {o["id"] for o in exported if o["type"] == "session"}
    assert len({o["session_id"] for o in lines if o["type"] == "step"}) == 2  # main and the sub-agent
    assert [o for o in lines if o["type"] == "agent"][-1]["status"] == exported[1]["status"]
    assert ENV_SECRET not in "".join(out) and GOAL_SECRET not in "".join(out)


def test_json_failed_goal_exits_1(workspace, tmp_path):
    from tenax.testing import SimError

    script = Script([Reply(error=SimError(status=400, message="messages.0.content: unexpected field 'bogus'"))])
    with Simulator(script) as sim:
        r = tenax(*goal_args(workspace, sim), env=goal_env(tmp_path / "t.db"))
    assert r.returncode == EXIT_CODES["failed"] == 1, r.stderr
    lines = parse(r.stdout)
    assert lines[-1]["status"] == "failed" and "unexpected field" in lines[-1]["error"]
    assert "why: model call failed" in r.stderr


def test_json_stuck_goal_exits_4(workspace, tmp_path):
    wrong = [ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixd\n"}),
             ToolCall(name="complete_goal", arguments={"summary": "fixed"})]
    with Simulator(Script([Reply(tool_calls=wrong) for _ in range(20)])) as sim:
        r = tenax(*goal_args(workspace, sim, "--stuck-after", "2", "--step-backs", "0", "--max-turns", "20"),
                  env=goal_env(tmp_path / "t.db"))
    assert r.returncode == EXIT_CODES["stuck"] == 4, r.stderr
    lines = parse(r.stdout)
    assert lines[-1]["status"] == "stuck" and lines[-1]["turns"] < 20
    assert [p["action"] for k, p in steps(lines) if p.get("type") == "stuck"][-1] == "end"


def test_json_paused_goal_exits_130(workspace, tmp_path):
    env = goal_env(tmp_path / "t.db")
    script = Script([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "sleep 4"})]),
                     Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "sleep 60"})])])
    with Simulator(script) as sim:
        proc = subprocess.Popen([sys.executable, "-m", "tenax.cli", *goal_args(workspace, sim)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = []
        for line in proc.stdout:
            out.append(line)
            if '"kind": "tool_started"' in line:
                break
        paused = tenax("pause", json.loads(out[0])["id"], env=env)
        assert paused.returncode == 0, paused.stderr
        rest, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CODES["paused"] == 130, err
    lines = parse("".join(out) + rest)
    assert lines[-1]["status"] == "paused" and lines[-1]["turns"] == 1


def test_json_with_bg_is_refused_and_queues_nothing(workspace, tmp_path):
    env = goal_env(tmp_path / "t.db")
    r = tenax("goal", OBJECTIVE, "--workspace", str(workspace), "--check", CHECK, "--bg", "--json", env=env)
    assert r.returncode == EXIT_CODES["bad input"] and r.stdout == ""
    assert "--json" in r.stderr and "--bg" in r.stderr and "Traceback" not in r.stderr
    assert "no goals yet" in tenax("ls", env=env).stdout
