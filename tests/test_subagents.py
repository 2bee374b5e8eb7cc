"""Sub-agents end to end: the simulator over real HTTP, real Docker sandboxes, real SQLite."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from goalproc import CHECK, KEY, goal_env, kill_9_when, start_goal_process, wait_for

from tenax.config import load_settings
from tenax.core.errors import ConfigError
from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.goal.prompts import SYSTEM_PROMPT
from tenax.store import open_store
from tenax.subagents.roles import BUILTIN_ROLES, load_roles
from tenax.testing import Reply, Script, Simulator, ToolCall


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") or json.dumps(b.get("content", "")) for b in content)


def first_user(body: dict) -> str:
    return _text(body["messages"][0]["content"])


def is_main(req) -> bool:
    return req.system.startswith(SYSTEM_PROMPT[:40])


class Router:
    """Main session replies from a Script; each sub-agent from a Script picked by a marker in its task."""

    def __init__(self, main: list[Reply], subs: dict[str, list[Reply]]):
        self.main = Script(main)
        self.subs = {k: Script(v) for k, v in subs.items()}

    def __call__(self, req):
        if is_main(req):
            return self.main(req)
        task = first_user(req.body)
        for marker, script in self.subs.items():
            if marker in task:
                return script(req)
        return Reply(text=f"no script for sub-agent task {task[:80]!r}")


def main_requests(sim):
    return [r for r in sim.requests if r.body.get("system") and is_main_body(r.body)]


def is_main_body(body) -> bool:
    system = body.get("system")
    text = system if isinstance(system, str) else "".join(b.get("text", "") for b in system)
    return text.startswith(SYSTEM_PROMPT[:40])


def sub_requests(sim, marker):
    return [r for r in sim.requests if not is_main_body(r.body) and marker in first_user(r.body)]


def start(store, sim, workspace, *, check=CHECK, budgets=None) -> str:
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=check,
                      model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=budgets or Budgets(max_turns=15))
    return create_goal(store, req, api_key=KEY)


def tool_results(body) -> list[dict]:
    last = body["messages"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


# -- roles (no docker) ------------------------------------------------------------------------

def test_role_files_load_and_bad_ones_name_the_file(tmp_path):
    agents = tmp_path / ".tenax" / "agents"
    agents.mkdir(parents=True)
    (agents / "tester.md").write_text(
        "---\nname: tester\ndescription: runs tests\nmodel: anthropic:claude-haiku-4-5\n"
        "tools: [bash, read_file]\nmax_turns: 7\n---\nRun the tests and report failures.\n")
    roles = load_roles(tmp_path)
    assert set(BUILTIN_ROLES) <= set(roles)
    t = roles["tester"]
    assert t.tools == ("bash", "read_file") and t.max_turns == 7 and t.model == "anthropic:claude-haiku-4-5"
    assert "Run the tests" in t.system
    assert "bash" not in roles["explorer"].tools and "write_file" not in roles["reviewer"].tools
    (agents / "broken.md").write_text("---\nname: broken\ntools: [rm_rf]\n---\nbody\n")
    with pytest.raises(ConfigError, match=r"broken\.md.*unknown tool\(s\) rm_rf"):
        load_roles(tmp_path)
    (agents / "broken.md").write_text("no front matter here\n")
    with pytest.raises(ConfigError, match=r"broken\.md.*front matter"):
        load_roles(tmp_path)


# -- end to end ---------------------------------------------------------------------------------



@pytest.mark.docker
def test_parallel_background_agents_return_summaries_only_on_their_own_models(store, workspace):
    router = Router(
        main=[
            Reply(text="Delegating.", tool_calls=[
                call("spawn_agent", task="alpha: look around", role="worker", background=True,
                     model="anthropic:claude-haiku-4-5"),
                call("spawn_agent", task="beta: look around", role="worker", background=True),
            ]),
            Reply(tool_calls=[call("wait_agents")]),
            Reply(tool_calls=[call("list_agents")]),
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={
            m: [Reply(tool_calls=[call("bash", command=f"sleep 2; echo {m}-transcript-only")]),
                Reply(tool_calls=[call("report", outcome="success", findings=f"{m}-finding",
                                       files_changed=[], failed_commands=[], open_questions=[])])]
            for m in ("alpha", "beta")
        },
    )
    with Simulator(router) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    alpha, beta = sub_requests(sim, "alpha:"), sub_requests(sim, "beta:")
    assert len(alpha) == 2 and len(beta) == 2
    # parallel: each agent's first request came before the other's second (both slept 2s in between)
    idx = {id(r): i for i, r in enumerate(sim.requests)}
    assert idx[id(alpha[0])] < idx[id(beta[1])] and idx[id(beta[0])] < idx[id(alpha[1])]
    # its own model; fresh context: only the task, never the parent's history
    assert {r.body["model"] for r in alpha} == {"claude-haiku-4-5"}
    assert {r.body["model"] for r in beta} == {"claude-sonnet-4-6"}
    assert len(alpha[0].body["messages"]) == 1 and "Make status.txt" not in json.dumps(alpha[0].body)
    mains = main_requests(sim)
    after_wait = json.dumps(tool_results(mains[2].body))
    assert "alpha-finding" in after_wait and "beta-finding" in after_wait
    whole_main = json.dumps([r.body for r in mains])
    assert "transcript-only" not in whole_main  # the sub-agents' tool output never reaches the parent
    agents = store.agents_for_goal(gid)
    assert [(a.task.split(":")[0], a.status, a.model) for a in agents] == [
        ("alpha", "done", "anthropic:claude-haiku-4-5"), ("beta", "done", "anthropic:claude-sonnet-4-6")]
    assert all(a.summary["reported"] and a.cost_usd > 0 and a.background for a in agents)
    listed = json.loads(tool_results(mains[3].body)[0]["content"])
    assert {a["agent_id"] for a in listed} == {a.id for a in agents}
    # own session rows, parented to the main session; usage counted in the goal totals
    main_sid = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0].id
    subs = [s for s in store.sessions_for_goal(gid) if s.role == "subagent"]
    assert len(subs) == 2 and all(s.parent_session_id == main_sid for s in subs)
    goal = store.get_goal(gid)
    usage = store.usage_for_goal(gid)
    assert {u.model for u in usage} == {"claude-haiku-4-5", "claude-sonnet-4-6"}
    assert goal.cost_usd == pytest.approx(sum(u.cost_usd for u in usage))
    assert goal.turns == 5  # sub-agent calls add tokens and cost, not main turns
    url = str(store.engine.url)
    out = subprocess.run([sys.executable, "-m", "tenax.cli", "show", gid], env={**os.environ, "TENAX_DB": url, "COLUMNS": "250"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "sub-agents" in out.stdout
    for a in agents:
        assert a.id in out.stdout and f"${a.cost_usd:.4f}" in out.stdout


@pytest.mark.docker
def test_parent_cache_still_hits_after_a_foreground_sub_agent(store, workspace):
    router = Router(
        main=[
            Reply(text="Look first.", tool_calls=[call("read_file", path="status.txt")]),
            Reply(tool_calls=[call("spawn_agent", task="gamma: check the file", role="explorer")]),
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={"gamma": [Reply(tool_calls=[call("read_file", path="status.txt")]),
                        Reply(tool_calls=[call("report", outcome="success", findings="gamma says broken")])]},
    )
    with Simulator(router, min_cacheable_tokens=256) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    mains = main_requests(sim)
    spawn_turn, next_turn = mains[1], mains[2]
    assert "gamma says broken" in json.dumps(tool_results(next_turn.body))
    written = spawn_turn.usage["cache_read_input_tokens"] + spawn_turn.usage["cache_creation_input_tokens"]
    assert written > 0
    # the sub-agent's requests in between did not disturb the parent's prefix
    assert next_turn.usage["cache_read_input_tokens"] >= written
    assert len(sub_requests(sim, "gamma")) == 2
    # the transcript nests the sub-agent's session right under the spawn_agent call's result
    from tenax.export.transcript import to_markdown

    md = to_markdown(store, gid)
    [agent] = store.agents_for_goal(gid)
    spawn_at = md.index("→ `spawn_agent`")
    nested_at = md.index(f"### session {agent.session_id} (subagent")
    write_at = md.index("→ `write_file`")
    assert spawn_at < nested_at < write_at and md.count(f"session {agent.session_id}") == 1


@pytest.mark.docker
def test_depth_limit_and_report_fallback(store, workspace):
    router = Router(
        main=[
            Reply(tool_calls=[call("spawn_agent", task="level1: delegate further", role="worker")]),
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={
            "level1": [Reply(tool_calls=[call("spawn_agent", task="level2: go deeper", role="worker")]),
                       Reply(tool_calls=[call("report", outcome="success", findings="level1 done")])],
            "level2": [Reply(tool_calls=[call("spawn_agent", task="level3: too deep", role="worker")]),
                       Reply(text="I wrote something.", tool_calls=[call("write_file", path="l2.txt", content="x")]),
                       Reply(text="All finished, no report from me."),
                       Reply(text="Still not reporting.")],
        },
    )
    with Simulator(router) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    l2 = sub_requests(sim, "level2:")
    refusal = tool_results(l2[1].body)[0]
    assert refusal["is_error"] and "depth limit" in json.dumps(refusal)
    assert not sub_requests(sim, "level3")
    assert "call report now" in json.dumps(l2[3].body["messages"][-1]).lower()  # asked once...
    assert len(l2) == 4  # ...and only once
    agents = {a.task.split(":")[0]: a for a in store.agents_for_goal(gid)}
    assert set(agents) == {"level1", "level2"}
    assert agents["level2"].depth == 2 and agents["level2"].parent_session_id == agents["level1"].session_id
    s2 = agents["level2"].summary
    assert s2["reported"] is False and s2["outcome"] == "no_report" and s2["files_changed"] == ["l2.txt"]
    assert "Still not reporting." in s2["findings"]
    assert agents["level1"].summary["findings"] == "level1 done"


@pytest.mark.docker
def test_concurrency_limit_refuses_the_fifth(store, workspace):
    tasks = [f"job{i}: wait a bit" for i in range(5)]
    router = Router(
        main=[
            Reply(tool_calls=[call("spawn_agent", task=t, background=True) for t in tasks]),
            Reply(tool_calls=[call("spawn_agent", task=tasks[0], background=True)]),
            Reply(tool_calls=[call("wait_agents", timeout=60)]),
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={f"job{i}": [Reply(tool_calls=[call("bash", command="sleep 2")]),
                          Reply(tool_calls=[call("report", outcome="success", findings=f"job{i} ok")])]
              for i in range(5)},
    )
    with Simulator(router) as sim:
        gid = start(store, sim, workspace)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    mains = main_requests(sim)
    results = tool_results(mains[1].body)
    assert [r.get("is_error", False) for r in results] == [False, False, False, False, True]
    assert "concurrency limit" in json.dumps(results[4])
    dup = json.dumps(tool_results(mains[2].body))
    assert "already running on this exact task" in dup and "No duplicate" in dup
    assert len(store.agents_for_goal(gid)) == 4 and not sub_requests(sim, "job4")


@pytest.mark.docker
def test_judge_sub_agent_fails_then_passes(store, workspace):
    review = "Judge whether this goal is met"
    verdicts = Script([
        Reply(tool_calls=[call("report", outcome="failed", findings="status.txt still says broken", passed=False)]),
        Reply(tool_calls=[call("read_file", path="status.txt")]),
        Reply(tool_calls=[call("report", outcome="success", findings="status.txt says fixed", passed=True)]),
    ])
    main = Script([
        Reply(tool_calls=[call("complete_goal", summary="claimed too early")]),
        Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(tool_calls=[call("complete_goal", summary="fixed now")]),
    ])

    def policy(req):
        return main(req) if is_main(req) else verdicts(req) if review in first_user(req.body) else Reply(text="?")

    settings = load_settings().model_copy(update={"judge_model": "anthropic:claude-haiku-4-5"})
    with Simulator(policy) as sim:
        gid = start(store, sim, workspace, check=None)
        assert run_goal(store, gid, api_key=KEY, settings=settings) == "succeeded"
    mains = main_requests(sim)
    rejected = tool_results(mains[1].body)[0]
    assert rejected["is_error"] and "still says broken" in json.dumps(rejected)
    reviewers = [a for a in store.agents_for_goal(gid) if a.role == "reviewer"]
    assert [a.summary["passed"] for a in reviewers] == [False, True]
    assert {a.model for a in reviewers} == {"anthropic:claude-haiku-4-5"}
    rev_reqs = [r for r in sim.requests if review in first_user(r.body)]
    assert {r.body["model"] for r in rev_reqs} == {"claude-haiku-4-5"}
    assert "fixed" in first_user(rev_reqs[-1].body)  # the evidence (workspace state) is in its task
    assert {t["name"] for t in rev_reqs[0].body["tools"]} == {"read_file", "list_files", "grep", "report"}


@pytest.mark.docker
def test_kill_9_then_resume_continues_the_sub_agent_without_respawning(tmp_path, workspace):
    db = tmp_path / "tenax.db"
    task = "delta: slow investigation"
    router = Router(
        main=[
            Reply(tool_calls=[call("spawn_agent", task=task, background=True)]),
            Reply(tool_calls=[call("wait_agents")]),
            # after the crash the lead "forgets" and re-issues the same spawn
            Reply(tool_calls=[call("spawn_agent", task=task, background=True)]),
            Reply(tool_calls=[call("wait_agents")]),
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={"delta": [Reply(tool_calls=[call("bash", command="echo run >> sub_runs.txt; sleep 60")]),
                        Reply(tool_calls=[call("bash", command="sleep 3")]),
                        Reply(tool_calls=[call("report", outcome="success", findings="delta finding")])]},
    )
    with Simulator(router) as sim:
        env = goal_env(db)
        proc = start_goal_process(workspace, sim.url, env)
        peek = open_store(f"sqlite:///{db}") if wait_for(db.exists) else None

        def waiting() -> bool:
            goals = peek.list_goals() if peek else []
            if not goals or not (workspace / "sub_runs.txt").exists():
                return False
            main = [s for s in peek.sessions_for_goal(goals[0].id) if s.role == "main"]
            return bool(main) and any(s.payload.get("name") == "wait_agents"
                                      for s in peek.steps(main[0].id, kinds=["tool_started"]))
        kill_9_when(proc, waiting)
        peek.close()
        store = open_store(f"sqlite:///{db}")
        gid = store.list_goals()[0].id
        [agent] = store.agents_for_goal(gid)
        assert agent.status == "running"  # the ledger kept it
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    assert (workspace / "sub_runs.txt").read_text() == "run\n"  # its interrupted command was not repeated
    [agent] = store.agents_for_goal(gid)  # still exactly one: resumed, not re-spawned
    assert agent.status == "done" and agent.summary["findings"] == "delta finding"
    assert len([s for s in store.sessions_for_goal(gid) if s.role == "subagent"]) == 1
    delta = sub_requests(sim, "delta")
    assert len(delta) == 3  # no sub-agent model call was repeated
    assert "interrupted" in json.dumps(tool_results(delta[1].body))
    mains = main_requests(sim)
    dup = json.dumps(tool_results(mains[3].body))
    assert agent.id in dup and "No duplicate" in dup
    assert "delta finding" in json.dumps(tool_results(mains[4].body))
    store.close()


# -- isolation "copy": a private copy of the workspace in a second, equally hardened container ----

HARDENING = ("CapDrop", "SecurityOpt", "PidsLimit", "Memory", "MemorySwap", "NanoCpus", "Init", "NetworkMode",
             "Privileged", "CapAdd", "Devices", "ReadonlyRootfs", "IpcMode", "PidMode")


def _tree(root: Path) -> dict[str, tuple[str, object]]:
    """Every entry under ``root``: symlinks by target (never followed), files by content."""
    out: dict[str, tuple[str, object]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_file():
            out[rel] = ("file", p.read_bytes())
        else:
            out[rel] = ("dir", None)
    return out


def _goal_containers(gid: str) -> list:
    import docker

    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": ["tenax=1", f"tenax.goal={gid}"]})
    finally:
        client.close()


@pytest.fixture
def copy_workspace(tmp_path: Path, workspace: Path, monkeypatch) -> Path:
    """The workspace plus a subdirectory and a symlink to a host file outside it."""
    (tmp_path / "host_secret.txt").write_text("HOST-SECRET-OUTSIDE-WORKSPACE\n")
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("print('original')\n")
    (workspace / "leak").symlink_to(tmp_path / "host_secret.txt")
    monkeypatch.setenv("TENAX_COPY_DIR", str(tmp_path / "copies"))
    return workspace


@pytest.mark.docker
def test_copy_isolation_runs_in_a_second_hardened_container_and_leaves_the_parent_untouched(
        store, copy_workspace, tmp_path):
    ws = copy_workspace
    before = _tree(ws)
    seen: dict[str, object] = {}
    state: dict[str, str] = {}

    def snapshot(req):  # while the sub-agent is alive: what runs for this goal, and how
        seen["containers"] = [c.attrs for c in _goal_containers(state["gid"])]
        return Reply(tool_calls=[call("report", outcome="success", findings="rewrote status.txt speculatively",
                                      files_changed=["status.txt", "new.txt"])])

    first = Script([Reply(tool_calls=[call("bash", command=(
        "echo host=$(cat /etc/hostname); echo speculative > status.txt; echo new > new.txt; "
        "rm src/app.py; cat leak; echo link=$(readlink leak); true"))])])
    turns = {"n": 0}

    def sub_policy(req):
        turns["n"] += 1
        return first(req) if turns["n"] == 1 else snapshot(req)

    router = Router(
        main=[
            Reply(tool_calls=[call("spawn_agent", task="copy1: try a risky rewrite", role="worker", isolation="copy")]),
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={},
    )
    router.subs = {"copy1": sub_policy}

    with Simulator(router) as sim:
        gid = start(store, sim, ws)
        state["gid"] = gid
        assert run_goal(store, gid, api_key=KEY) == "succeeded"

    [agent] = store.agents_for_goal(gid)
    assert agent.isolation == "copy" and agent.status == "done"
    copy = tmp_path / "copies" / gid / agent.id

    # two containers while it ran: the goal's and the agent's, told apart by name and label
    by_name = {a["Name"].lstrip("/"): a for a in seen["containers"]}
    main_c, agent_c = by_name[f"tenax-{gid}"], by_name[f"tenax-{gid}-agent-{agent.id}"]
    assert len(by_name) == 2 and main_c["Id"] != agent_c["Id"]
    assert agent_c["Config"]["Labels"]["tenax.agent"] == agent.id and "tenax.agent" not in main_c["Config"]["Labels"]
    # the agent's only mount is its copy; the main one mounts the real workspace
    # (besides the exec server's socket directory, mounted read-only at /run/tenax)
    def mounts(c):
        other = [(m["Destination"], m["RW"]) for m in c["Mounts"] if m["Destination"] != "/workspace"]
        assert other == [("/run/tenax", False)]
        return [(m["Source"], m["Destination"], m["RW"]) for m in c["Mounts"] if m["Destination"] == "/workspace"]
    assert mounts(agent_c) == [(str(copy), "/workspace", True)]
    assert mounts(main_c) == [(str(ws.resolve()), "/workspace", True)]
    # same hardening as the main container (same DockerSandbox)
    for key in HARDENING:
        assert agent_c["HostConfig"].get(key) == main_c["HostConfig"].get(key), key
    assert agent_c["HostConfig"]["CapDrop"] == ["ALL"] and "no-new-privileges" in agent_c["HostConfig"]["SecurityOpt"]
    assert agent_c["HostConfig"]["NetworkMode"] == "none" and not agent_c["HostConfig"]["Privileged"]
    assert agent_c["Config"]["User"] == main_c["Config"]["User"] and agent_c["Config"]["User"] not in ("", "0", "root")
    assert agent_c["Config"]["Env"] == main_c["Config"]["Env"]

    # its commands ran in its own container, on the copy, and saw nothing of the host through the symlink
    out = json.dumps(tool_results(sub_requests(sim, "copy1")[1].body))
    assert f"host={agent_c['Config']['Hostname']}" in out and agent_c["Config"]["Hostname"] != main_c["Config"]["Hostname"]
    assert "HOST-SECRET" not in out and f"link={tmp_path / 'host_secret.txt'}" in out
    assert "HOST-SECRET" not in json.dumps([r.body for r in sim.requests])
    assert (copy / "leak").is_symlink() and os.readlink(copy / "leak") == str(tmp_path / "host_secret.txt")

    # the copy holds the speculative work; the parent's workspace has none of it
    assert (copy / "status.txt").read_text() == "speculative\n" and (copy / "new.txt").read_text() == "new\n"
    assert not (copy / "src" / "app.py").exists()
    after = _tree(ws)
    assert after.pop("status.txt") == ("file", b"fixed\n")  # the parent's own write
    before.pop("status.txt")
    assert after == before

    # what the parent saw: only the summary, saying where the copy is and what changed in it
    seen_by_main = tool_results(main_requests(sim)[1].body)[0]
    assert not seen_by_main.get("is_error")
    summary = json.loads(_text(seen_by_main["content"]))["summary"]
    assert summary["workspace_copy"] == str(copy)
    assert summary["copy_changes"] == {"added": ["new.txt"], "modified": ["status.txt"], "deleted": ["src/app.py"]}
    assert "echo speculative" not in json.dumps([r.body for r in main_requests(sim)])  # no transcript
    assert agent.summary["workspace_copy"] == str(copy) and agent.summary["copy_changes"] == summary["copy_changes"]

    # the goal is over: no container of it is left (the copy itself stays for the user to inspect)
    assert _goal_containers(gid) == []
    assert copy.is_dir()


@pytest.mark.docker
def test_kill_9_then_resume_reattaches_to_the_same_copy_and_container(tmp_path, workspace, monkeypatch):
    db, copies = tmp_path / "tenax.db", tmp_path / "copies"
    # the resuming process has another copy root: the copy's journaled location must win
    monkeypatch.setenv("TENAX_COPY_DIR", str(tmp_path / "other-copies"))
    task = "epsilon: speculative rewrite"
    router = Router(
        main=[
            Reply(tool_calls=[call("spawn_agent", task=task, background=True, isolation="copy")]),
            Reply(tool_calls=[call("wait_agents")]),
            Reply(tool_calls=[call("wait_agents")]),  # after the crash
            Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
            Reply(tool_calls=[call("complete_goal", summary="done")]),
        ],
        subs={"epsilon": [
            Reply(tool_calls=[call("bash", command=(
                "echo in-container-state > /tmp/state; cat /etc/hostname >> hosts.txt; echo run >> runs.txt; sleep 60"))]),
            Reply(tool_calls=[call("bash", command="cat /etc/hostname >> hosts.txt; echo state=$(cat /tmp/state)")]),
            Reply(tool_calls=[call("report", outcome="success", findings="epsilon finding", files_changed=["hosts.txt"])]),
        ]},
    )
    with Simulator(router) as sim:
        env = goal_env(db, TENAX_COPY_DIR=str(copies))
        proc = start_goal_process(workspace, sim.url, env)
        peek = open_store(f"sqlite:///{db}") if wait_for(db.exists) else None

        def waiting() -> bool:
            goals = peek.list_goals() if peek else []
            if not goals or not list(copies.glob("*/*/runs.txt")):
                return False
            main = [s for s in peek.sessions_for_goal(goals[0].id) if s.role == "main"]
            return bool(main) and any(s.payload.get("name") == "wait_agents"
                                      for s in peek.steps(main[0].id, kinds=["tool_started"]))
        kill_9_when(proc, waiting)
        peek.close()
        store = open_store(f"sqlite:///{db}")
        gid = store.list_goals()[0].id
        [agent] = store.agents_for_goal(gid)
        assert agent.status == "running" and agent.isolation == "copy"
        [crashed] = [c for c in _goal_containers(gid) if c.labels.get("tenax.agent") == agent.id]
        copy = copies / gid / agent.id
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    # one copy, one container: the resumed agent worked where it had stopped
    assert [p.name for p in (copies / gid).iterdir() if p.is_dir()] == [agent.id]
    assert not (tmp_path / "other-copies").exists()
    hosts = (copy / "hosts.txt").read_text().split()
    assert hosts == [crashed.attrs["Config"]["Hostname"]] * 2
    assert (copy / "runs.txt").read_text() == "run\n"  # the interrupted command was not re-run
    epsilon = sub_requests(sim, "epsilon")
    assert len(epsilon) == 3 and "interrupted" in json.dumps(tool_results(epsilon[1].body))
    assert "state=in-container-state" in json.dumps(tool_results(epsilon[2].body))
    [agent] = store.agents_for_goal(gid)
    assert agent.status == "done" and agent.summary["workspace_copy"] == str(copy)
    assert agent.summary["copy_changes"]["added"] == ["hosts.txt", "runs.txt"]
    assert not (workspace / "hosts.txt").exists() and not (workspace / "runs.txt").exists()
    assert _goal_containers(gid) == []
    store.close()


@pytest.mark.docker
def test_goal_end_sweep_removes_only_that_goals_agent_containers(tmp_path):
    from tenax.sandbox import DockerSandbox
    from tenax.subagents import remove_agent_containers

    ws = tmp_path / "w"
    ws.mkdir()
    gid, other = f"sweep{os.getpid()}", f"keep{os.getpid()}"
    main = DockerSandbox(ws, goal_id=gid)
    agent = DockerSandbox(ws, goal_id=gid, name_suffix="-agent-a1", labels={"tenax.agent": "a1"})
    foreign = DockerSandbox(ws, goal_id=other, name_suffix="-agent-a2", labels={"tenax.agent": "a2"})
    try:
        for sb in (main, agent, foreign):
            sb.start()
        assert remove_agent_containers(gid) == 1
        assert [c.name for c in _goal_containers(gid)] == [main.name]
        assert [c.name for c in _goal_containers(other)] == [foreign.name]
    finally:
        for sb in (main, agent, foreign):
            sb.stop()


# -- apply_agent_changes: a copy agent's speculative work brought back into the real workspace ----

def _main_policy(steps):
    """A main-session policy from a list of functions ``(req, state) -> Reply``, one per turn;
    ``state["results"]`` collects the tool results each turn's request carried."""
    state: dict = {"results": []}

    def policy(req):
        state["results"].append(req.last_tool_results)
        n = len(state["results"]) - 1
        return steps[min(n, len(steps) - 1)](req, state)

    return policy, state


