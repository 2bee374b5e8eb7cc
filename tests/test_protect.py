"""Protected acceptance end to end: a real container, the simulator, a real store."""

from __future__ import annotations

import json

import pytest
from goalproc import KEY
from test_subagents import _text, call

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.core.errors import ConfigError
from tenax.goal.protect import check_scripts
from tenax.testing import Reply, Script, Simulator

ORIGINAL = "grep -qx fixed status.txt\n"


@pytest.fixture
def tested(workspace):
    (workspace / "tests").mkdir()
    (workspace / "tests" / "check.sh").write_text(ORIGINAL)
    (workspace / "tests" / "data.txt").write_text("expected: fixed\n")
    return workspace


def request(sim, ws, **extra) -> GoalRequest:
    return GoalRequest(objective="Make status.txt say fixed.", workspace=str(ws), check="sh tests/check.sh",
                       model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=Budgets(max_turns=12), **extra)


def test_the_checks_own_script_is_protected_but_not_the_data_it_mentions(tmp_path):
    (tmp_path / "tests").mkdir()
    for f in ("status.txt", "run.sh", "tests/t.py", "tests/check.sh"):
        (tmp_path / f).write_text("x")
    cases = {"grep -qx fixed status.txt": set(), "sh tests/check.sh": {"tests/check.sh"},
             "./run.sh&&grep x status.txt": {"run.sh"}, "FOO=1 python3 -u tests/t.py": {"tests/t.py"},
             "cd /workspace; bash /workspace/run.sh": {"run.sh"}, "timeout 5 ./run.sh": {"run.sh"},
             "sh ../outside.sh": set()}
    for cmd, want in cases.items():
        assert check_scripts(str(tmp_path), cmd) == want, cmd


@pytest.mark.docker
def test_editing_protected_files_is_refused_and_the_check_runs_the_original(store, tested):
    def tamper_then_complete(req):  # the host changes the check script behind the agent's back
        (tested / "tests" / "check.sh").write_text("exit 0\n")
        return Reply(tool_calls=[call("complete_goal", summary="tests pass")])

    script = Script([
        Reply(tool_calls=[call("write_file", path="tests/check.sh", content="exit 0\n")]),
        Reply(tool_calls=[call("edit_file", path="/workspace/tests/data.txt", old="fixed", new="broken")]),
        Reply(tool_calls=[call("bash", command="echo 'exit 0' > tests/check.sh; ln -sf /etc/passwd tests/data.txt")]),
    ])
    done = Script([Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
                   Reply(tool_calls=[call("complete_goal", summary="fixed")])])
    seen = []

    def policy(req):
        seen.append(req)
        if len(seen) <= 3:
            return script(req)
        return tamper_then_complete(req) if len(seen) == 4 else done(req)

    with Simulator(policy) as sim:
        gid = create_goal(store, request(sim, tested, protect=["tests/*.txt"]), api_key=KEY)
        assert set(store.get_goal(gid).config["protect"]["files"]) == {"tests/check.sh", "tests/data.txt"}
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    results = [json.dumps(r.body["messages"][-1]["content"]) for r in sim.requests[1:5]]
    assert "REFUSED" in results[0] and "REFUSED" in results[1]
    assert "REFUSED" in results[2] and "restored" in results[2]
    assert "NOT complete" in results[3]  # the tampered script was restored before the check ran
    assert (tested / "tests" / "check.sh").read_text() == ORIGINAL
    assert (tested / "tests" / "data.txt").read_text() == "expected: fixed\n"
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    got = [(e.payload["path"], e.payload["tool"], e.payload["action"]) for e in store.steps(main.id)
           if e.kind == "event" and e.payload.get("type") == "protect_violation"]
    assert got == [("tests/check.sh", "write_file", "refused"), ("tests/data.txt", "edit_file", "refused"),
                   ("tests/check.sh", "bash", "restored"), ("tests/data.txt", "bash", "restored"),
                   ("tests/check.sh", "check", "restored")]
    checks = [e.payload for e in store.steps(main.id) if e.kind == "event" and e.payload.get("type") == "check"]
    assert [c["passed"] for c in checks] == [False, True]


@pytest.mark.docker
def test_a_protect_glob_matching_nothing_or_escaping_is_refused_before_a_goal_exists(store, tested):
    with Simulator(Script([])) as sim:
        for bad, words in (["nothing/*.py"], "matches no file"), (["../x"], "without '..'"):
            with pytest.raises(ConfigError, match=words):
                create_goal(store, request(sim, tested, protect=bad), api_key=KEY)
    assert store.list_goals() == []
