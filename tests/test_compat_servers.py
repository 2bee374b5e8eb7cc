"""OpenAI-compatible servers (llama.cpp, vLLM, LM Studio...) and their quirks, reproduced by the
simulator's compat mode and driven through the real openai SDK by ``openai-chat:`` models."""

from __future__ import annotations

import pytest

from tenax.core.errors import ContextTooLong
from tenax.core.messages import Message, TextPart, ToolResultPart, ToolSpec
from tenax.harness.registry import make_model
from tenax.harness.retry import RetryPolicy
from tenax.testing import Reply, Script, Simulator, ToolCall
from tenax.testing.compat import LLAMA_CPP_CONTENT_ERROR, STREAMED_TOOL_CHOICE_ERROR, Compat

BASH = ToolSpec(name="bash", description="Run a shell command.",
                parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]})
LONG_COMMAND = "echo " + "abcdefgh" * 12  # its arguments JSON streams in several deltas


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text=text)])


@pytest.fixture
def served():
    sims: list[Simulator] = []

    def start(replies, compat, **kw) -> tuple[Simulator, object, list[float]]:
        sim = Simulator(Script(replies), compat=compat, **kw).start()
        sims.append(sim)
        delays: list[float] = []
        model = make_model("openai-chat:local-model", env={}, base_url=sim.url + "/v1", timeout=20,
                           retry=RetryPolicy(max_attempts=4, base_delay=0.5, jitter=False), sleep=delays.append)
        return sim, model, delays

    yield start
    for s in sims:
        s.stop()


def test_a_tool_name_repeated_in_every_delta_is_taken_once(served):
    sim, model, _ = served([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": LONG_COMMAND})])],
                           Compat(repeat_tool_name=True))
    r = model.complete("sys", [BASH], [user("go")], session_id="s")
    (call,) = r.message.tool_calls
    assert call.name == "bash" and call.arguments == {"command": LONG_COMMAND} and call.error is None


def test_assistant_tool_calls_are_replayed_without_null_content(served):
    sim, model, _ = served([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "ls"})]),
                            Reply(text="done")], "llama.cpp")
    history = [user("go")]
    r1 = model.complete("sys", [BASH], history, session_id="s")
    assert r1.message.text == ""  # a tool call and nothing else: what a null content came from
    history += [r1.message, Message(role="user", parts=[ToolResultPart(tool_call_id=r1.message.tool_calls[0].id,
                                                                       content="a.txt")])]
    r2 = model.complete("sys", [BASH], history, session_id="s")
    assert r2.message.text == "done"
    assert [q.status for q in sim.requests] == [200, 200]
    assert sim.requests[1].body["messages"][2]["content"] == ""


def test_the_llama_cpp_null_content_rejection_is_reproduced(served):
    """The simulator in llama.cpp mode rejects it like llama.cpp does: the 500 and its body."""
    import openai

    sim, _, _ = served([], "llama.cpp")
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}], tools=[
            {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}])
    assert err.value.body == {"code": 500, "message": LLAMA_CPP_CONTENT_ERROR, "type": "server_error"}


@pytest.mark.parametrize("style, wording", [
    ("llama.cpp", "the request exceeds the available context size"),
    ("vllm", "This model's maximum context length is 300 tokens"),
    ("empty", "most likely exceeds its context window"),
])
def test_a_prompt_over_the_context_window_is_context_too_long_not_an_outage(served, style, wording):
    sim, model, delays = served([Reply(text="never")], Compat(context_overflow=style), context_window=300)
    with pytest.raises(ContextTooLong) as err:
        model.complete("sys", [BASH], [user("word " * 1000)], session_id="s")
    assert wording in str(err.value) and not err.value.transient
    assert delays == [] and len(sim.requests) <= 2  # the empty 200 is asked once more without streaming


def test_usage_is_estimated_when_the_server_reports_none(served):
    sim, model, _ = served([Reply(text="Here is a short answer.")], Compat(report_usage=False))
    r = model.complete("You are terse.", [BASH], [user("explain " * 50)], session_id="s")
    assert r.estimated and sim.requests[0].usage is None
    assert r.usage.input_tokens >= 100 and 3 <= r.usage.output_tokens <= 10


def test_reported_usage_is_not_marked_estimated(served):
    _, model, _ = served([Reply(text="hi")], None)
    r = model.complete("sys", [BASH], [user("hi")], session_id="s")
    assert not r.estimated and r.usage.input_tokens > 0


def test_tool_choice_is_sent_so_the_tools_reach_the_model(served):
    sim, model, _ = served([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "ls"})])],
                           Compat(tools_need_tool_choice=True))
    r = model.complete("sys", [BASH], [user("go")], session_id="s")
    assert [c.name for c in r.message.tool_calls] == ["bash"]
    assert sim.requests[0].body["tool_choice"] == "auto"


def test_a_refused_streamed_tool_call_falls_back_to_non_streamed_for_good(served):
    sim, model, delays = served([Reply(tool_calls=[ToolCall(name="bash", arguments={"command": "ls"})]),
                                 Reply(text="second")],
                                Compat(tools_need_tool_choice=True, refuse_streamed_tool_choice=True))
    r1 = model.complete("sys", [BASH], [user("go")], session_id="s")
    assert [c.name for c in r1.message.tool_calls] == ["bash"] and r1.usage.output_tokens > 0
    r2 = model.complete("sys", [BASH], [user("again")], session_id="s")
    assert r2.message.text == "second" and delays == []
    assert [(q.body.get("stream", False), q.error) for q in sim.requests] == [
        (True, STREAMED_TOOL_CHOICE_ERROR), (False, None), (False, None)]  # remembered: no second refusal


@pytest.mark.parametrize("spec, asked, key, expected", [
    ("anthropic:claude-sonnet-4-6", None, "max_tokens", 32_000),  # 64k model limit, capped
    ("anthropic:claude-sonnet-4-6", 100, "max_tokens", 100),
    ("anthropic:some-future-claude", None, "max_tokens", 8192),  # in no table: the API needs a figure
    ("openai:gpt-4.1", None, "max_output_tokens", 32_000),
    ("openai:my-finetune", None, "max_output_tokens", None),  # in no table: left to the server
    ("openai-chat:local-model", None, "max_tokens", None),
    ("openai-chat:local-model", 256, "max_tokens", 256),
])
def test_max_tokens_is_derived_from_the_models_limits(spec, asked, key, expected):
    with Simulator(Script([Reply(text="ok")])) as sim:
        url = sim.url if spec.startswith("anthropic") else sim.url + "/v1"
        model = make_model(spec, api_key="k", env={}, base_url=url, timeout=20)
        model.complete("sys", [BASH], [user("hi")], session_id="s", max_tokens=asked)
    assert sim.requests[0].body.get(key) == expected
