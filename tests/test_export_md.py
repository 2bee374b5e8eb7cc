"""The md and jsonl exports of a real run: turns with timestamps and per-call usage, steering as the
user's, a failed check, a long result folded with an honest marker, and no secret left in."""

from __future__ import annotations

import json
import re

import pytest
from goalproc import CHECK, KEY, goal_env
from test_cli_markup import run_cli

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.export.transcript import to_jsonl, to_markdown
from tenax.testing import Reply, Script, Simulator, ToolCall

pytestmark = pytest.mark.docker

ENV_SECRET = "envsecret-4f9a8b7c6d"
GOAL_SECRET = "hunter2hunter2"
SHAPED_KEY = "sk-ant-api03-" + "Zx9" * 12
MARKER = re.compile(r"\n\[\.\.\. (\d+) bytes \((\d+) lines\) cut here; the full result is in `tenax export \w+ "
                    r"--format jsonl` \.\.\.\]\n")


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def test_md_and_jsonl_exports(tmp_path, workspace, store, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_SECRET)
    script = Script([
        Reply(text=f"Listing numbers; the token is {ENV_SECRET} and the db password {GOAL_SECRET}.",
              tool_calls=[call("bash", command=f"seq 1 1800; echo {SHAPED_KEY}")]),
        Reply(text="Claiming too early.", tool_calls=[call("complete_goal", summary="early")]),
        Reply(text="Fixing.", tool_calls=[call("write_file", path="status.txt", content="fixed\n")]),
        Reply(text="Done.", tool_calls=[call("complete_goal", summary="wrote fixed")]),
    ])
    with Simulator(script) as sim:
        gid = create_goal(store, GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace),
                                             check=CHECK, model="anthropic:claude-sonnet-4-6", base_url=sim.url),
                          api_key=KEY)
        goal = store.get_goal(gid)
        store.update_goal(gid, config={**(goal.config or {}), "secret_env": {"DB_PASSWORD": GOAL_SECRET}})
        store.push_steering(gid, "use [b]printf[/b], not echo")
        assert run_goal(store, gid, api_key=KEY) == "succeeded"

    md = to_markdown(store, gid)
    # turns, each with a timestamp, and each model call with its usage and cost
    assert re.search(r"^### turn 1 · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", md, re.M)
    assert len(re.findall(r"^\*usage: input [\d,]+ uncached \+ [\d,]+ cache read \+ [\d,]+ cache write, output [\d,]+ · "
                          r"\$\d+\.\d{4} · [\d.]+ s", md, re.M)) == 4
    # steering where the model saw it, labelled as the user's, verbatim
    assert re.search(r"\*\*you \(steering message\)\*\* · [\d: -]+UTC:\n\n```\nuse \[b\]printf\[/b\], not echo\n```", md)
    assert "(steering)" not in md.split("you (steering message)")[0] and "runtime → model** (steering" not in md
    # the failed check, then the passing one, with the check's output
    assert f"*check `{CHECK}` failed (exit 1)* ·" in md and f"*check `{CHECK}` passed* ·" in md
    # the long result folded head + tail; the marker counts exactly what it dropped
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    full = next(st.payload["content"] for st in store.steps(main.id)
                if st.kind == "tool_result" and "1800" in st.payload["content"])
    m = MARKER.search(md)
    assert m, "no fold marker"
    start, end = md.rfind("```\n", 0, m.start()) + 4, md.find("\n```", m.end())
    head, tail = md[start:m.start()], md[m.end():end]
    shown = full.replace(SHAPED_KEY, "[redacted key]")  # the key is in the kept tail, not in what was dropped
    assert shown.startswith(head) and shown.endswith(tail) and len(head) + len(tail) < len(shown)
    assert head.startswith("exit code: 0") and "\n1\n2\n3\n" in head and tail.endswith("1800\n[redacted key]")
    dropped = shown[len(head):len(shown) - len(tail)]
    assert int(m[1]) == len(dropped.encode()) and int(m[2]) == dropped.count("\n")
    # no secret in either format; the named ones say what was redacted
    jsonl = list(to_jsonl(store, gid))
    for text in (md, "\n".join(jsonl)):
        assert ENV_SECRET not in text and GOAL_SECRET not in text and SHAPED_KEY not in text
        assert "[redacted MY_SERVICE_TOKEN]" in text and "[redacted DB_PASSWORD]" in text and "[redacted key]" in text
    assert all(json.loads(line) for line in jsonl)  # still valid JSON after redaction
    # the full result stays in the jsonl, where the marker points
    assert any("\\n1799\\n1800\\n" in line for line in jsonl)

    # and through the CLI, to a file
    out = tmp_path / "run.md"
    r = run_cli({**goal_env(tmp_path / "tenax.db"), "MY_SERVICE_TOKEN": ENV_SECRET}, "export", gid, "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert ENV_SECRET not in text and GOAL_SECRET not in text and "you (steering message)" in text
