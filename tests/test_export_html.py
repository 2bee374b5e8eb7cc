"""The html export: read back with a real HTML parser (every untrusted text is data, never markup),
and a 2,000-turn run loaded in headless Chromium (started by the test) without console errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from goalproc import goal_env
from richrun import ENV_SECRET, GOAL_SECRET, SHAPED_KEY, STEER, SUB_FINDINGS, SUMMARY, rich_run
from test_cli_markup import run_cli

from tenax.core.messages import Message, TextPart, ToolCallPart, ToolResultPart, Usage
from tenax.core.protocols import UsageEntry
from tenax.export.html import to_html

ARTIFACTS = Path(__file__).resolve().parent.parent / ".pytest-artifacts"
VOID = {"meta", "br", "img", "input", "hr", "link", "rect"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Node | None"):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find(self, tag: str, cls: str | None = None) -> list["Node"]:
        return [n for n in self.iter() if n.tag == tag and (cls is None or cls in (n.attrs.get("class") or "").split())]

    def ancestors(self):
        n = self.parent
        while n is not None:
            yield n
            n = n.parent


class Tree(HTMLParser):
    """A strict tree builder: every element closed, in order."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)
        self.feed(html)
        self.close()
        assert self.cur is self.root, f"unclosed <{self.cur.tag}>"

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        assert self.cur.tag == tag, f"</{tag}> closes <{self.cur.tag}>"
        self.cur = self.cur.parent

    def handle_data(self, data):
        self.cur.children.append(data)