def _result(results: list[dict], i: int = 0) -> dict:
    assert not results[i]["is_error"], results[i]["content"]
    return json.loads(results[i]["content"])


@pytest.mark.docker
def test_apply_agent_changes_brings_a_copy_agents_work_back_and_never_overwrites_or_escapes(
        store, workspace, tmp_path, monkeypatch):
    from tenax.sandbox.image import SANDBOX_UID

    monkeypatch.setenv("TENAX_COPY_DIR", str(tmp_path / "copies"))
    ws = workspace
    (ws / "notes.txt").write_text("v1\n")
    (ws / "src").mkdir()
    (ws / "src" / "app.py").write_text("print('old')\n")
    (ws / "tool.sh").write_text("#!/bin/sh\necho old\n")
    os.chmod(ws / "tool.sh", 0o644)
    outside = tmp_path / "outside"
    outside.mkdir()

    sub = Script([
        Reply(tool_calls=[call("bash", command=(
            "echo fixed > status.txt; echo 'agent notes' > notes.txt; rm src/app.py; "
            "mkdir -p pkg/sub && echo 'VALUE = 2' > pkg/sub/mod.py; "
            "printf '#!/bin/sh\\necho new-tool\\n' > tool.sh && chmod 755 tool.sh; "
            "ln -s /etc/passwd evil; ln -s ../status.txt pkg/status_link; "
            "mkdir linkdir && echo planted > linkdir/f.txt"))]),
        Reply(tool_calls=[call("report", outcome="success", findings="fixed status.txt in the copy")]),
    ])

    def spawn(req, st):
        return Reply(tool_calls=[call("spawn_agent", task="apply1: fix status.txt in a copy", isolation="copy")])

    def parent_edits(req, st):  # after the copy was made: a conflicting edit and a symlinked dir
        st["spawn"] = _result(req.last_tool_results)
        st["aid"] = st["spawn"]["agent_id"]
        return Reply(tool_calls=[call("write_file", path="notes.txt", content="parent notes\n"),
                                 call("bash", command=f"ln -s {outside} linkdir")])

    def apply_some(req, st):
        return Reply(tool_calls=[call("apply_agent_changes", id=st["aid"], paths=["pkg/sub", "nothing/here"])])

    def apply_all(req, st):
        return Reply(tool_calls=[call("apply_agent_changes", id=st["aid"])])

    def use_it(req, st):  # the sandbox user can run and write what was applied
        return Reply(tool_calls=[call("bash", command="echo 'EXTRA = 3' >> pkg/sub/mod.py && ./tool.sh && cat pkg/status_link")])

    def done(req, st):
        return Reply(tool_calls=[call("complete_goal", summary="applied the copy's fix")])

    main, state = _main_policy([spawn, parent_edits, apply_some, apply_all, apply_all, use_it, done])
    router = Router(main=[], subs={})
    router.main, router.subs = main, {"apply1": sub}

    with Simulator(router) as sim:
        gid = start(store, sim, ws)
        assert run_goal(store, gid, api_key=KEY) == "succeeded"  # the check passes on the applied status.txt

    [agent] = store.agents_for_goal(gid)
    copy = tmp_path / "copies" / gid / agent.id
    assert "apply_agent_changes" in state["spawn"]["summary"]["copy_note"]
    # a new main session has the tool in its frozen list, and the model was offered it
    main_session = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    assert "apply_agent_changes" in [t["name"] for t in main_session.tools]
    assert "apply_agent_changes" in [t["name"] for t in main_requests(sim)[0].body["tools"]]

    results = state["results"]
    first = _result(results[3])  # paths limited to pkg/sub
    assert first["applied"] == [{"path": "pkg/sub/mod.py", "change": "added"}]
    assert first["unmatched_paths"] == ["nothing/here"] and "nothing/here" in first["note"]

    second = _result(results[4])  # everything else
    assert sorted((a["path"], a["change"]) for a in second["applied"]) == [
        ("pkg/status_link", "added"), ("src/app.py", "deleted"), ("status.txt", "modified"), ("tool.sh", "modified")]
    assert second["already_applied"] == ["pkg/sub/mod.py"]
    assert [(c["path"], c["change"]) for c in second["conflicts"]] == [("notes.txt", "modified")]
    assert "changed in your workspace since the copy was made" in second["conflicts"][0]["reason"]
    refused = {r["path"]: r["reason"] for r in second["refused"]}
    assert set(refused) == {"evil", "linkdir/f.txt"}
    assert "/etc/passwd" in refused["evil"] and "outside the workspace" in refused["evil"]
    assert "symlink" in refused["linkdir/f.txt"]

    third = _result(results[5])  # idempotent: nothing left
    assert third["applied"] == [] and "Nothing left to apply" in third["note"]
    assert sorted(third["already_applied"]) == ["pkg/status_link", "pkg/sub/mod.py", "src/app.py", "status.txt", "tool.sh"]
    assert [c["path"] for c in third["conflicts"]] == ["notes.txt"]

    used = results[6][0]
    assert not used["is_error"] and "new-tool" in used["content"] and "fixed" in used["content"]

    # the workspace: the copy's work, the parent's conflicting edit kept, nothing escaped
    assert (ws / "status.txt").read_text() == "fixed\n"
    assert (ws / "notes.txt").read_text() == "parent notes\n"
    assert not (ws / "src" / "app.py").exists()
    assert (ws / "pkg" / "sub" / "mod.py").read_text() == "VALUE = 2\nEXTRA = 3\n"
    assert os.stat(ws / "tool.sh").st_mode & 0o777 == 0o755
    assert (ws / "pkg" / "status_link").is_symlink() and os.readlink(ws / "pkg" / "status_link") == "../status.txt"
    assert not os.path.lexists(ws / "evil")
    assert list(outside.iterdir()) == [] and os.readlink(ws / "linkdir") == str(outside)
    # owned like the rest of the (root-owned, so handed to the sandbox user) workspace
    for p in ("pkg", "pkg/sub", "pkg/sub/mod.py", "status.txt", "tool.sh", "pkg/status_link"):
        assert os.lstat(ws / p).st_uid == SANDBOX_UID, p
    # the copy itself is unchanged by applying
    assert (copy / "notes.txt").read_text() == "agent notes\n"

    # journaled: one event per apply, with what was applied
    events = [s.payload for s in store.steps(main_session.id, kinds=["event"])
              if s.payload.get("type") == "agent_changes_applied"]
    assert len(events) == 3 and all(e["agent_id"] == agent.id for e in events)
    assert events[0]["applied"] == first["applied"] and events[0]["paths"] == ["pkg/sub", "nothing/here"]
    assert events[1]["applied"] == second["applied"] and events[1]["conflicts"] == second["conflicts"]
    assert events[2]["applied"] == []


