"""The incremental request encoding: every provider sends, turn after turn, exactly the body its
dict path builds from scratch, while converting only what is new."""

from __future__ import annotations

import json
import random

import pytest

from tenax.core.journal import Conversation, Entry
from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, ToolSpec
from tenax.harness._provider import Call
from tenax.harness.anthropic_model import AnthropicModel
from tenax.harness.cache_layout import count_breakpoints
from tenax.harness.openai_models import OpenAIChatModel, OpenAIResponsesModel

TOOLS = [ToolSpec(name="bash", description="run", parameters={"type": "object", "properties": {"command": {"type": "string"}}}),
         ToolSpec(name="read_file", description="read", parameters={"properties": {"path": {}}, "type": "object"})]
PROVIDERS = {
    "anthropic": lambda: AnthropicModel("claude-sonnet-4-6", api_key="k", base_url="http://127.0.0.1:9"),
    "anthropic-1h": lambda: AnthropicModel("claude-sonnet-4-6", api_key="k", base_url="http://127.0.0.1:9", cache_ttl="1h"),
    "openai": lambda: OpenAIResponsesModel("gpt-5", api_key="k", base_url="http://127.0.0.1:9/v1"),
    "openai-chat": lambda: OpenAIChatModel("qwen", api_key="k", base_url="http://127.0.0.1:9/v1"),
}


def assistant(rng: random.Random, turn: int) -> dict:
    parts: list = []
    if rng.random() < 0.3:
        parts.append(ReasoningPart(text="hm", signature="sig").model_dump())
    if rng.random() < 0.7:
        parts.append(TextPart(text=f"step {turn} ünïcode \u2028").model_dump())
    for k in range(rng.choice([0, 1, 1, 2])):
        parts.append(ToolCallPart(id=f"c{turn}_{k}", name="bash", arguments={"z": k, "command": f"echo {turn}"}).model_dump())
    return {"message": {"role": "assistant", "parts": parts}, "stop_reason": "tool_use", "usage": {}}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_each_turn_sends_what_a_fresh_encoding_would(name):
    """A conversation folded step by step as the engine does (tool results and steering text
    added to the newest message in place, compactions replacing the context), encoded every
    turn by one provider object, equals the body built from scratch by its dict path."""
    rng = random.Random(11)
    model, fresh = PROVIDERS[name](), PROVIDERS[name]()
    conv, seq = Conversation(), 0

    def add(kind: str, payload: dict) -> None:
        nonlocal seq
        seq += 1
        conv.add(Entry(seq, kind, payload))

    add("user", {"text": "the objective"})
    converted = []
    real = model.convert
    model.convert = lambda m: (converted.append(m), real(m))[1]
    for turn in range(120):
        call = Call("system prompt", TOOLS, conv.messages, "sid", 4096)
        converted.clear()
        sent = json.loads(model.encode(call))
        assert sent == json.loads(json.dumps(fresh._body(call))), f"turn {turn}"
        if "anthropic" in name:
            assert count_breakpoints(sent["tools"], sent["system"], sent["messages"]) == (4 if turn else 3)
        if turn > 1 and not (turn - 1) % 37 == 0:
            assert len(converted) <= 2, f"turn {turn}: {len(converted)} messages converted again"
        if rng.random() < 0.1:  # the call failed: text goes into the newest message, already sent once
            add("user", {"text": f"after a failed call {turn}"})
            continue
        step = assistant(rng, turn)
        add("assistant", step)
        for part in step["message"]["parts"]:
            if part["type"] == "tool_call":
                add("tool_result", ToolResultPart(tool_call_id=part["id"], content=f"out {turn}", is_error=rng.random() < 0.2).model_dump())
        if rng.random() < 0.2 or not any(p["type"] == "tool_call" for p in step["message"]["parts"]):
            add("user", {"text": f"steer {turn}"})
        if turn % 37 == 36:  # a compaction: the context restarts from a turn boundary
            kept = next(s.seq for s in reversed(conv.steps) if s.kind == "assistant")
            add("compaction", {"ledger": "ledger", "summary": f"summary {turn}", "kept_from": kept})


def test_a_message_changed_behind_the_wire_is_converted_again():
    """Another caller's list (e.g. a summary request) that shares a prefix reuses it; a list that
    differs early is converted from the difference on."""
    model = PROVIDERS["anthropic"]()
    msgs = [Message(role="user", parts=[TextPart(text=f"u{i}")]) if i % 2 == 0 else
            Message(role="assistant", parts=[TextPart(text=f"a{i}")]) for i in range(9)]
    first = json.loads(model.encode(Call("s", TOOLS, msgs, "sid", 100)))
    other = [msgs[0], Message(role="assistant", parts=[TextPart(text="different")]), *msgs[2:]]
    second = json.loads(model.encode(Call("s", TOOLS, other, "sid", 100)))
    assert second["messages"][1]["content"][0]["text"] == "different"
    assert first["messages"][1]["content"][0]["text"] == "a1"
    assert [m["content"][0]["text"] for m in second["messages"][2:]] == [f"{'ua'[i % 2]}{i}" for i in range(2, 9)]