@pytest.mark.docker
def test_html_export_of_a_rich_run(tmp_path, workspace, store, monkeypatch):
    gid = rich_run(store, workspace, monkeypatch)
    html = to_html(store, gid)
    root = Tree(html).root
    text = root.text()

    # untrusted text is data: the model's <img>, the steering <b>, the sub-agent's <script> are text
    assert not root.find("img")
    assert len(root.find("script")) == 1 and "alert(1)" not in root.find("script")[0].text()
    assert "<img src=x>" in text and STEER in text and SUB_FINDINGS in text and SUMMARY in text
    assert not [n for n in root.find("b") if "printf" in n.text()] and not root.find("i")

    # header: totals, check history (failed then passed), and the chart
    goal = store.get_goal(gid)
    totals = {tr.children[0].text(): tr.children[1].text() for tr in root.find("tr")}
    assert totals["status"] == "succeeded" and totals["turns"] == str(goal.turns)
    assert re.fullmatch(r"\d+%", totals["cached share"]) and totals["cost"] == f"${goal.cost_usd:.4f}"
    assert totals["duration"].endswith(" s") and "cache read" in totals["tokens"]
    history = root.find("ol")[0]
    assert [li.attrs["class"] for li in history.find("li")] == ["fail", "pass"]
    assert "failed (exit 1)" in history.find("li")[0].text()
    [svg] = root.find("svg")
    assert len(svg.find("polyline")) == 2 and "cached share" in svg.find("title")[0].text()
    points = svg.find("polyline")[0].attrs["points"].split()
    assert len(points) == len([u for u in store.usage_for_goal(gid) if u.session_id == _main(store, gid)])

    # steering where the model saw it, labelled as the user's
    [steer] = root.find("div", "steer")
    assert "you (steering message)" in steer.text() and steer.find("pre")[0].text() == STEER

    # the failed check in its turn, with its output
    fails = [d for d in root.find("div", "fail") if "check" in d.text()]
    assert len(fails) == 1 and "failed (exit 1)" in fails[0].text()

    # the compaction, with the summary that replaced the archived turns, folded
    [comp] = root.find("div", "compaction")
    assert "compaction" in comp.find("summary")[0].text() and SUMMARY in comp.text()
    assert comp.find("template")  # its body is lazy

    # the sub-agent nested in the turn of the spawn_agent call, after that call, its body lazy
    [agent] = root.find("details", "agent")
    turn = next(a for a in agent.ancestors() if a.tag == "section")
    calls = [d.find("summary")[0].text() for d in turn.find("details", "call")]
    assert any("spawn_agent" in c for c in calls)
    assert agent.find("summary")[0].text().startswith("sub-agent ") and agent.children[1].tag == "template"
    assert "report" in agent.text() and len([s for s in agent.find("section", "turn") if s.find("h3")]) == 2

    # the long result folded head + tail, with an honest marker pointing at the jsonl
    long = [d for d in root.find("details", "result") if "bytes folded" in d.find("summary")[0].text()]
    assert long
    shown = long[0].find("pre")[0].text()
    m = re.search(r"\n\[\.\.\. (\d+) bytes \((\d+) lines\) cut here; the full result is in `tenax export \w+ "
                  r"--format jsonl` \.\.\.\]\n", shown)
    assert m and shown.startswith("exit code: 0") and shown.endswith("1800\n[redacted key]")
    assert f"{int(m[1]):,} bytes folded" in long[0].find("summary")[0].text()

    # no secret anywhere; the named ones say what was redacted
    for secret in (ENV_SECRET, GOAL_SECRET, SHAPED_KEY):
        assert secret not in html
    for label in ("[redacted MY_SERVICE_TOKEN]", "[redacted DB_PASSWORD]", "[redacted key]"):
        assert label in text

    # and through the CLI, to a file
    out = tmp_path / "run.html"
    r = run_cli({**goal_env(tmp_path / "tenax.db"), "MY_SERVICE_TOKEN": ENV_SECRET},
                "export", gid, "--format", "html", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith("<!DOCTYPE html>") and ENV_SECRET not in out.read_text()


def _main(store, gid) -> str:
    return next(s.id for s in store.sessions_for_goal(gid) if s.role == "main")


def journal_of_many_turns(store, turns: int) -> str:
    """A goal journal written straight through append_step: each turn a model call with text, a
    bash call and its result (a long one every 10th turn), a check event every 100th."""
    gid = store.create_goal(objective="a long night <b>", model="anthropic:claude-sonnet-4-6", workspace="/w",
                            check_cmd="make test")
    sid = store.create_session(gid, model="anthropic:claude-sonnet-4-6", system="s")
    for n in range(1, turns + 1):
        store.append_step(sid, "request", {"turn": n, "messages": 2 * n})
        usage = Usage(input_tokens=200, cache_read_tokens=1000 + n * 10, cache_write_tokens=300, output_tokens=80)
        msg = Message(role="assistant", parts=[TextPart(text=f"turn {n}: trying <thing> & more"),
                                               ToolCallPart(id=f"c{n}", name="bash", arguments={"command": "make test"})])
        store.append_step(sid, "assistant", {"message": msg.model_dump(), "usage": usage.model_dump()},
                          usage=UsageEntry(provider="anthropic", model="claude-sonnet-4-6", usage=usage,
                                           cost_usd=0.001 + (n % 7) * 0.0002, duration_s=1.5, turns=1))
        content = "exit code: 1\n" + ("line of output\n" * (900 if n % 10 == 0 else 5))
        store.append_step(sid, "tool_result", ToolResultPart(tool_call_id=f"c{n}", content=content).model_dump())
        if n % 100 == 0:
            store.append_step(sid, "event", {"type": "check", "command": "make test", "passed": False,
                                             "exit_code": 2, "output_tail": "FAILED test_x"})
    return gid


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_2000_turn_html_loads_in_headless_chromium_quickly(tmp_path, store):
    browser = chromium()
    if browser is None:
        pytest.skip("Debian chromium is not installed and could not be (make browser, as root: apt-get install -y chromium)")
    gid = journal_of_many_turns(store, 2000)
    t0 = time.monotonic()
    html = to_html(store, gid)
    export_s = time.monotonic() - t0
    page = tmp_path / "run.html"
    page.write_text(html)
    Tree(html)  # well-formed
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "html_export_2000_turns.png"
    shot.unlink(missing_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    # load time: the page reports its own DOMContentLoaded -> load timings into the DOM chromium dumps
    timing = page.with_name("timed.html")
    timing.write_text(html.replace("<head>", "<head><script>onerror=function(m){document.title='ERROR '+m}</script>", 1)
                      .replace("</body>", "<script>addEventListener('load',function(){setTimeout(function(){"
                               "if(document.title.startsWith('ERROR'))return;var t=performance.timing;"
                               "document.title='LOADED '+(t.loadEventEnd-t.navigationStart)+' '+"
                               "document.querySelectorAll('section.turn').length},0)})</script></body>"))
    r = subprocess.run([browser, *flags, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                        "--dump-dom", timing.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"<title>LOADED (\d+) (\d+)</title>", r.stdout)
    assert m, f"the page did not finish loading: {r.stdout[:300]!r}"
    load_ms = int(m[1])
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    assert load_ms < 3000, f"loaded in {load_ms} ms"
    # lazy: the live DOM holds the last block's turns, not all 2,000 built out
    assert 0 < int(m[2]) <= 60
    r = subprocess.run([browser, *flags, "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]
    print(json.dumps({"export_s": round(export_s, 2), "html_bytes": len(html), "load_ms": load_ms, "screenshot": str(shot)}))
