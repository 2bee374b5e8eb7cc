"""A tool call cut off by max_tokens is never repaired or run: every provider hands it on with
``arguments={}`` and an error, and the conversation still replays to the (strict) simulator."""

from __future__ import annotations

import pytest

from tenax.core.messages import Message, TextPart, ToolResultPart, ToolSpec
from tenax.harness._serialize import CUT_OFF
from tenax.harness.registry import make_model
from tenax.testing import Reply, Script, Simulator, ToolCall

BASH = ToolSpec(name="bash", description="Run a shell command.",
                parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]})
SPECS = ["anthropic:claude-sonnet-4-6", "openai:gpt-5", "openai-chat:qwen3"]


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text=text)])


@pytest.mark.parametrize("spec", SPECS)
def test_a_tool_call_cut_off_by_max_tokens_is_marked_not_repaired(spec):
    args = {"command": "echo hi", "reason": "because " * 40}
    script = Script([Reply(text="Running it.", tool_calls=[ToolCall(name="bash", arguments=args)]),
                     Reply(text="I will retry with less.")])
    with Simulator(script) as sim:
        url = sim.url if spec.startswith("anthropic") else sim.url + "/v1"
        model = make_model(spec, api_key="k", env={}, base_url=url, timeout=20)
        history = [user("go")]
        r = model.complete("sys", [BASH], history, session_id="s", max_tokens=20)
        assert r.stop_reason == "max_tokens"
        (call,) = r.message.tool_calls
        # the partial JSON ('{"command": "echo hi", "reason": "bec...') would "repair" to a runnable call
        assert call.name == "bash" and call.arguments == {} and call.error == CUT_OFF
        history += [r.message, Message(role="user", parts=[
            ToolResultPart(tool_call_id=call.id, content=f"not run: {call.error}", is_error=True)])]
        r2 = model.complete("sys", [BASH], history, session_id="s")
        assert r2.message.text == "I will retry with less."
        assert [q.status for q in sim.requests] == [200, 200]


@pytest.mark.parametrize("spec", SPECS)
def test_a_call_that_fits_is_whole_even_when_the_text_after_it_is_cut(spec):
    script = Script([Reply(text="x" * 20, tool_calls=[ToolCall(name="bash", arguments={"command": "ls"})],
                           output_tokens=None)])
    with Simulator(script) as sim:
        url = sim.url if spec.startswith("anthropic") else sim.url + "/v1"
        model = make_model(spec, api_key="k", env={}, base_url=url, timeout=20)
        r = model.complete("sys", [BASH], [user("go")], session_id="s", max_tokens=64)
    (call,) = r.message.tool_calls
    assert call.arguments == {"command": "ls"} and call.error is None and r.stop_reason == "tool_use"


def test_arguments_that_are_not_a_json_object_are_never_taken():
    from tenax.harness._serialize import tool_call

    bad = tool_call("c1", "bash", '{"command": "ls",}', cut=False)
    assert bad.arguments == {} and bad.error.startswith("arguments are not valid JSON: ")
    assert tool_call("c1", "bash", '["ls"]', cut=False).error == "arguments are not a JSON object: got list"
    assert tool_call("c1", "bash", '{"command": "ls"', cut=True).error == CUT_OFF
    assert tool_call("c1", "bash", '{"command": "ls"}', cut=True).arguments == {"command": "ls"}  # complete in time
    assert tool_call("c1", "bash", "", cut=False).arguments == {} and tool_call("c1", "bash", "", cut=False).error is None
