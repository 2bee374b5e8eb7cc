"""Token economics: tenax's requests stay cache-stable for a whole goal run.

The 30-turn tests drive the REAL goal loop (create_goal/run_goal: real SDKs over HTTP to the
simulator, a real Docker sandbox, a real SQLite store) and read the cache usage the simulator
computed with each provider's prefix rules. The bench tests run ``bench/cache_economics.py`` at a
small scale (a real engine run with a real compaction and a real sub-agent, then the naive
replay of the same calls) and check that its naive baseline really misses the cache while tenax's
layout hits, and that the bench counts exactly what the store recorded.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.store import open_store
from tenax.testing import Reply, Script, Simulator, ToolCall

KEY = "sim-test-key"
TURNS = 30
MODELS = {"anthropic": "anthropic:claude-sonnet-4-6", "openai": "openai:gpt-5.5", "openai-chat": "openai-chat:qwen3"}
OPENAI_MIN, OPENAI_STEP = 1024, 128


def _source_file(i: int, rng: random.Random) -> str:
    """A realistic source-like file of 200..4000 tokens (the simulator counts ceil(chars/4))."""
    target_chars = rng.randint(200, 4000) * 4
    lines, size, n = [], 0, 0
    while size < target_chars:
        n += 1
        line = f"def handler_{i}_{n}(request, retries={rng.randint(0, 9)}):  # {rng.getrandbits(48):012x}"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    rng = random.Random(30)
    for i in range(TURNS - 2):
        (ws / f"mod_{i:02d}.py").write_text(_source_file(i, rng))
    (ws / "status.txt").write_text("broken\n")
    return ws


def _script() -> Script:
    replies = []
    for i in range(TURNS - 2):
        if i % 7 == 3:  # some bash turns too: output shapes differ from read_file's
            call = ToolCall(name="bash", arguments={"command": f"cat mod_{i:02d}.py | head -c 6000"})
        else:
            call = ToolCall(name="read_file", arguments={"path": f"mod_{i:02d}.py"})
        replies.append(Reply(text=f"Reading module {i}.", tool_calls=[call]))
    replies.append(Reply(text="Fixing.", tool_calls=[ToolCall(name="write_file",
                                                               arguments={"path": "status.txt", "content": "fixed\n"})]))
    replies.append(Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "fixed"})]))
    assert len(replies) == TURNS
    return Script(replies)


def _prefix_bytes(provider: str, body: dict) -> str:
    """The frozen part of a request: tools + system prompt, as sent."""
    if provider == "anthropic":
        return json.dumps([body.get("tools"), body.get("system")])
    if provider == "openai":
        return json.dumps([body.get("tools"), body.get("instructions")])
    return json.dumps([body.get("tools"), body["messages"][0]])


def _openai_floor(tokens: int) -> int:
    return 0 if tokens < OPENAI_MIN else OPENAI_MIN + OPENAI_STEP * ((tokens - OPENAI_MIN) // OPENAI_STEP)


@pytest.mark.docker
@pytest.mark.parametrize("provider", ["anthropic", "openai", "openai-chat"])
def test_30_turn_goal_hits_the_cache_on_every_turn_after_the_first(provider, workspace, tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'tenax.db'}")
    try:
        with Simulator(_script()) as sim:
            base = sim.url if provider == "anthropic" else sim.url + "/v1"
            req = GoalRequest(objective="Review every module, then make status.txt say fixed.",
                              workspace=str(workspace), check="grep -qx fixed status.txt", model=MODELS[provider],
                              base_url=base, budgets=Budgets(max_turns=TURNS + 10))
            gid = create_goal(store, req, api_key=KEY)
            status = run_goal(store, gid, api_key=KEY)
        goal = store.get_goal(gid)
        main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    finally:
        store.close()

    assert status == "succeeded", goal.error
    reqs = sim.requests
    assert len(reqs) == TURNS and all(r.status == 200 for r in reqs)

    # Tool results are realistic in size: the history grows by hundreds to thousands of tokens a turn.
    if provider == "anthropic":
        totals = [r.usage["input_tokens"] + r.usage["cache_read_input_tokens"]
                  + r.usage["cache_creation_input_tokens"] for r in reqs]
    elif provider == "openai":
        totals = [r.usage["input_tokens"] for r in reqs]
    else:
        totals = [r.usage["prompt_tokens"] for r in reqs]
    growth = [b - a for a, b in zip(totals, totals[1:-2])]
    assert min(growth) >= 150 and max(growth) >= 2500, growth
    assert totals[-1] > 40_000

    # Tools and system prompt: byte-identical in every request.
    prefixes = {_prefix_bytes(provider, r.body) for r in reqs}
    assert len(prefixes) == 1

    reads: list[int] = []
    for i, r in enumerate(reqs):
        u = r.usage
        if provider == "anthropic":
            read, write = u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
            reads.append(read)
            if i == 0:
                assert read == 0 and write > 0  # the first request writes tools + system + objective
                continue
            prev = reqs[i - 1].usage
            prev_cached = prev["cache_read_input_tokens"] + prev["cache_creation_input_tokens"]
            assert read > 0 and read >= prev_cached, f"turn {i}: read {read} < previous cached prefix {prev_cached}"
            assert u["input_tokens"] == 0, f"turn {i}: {u['input_tokens']} tokens after the last breakpoint"
        else:
            details = u["input_tokens_details"] if provider == "openai" else u["prompt_tokens_details"]
            cached = details["cached_tokens"]
            reads.append(cached)
            if i == 0:
                assert cached == 0
                continue
            floor = _openai_floor(totals[i - 1])  # the whole previous prompt, on the 1024+128k grid
            assert cached > 0 and cached >= floor, f"turn {i}: cached {cached} < previous prompt {floor}"
            if provider == "openai":
                assert r.body["prompt_cache_key"] == main.id

    # The store recorded the same cache reads the simulator reported.
    assert goal.cache_read_tokens == sum(reads)
    assert goal.cache_read_tokens / sum(totals) > 0.85


# ------------------------------------------------------------------------------ the bench


def _load_bench():
    path = Path(__file__).resolve().parent.parent / "bench" / "cache_economics.py"
    spec = importlib.util.spec_from_file_location("tenax_bench_cache_economics", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_small_run_compares_layouts():
    bench = _load_bench()
    result = bench.run(turns=16, compactions=1, subagents=1, seed=3, jobs=1)
    a, o = result["anthropic"], result["openai"]
    # The tenax side is a real goal run: the engine, its Compactor and AgentManager, a SQLite store.
    for p in (a, o):
        run = p["run"]
        assert run["status"] == "succeeded", run["error"]
        assert (run["turns"], run["compactions"], run["subagents"]) == (16, 1, 1)
        # The bench counts exactly what the store recorded for the goal (main, summary, sub-agent calls).
        assert run["store_usd"] == pytest.approx(p["tenax"]["usd"], rel=1e-9)
        assert run["store_cache_read"] == p["tenax"]["cache_read_tokens"]
        assert p["tenax"]["requests"] == p["naive"]["requests"]
    # One real summary request; the sub-agent made its own calls (6 tool turns + report).
    assert result["requests"] == {"main": 16, "compaction": 1, "subagent": 7}
    assert bench.workload_ok(result) == []
    # Naive layout: no breakpoints on Anthropic means nothing is ever cached; on OpenAI the
    # timestamp at the head of the prompt defeats automatic prefix caching.
    assert a["naive"]["cache_read_tokens"] == 0
    assert o["naive"]["cache_read_tokens"] == 0
    # Same messages in both layouts: the same total input.
    assert a["naive"]["input_tokens_total"] == pytest.approx(a["tenax"]["input_tokens_total"], rel=0.01)
    assert o["naive"]["input_tokens_total"] == pytest.approx(o["tenax"]["input_tokens_total"], rel=0.01)
    # The compaction's summary request rides the main session's cached prefix (same system + tools,
    # the history as sent the turn before).
    for p in (a, o):
        summary = p["tenax"]["by_kind"]["compaction"]
        assert summary["cache_read_tokens"] / summary["input_tokens_total"] > 0.9
    # Even a short run (prefixes written once per session, a compaction restart) is mostly cache reads.
    assert a["tenax"]["cached_share"] > 0.75 and o["tenax"]["cached_share"] > 0.75
    assert a["cost_ratio"] > 2.5 and o["cost_ratio"] > 2.5


def test_bench_json_line(capsys):
    bench = _load_bench()
    code = bench.main(["--turns", "3", "--compactions", "1", "--subagents", "1", "--jobs", "1", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    last = json.loads(out[-1])
    assert set(last) >= {"anthropic", "openai", "turns", "compactions", "subagents"}
    assert last["turns"] == 3 and last["compactions"] == 1 and last["subagents"] == 1
    for p in ("anthropic", "openai"):
        assert 0 < last[p]["cached_share"] <= 1 and last[p]["cost_ratio"] > 1
    text = "\n".join(out)
    # The real features run now; the output says what is still simulated (the sandbox).
    assert "placeholder" not in text.lower()
    assert "executes nothing" in text and "the real engine with the goal policy" in text
    # Exit status says whether the targets were met; a 3-turn run is too short to meet them.
    assert "FAIL  anthropic cached share" in text and code == 1


# ------------------------------------------------------------------------------ wide turns


def test_anthropic_turn_wider_than_the_lookback_still_reads_the_previous_turn():
    """A turn adding more than 20 blocks (25 parallel tool calls and their results) is out of
    reach of the rolling breakpoint's 20-block lookback; the breakpoint tenax keeps on the
    previous request's last message reads that request's cache entry directly."""
    from tenax.goal import prompts
    from tenax.harness.anthropic_model import AnthropicModel
    from tenax.core.messages import Message, TextPart, ToolResultPart
    from tenax.sandbox.tools import ToolBox

    wide = [ToolCall(name="read_file", arguments={"path": f"src/f{k}.py"}) for k in range(25)]
    tools = list(ToolBox(None).specs()) + [prompts.COMPLETE_GOAL]
    with Simulator(Script([Reply(text="Reading all.", tool_calls=wide), Reply(text="Next.")])) as sim:
        model = AnthropicModel("claude-sonnet-4-6", api_key=KEY, base_url=sim.url)
        msgs = [Message(role="user", parts=[TextPart(text="GOAL: review every file.")])]
        first = model.complete(prompts.SYSTEM_PROMPT, tools, msgs, session_id="s1")
        assert len(first.message.tool_calls) == 25
        results = [ToolResultPart(tool_call_id=c.id, content=f"# file {n}\n" + "x = 1\n" * 200)
                   for n, c in enumerate(first.message.tool_calls)]
        msgs += [first.message, Message(role="user", parts=results)]
        second = model.complete(prompts.SYSTEM_PROMPT, tools, msgs, session_id="s1")

    body = sim.requests[1].body
    marked = [(i, j) for i, m in enumerate(body["messages"]) for j, b in enumerate(m["content"]) if "cache_control" in b]
    assert marked == [(0, 0), (2, 24)]  # previous request's last block, and the rolling one
    assert "cache_control" in body["tools"][-1] and "cache_control" in body["system"][-1]
    new_blocks = sum(len(m["content"]) for m in body["messages"][1:])
    assert new_blocks > 20  # beyond the lookback of the rolling breakpoint
    prev_prefix = first.usage.cache_read_tokens + first.usage.cache_write_tokens
    assert prev_prefix > 1024 and second.usage.cache_read_tokens == prev_prefix