@pytest.mark.docker
def test_apply_agent_changes_refuses_unknown_shared_and_running_agents(store, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TENAX_COPY_DIR", str(tmp_path / "copies"))
    release = threading.Event()

    def slow(req):  # the copy agent is still thinking while the lead tries to apply its work
        release.wait(60)
        return Reply(tool_calls=[call("report", outcome="success", findings="nothing to change")])

    shared = Script([Reply(tool_calls=[call("report", outcome="success", findings="looked around")])])

    def spawn(req, st):
        return Reply(tool_calls=[call("spawn_agent", task="shared1: look around", role="explorer"),
                                 call("spawn_agent", task="slow1: think in a copy", isolation="copy", background=True)])

    def try_apply(req, st):
        st["shared"] = _result(req.last_tool_results, 0)["agent_id"]
        bg = req.last_tool_results[1]
        assert not bg["is_error"], bg["content"]
        st["slow"] = re.search(r'wait_agents\(\["(\w+)"\]\)', bg["content"]).group(1)
        return Reply(tool_calls=[call("apply_agent_changes", id="nope"),
                                 call("apply_agent_changes", id=st["shared"]),
                                 call("apply_agent_changes", id=st["slow"]),
                                 call("apply_agent_changes", id=st["slow"], paths=["../etc/passwd"]),
                                 call("apply_agent_changes", id=st["slow"], paths=["/etc"])])

    def wait(req, st):
        release.set()
        return Reply(tool_calls=[call("wait_agents", ids=[st["slow"]], timeout=60)])

    def apply_finished(req, st):
        return Reply(tool_calls=[call("apply_agent_changes", id=st["slow"])])

    def done(req, st):
        return Reply(tool_calls=[call("complete_goal", summary="done")])

    main, state = _main_policy([spawn, try_apply, wait, apply_finished, done])
    router = Router(main=[], subs={})
    router.main, router.subs = main, {"shared1": shared, "slow1": slow}

    try:
        with Simulator(router) as sim:
            gid = start(store, sim, workspace, check="true")
            assert run_goal(store, gid, api_key=KEY) == "succeeded"
    finally:
        release.set()

    errors = state["results"][2]
    assert all(r["is_error"] for r in errors), errors
    unknown, shared_err, running, dotdot, absolute = (r["content"] for r in errors)
    assert "unknown agent id 'nope'" in unknown and state["slow"] in unknown
    assert f"agent {state['shared']} worked in your shared workspace" in shared_err
    assert f"agent {state['slow']} is still running" in running and "wait_agents" in running
    assert "'..' is not allowed" in dotdot
    assert "relative to the workspace" in absolute

    finished = _result(state["results"][4])
    assert finished["applied"] == [] and finished["conflicts"] == [] and finished["refused"] == []
    assert "Nothing left to apply" in finished["note"]
    assert (workspace / "status.txt").read_text() == "broken\n"
