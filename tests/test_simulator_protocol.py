"""The provider simulator, driven through the real anthropic and openai SDKs over real HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import anthropic
import openai
import pytest

from tenax.testing import Reply, Script, SimClock, SimError, Simulator, ToolCall, count_tokens

A_TOOLS = [{"name": "bash", "description": "Run a shell command.",
            "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}]
R_TOOLS = [{"type": "function", "name": "bash", "description": "Run a shell command.",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}]
C_TOOLS = [{"type": "function", "function": {"name": "bash", "description": "Run a shell command.",
                                             "parameters": R_TOOLS[0]["parameters"]}}]
LONG = "You are a careful engineer. " * 200  # 5600 chars = 1400 tokens: above the 1024 cache minimum


def tool_script() -> Script:
    return Script([Reply(text="Let me look.", tool_calls=[ToolCall(name="bash", arguments={"cmd": "ls -la"})]),
                   Reply(text="There are two files.", when="README")])


@pytest.fixture
def sim():
    with Simulator(tool_script()) as s:
        yield s


def a_client(sim: Simulator, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key="sk-sim", max_retries=retries)


def o_client(sim: Simulator, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key="sk-sim", max_retries=retries)


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_round_trip(sim: Simulator, stream: bool) -> None:
    client = a_client(sim)
    msgs: list[dict] = [{"role": "user", "content": "List the files."}]

    def call(messages):
        kw = dict(model="claude-sim", max_tokens=1024, system="Be brief.", tools=A_TOOLS, messages=messages)
        if stream:
            with client.messages.stream(**kw) as s:
                texts = [e.text for e in s if e.type == "text"]
                final = s.get_final_message()
            assert "".join(texts) == "".join(b.text for b in final.content if b.type == "text")
            return final
        return client.messages.create(**kw)

    first = call(msgs)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert re.fullmatch(r"toolu_sim_\d+", use.id) and use.name == "bash" and use.input == {"cmd": "ls -la"}
    assert first.usage.output_tokens == count_tokens("Let me look.") + count_tokens(json.dumps({"cmd": "ls -la"}))

    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "README  setup.py"}]}]
    second = call(msgs)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "There are two files."
    assert [r.status for r in sim.requests] == [200, 200]
    assert sim.requests[1].body["messages"][2]["content"][0]["tool_use_id"] == use.id


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_tool_round_trip(sim: Simulator, stream: bool) -> None:
    client = o_client(sim)
    items: list[dict] = [{"role": "user", "content": "List the files."}]

    def call(inp):
        kw = dict(model="gpt-sim", instructions="Be brief.", input=inp, tools=R_TOOLS)
        if stream:
            with client.responses.stream(**kw) as s:
                deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
                final = s.get_final_response()
            assert "".join(deltas) == final.output_text
            return final
        return client.responses.create(**kw)

    first = call(items)
    fc = next(o for o in first.output if o.type == "function_call")
    assert re.fullmatch(r"call_sim_\d+", fc.call_id) and re.fullmatch(r"fc_sim_\d+", fc.id)
    assert json.loads(fc.arguments) == {"cmd": "ls -la"}
    assert first.output_text == "Let me look."

    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": fc.call_id, "output": "README  setup.py"})
    second = call(items)
    assert second.output_text == "There are two files."
    assert second.usage.input_tokens == sim.requests[1].usage["input_tokens"] > first.usage.input_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_tool_round_trip(sim: Simulator, stream: bool) -> None:
    client = o_client(sim)
    msgs: list[dict] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "List the files."}]

    def call(messages):
        if not stream:
            c = client.chat.completions.create(model="gpt-sim", messages=messages, tools=C_TOOLS)
            return c.choices[0].message, c.choices[0].finish_reason, c.usage
        chunks = list(client.chat.completions.create(model="gpt-sim", messages=messages, tools=C_TOOLS, stream=True,
                                                     stream_options={"include_usage": True}))
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        with client.chat.completions.stream(model="gpt-sim", messages=messages, tools=C_TOOLS) as s:
            final = s.get_final_completion()
        return final.choices[0].message, final.choices[0].finish_reason, chunks[-1].usage

    # the streaming variant makes two calls per turn: give it a reply per call
    if stream:
        sim.policy = Script([tool_script().replies[0]] * 2 + [tool_script().replies[1]] * 2)
    message, finish, usage = call(msgs)
    assert finish == "tool_calls"
    tc = message.tool_calls[0]
    assert re.fullmatch(r"call_sim_\d+", tc.id) and json.loads(tc.function.arguments) == {"cmd": "ls -la"}
    assert usage.completion_tokens == count_tokens("Let me look.") + count_tokens('{"cmd": "ls -la"}')

    msgs += [message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"}),
             {"role": "tool", "tool_call_id": tc.id, "content": "README  setup.py"}]
    message, finish, usage = call(msgs)
    assert finish == "stop" and message.content == "There are two files."
    assert usage.prompt_tokens == usage.total_tokens - usage.completion_tokens > 0


def test_policy_sees_tool_results_and_user_text() -> None:
    seen = []

    def policy(req):
        seen.append(req)
        return Reply(text="ok")

    with Simulator(policy) as sim:
        a_client(sim).messages.create(
            model="m", max_tokens=100, system="SYS", tools=A_TOOLS,
            messages=[{"role": "user", "content": "go"},
                      {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom",
                                                    "is_error": True}, {"type": "text", "text": "keep going"}]}])
    req = seen[0]
    assert (req.api, req.model, req.system, req.tool_names, req.n_messages) == ("anthropic", "m", "SYS", ["bash"], 3)
    assert req.last_user_text == "keep going"
    assert req.last_tool_results == [{"id": "toolu_1", "content": "boom", "is_error": True}]


# ------------------------------------------------------------------------------------------ rejections

TU = {"type": "tool_use", "id": "toolu_a", "name": "bash", "input": {"cmd": "ls"}}
TR = {"type": "tool_result", "tool_use_id": "toolu_a", "content": "x"}

ANTHROPIC_BAD = [
    ("assistant first", dict(messages=[{"role": "assistant", "content": "hi"}]), 'first message must use the "user" role'),
    ("two users", dict(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
     "roles must alternate"),
    ("no tool_result", dict(tools=A_TOOLS, messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": [TU]},
                                                     {"role": "user", "content": "b"}]),
     "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_a"),
    ("tool_result not first", dict(tools=A_TOOLS, messages=[
        {"role": "user", "content": "a"}, {"role": "assistant", "content": [TU]},
        {"role": "user", "content": [{"type": "text", "text": "b"}, TR]}]), "`tool_result` blocks must come first"),
    ("unknown id", dict(tools=A_TOOLS, messages=[
        {"role": "user", "content": "a"}, {"role": "assistant", "content": [TU]},
        {"role": "user", "content": [TR, dict(TR, tool_use_id="toolu_zzz")]}]),
     "unexpected `tool_use_id` found in `tool_result` blocks: toolu_zzz"),
    ("no tools", dict(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": [TU]},
                                {"role": "user", "content": [TR]}]), "must define tools"),
    ("5 breakpoints", dict(messages=[{"role": "user", "content": [
        {"type": "text", "text": f"t{i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]}]),
     "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    ("bad cache_control", dict(system=[{"type": "text", "text": "s", "cache_control": {"type": "persistent"}}],
                               messages=[{"role": "user", "content": "a"}]), "cache_control.type: Input should be 'ephemeral'"),
    ("bad ttl", dict(messages=[{"role": "user", "content": [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}]), "ttl"),
    ("unknown block", dict(messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}]),
     "Input tag 'video' found using 'type' does not match"),
    ("empty text", dict(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), "must be non-empty"),
]


@pytest.mark.parametrize("case,kw,needle", ANTHROPIC_BAD, ids=[c[0] for c in ANTHROPIC_BAD])
def test_anthropic_rejects(sim: Simulator, case: str, kw: dict, needle: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        a_client(sim).messages.create(model="claude-sim", max_tokens=100, **kw)
    assert err.value.status_code == 400
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert needle in err.value.body["error"]["message"]
    assert sim.requests[-1].status == 400 and needle in sim.requests[-1].error
    assert sim.policy.remaining == 2  # a rejected request consumes no reply


def test_anthropic_missing_fields_raw_http(sim: Simulator) -> None:
    # the SDK refuses to send these itself, so post raw JSON like a broken client would
    for body, needle in [({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}, "model: Field required"),
                         ({"model": "m", "messages": [{"role": "user", "content": "a"}]}, "max_tokens: Field required"),
                         ({"model": "m", "max_tokens": 5}, "messages: Field required"),
                         ({"model": "m", "max_tokens": 5, "messages": [], "bogus": 1}, "bogus: Extra inputs")]:
        with pytest.raises(anthropic.BadRequestError) as err:
            a_client(sim).post("/v1/messages", cast_to=object, body=body)
        assert needle in err.value.message


RESP_BAD = [
    ("output without call", dict(tools=R_TOOLS, input=[{"role": "user", "content": "a"},
                                                       {"type": "function_call_output", "call_id": "call_x", "output": "o"}]),
     "No tool call found for function call output with call_id call_x."),
    ("call without output", dict(tools=R_TOOLS, input=[
        {"role": "user", "content": "a"},
        {"type": "function_call", "call_id": "call_y", "name": "bash", "arguments": "{}"}]),
     "No tool output found for function call call_y."),
    ("no tools", dict(input=[{"role": "user", "content": "a"},
                             {"type": "function_call", "call_id": "c", "name": "bash", "arguments": "{}"},
                             {"type": "function_call_output", "call_id": "c", "output": "o"}]), "Tools must be defined"),
    ("unknown item", dict(input=[{"type": "hologram", "data": "x"}]), "Invalid value: 'hologram'"),
    ("unknown part", dict(input=[{"role": "user", "content": [{"type": "text", "text": "a"}]}]), "Invalid value: 'text'"),
]


@pytest.mark.parametrize("case,kw,needle", RESP_BAD, ids=[c[0] for c in RESP_BAD])
def test_openai_responses_rejects(sim: Simulator, case: str, kw: dict, needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        o_client(sim).responses.create(model="gpt-sim", **kw)
    assert err.value.status_code == 400 and err.value.type == "invalid_request_error"
    assert needle in err.value.message


CALL = {"id": "call_a", "type": "function", "function": {"name": "bash", "arguments": "{}"}}
CHAT_BAD = [
    ("tool first", [{"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": "call_a", "content": "x"}],
     "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'", "messages.[1].role"),
    ("missing tool msg", [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                          {"role": "user", "content": "b"}],
     "did not have response messages: call_a", "messages.[1].role"),
    ("unknown id", [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "call_zz", "content": "x"}],
     "'tool_call_id' of 'call_zz' not found", "messages.[2].tool_call_id"),
    ("user between", [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                      {"role": "user", "content": "b"}, {"role": "tool", "tool_call_id": "call_a", "content": "x"}],
     "did not have response messages", "messages.[1].role"),
]


@pytest.mark.parametrize("case,messages,needle,param", CHAT_BAD, ids=[c[0] for c in CHAT_BAD])
def test_openai_chat_rejects(sim: Simulator, case: str, messages: list, needle: str, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        o_client(sim).chat.completions.create(model="gpt-sim", messages=messages, tools=C_TOOLS)
    assert needle in err.value.message and err.value.param == param


def test_openai_missing_fields_and_tools(sim: Simulator) -> None:
    c = o_client(sim)
    with pytest.raises(openai.BadRequestError) as err:
        c.post("/chat/completions", cast_to=object, body={"model": "gpt-sim"})
    assert err.value.code == "missing_required_parameter" and err.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as err:
        c.post("/responses", cast_to=object, body={"input": "hi"})
    assert err.value.code == "missing_required_parameter" and err.value.param == "model"
    with pytest.raises(openai.BadRequestError) as err:
        c.post("/responses", cast_to=object, body={"model": "gpt-sim"})
    assert err.value.param == "input"
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="gpt-sim", messages=[
            {"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_a", "content": "x"}])
    assert "'tools' must be defined" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="gpt-sim", messages=[{"role": "user", "content": "a"}],
                                  stream_options={"include_usage": True})
    assert err.value.param == "stream_options"


PARAMS = R_TOOLS[0]["parameters"]
TOOLS_BAD = [  # (api, tools, message, param, code): the tools array is checked alike by both APIs
    ("responses", {"type": "function"}, "Invalid type for 'tools': expected an array", "tools", "invalid_type"),
    ("chat", "bash", "Invalid type for 'tools': expected an array", "tools", "invalid_type"),
    ("responses", [{"name": "bash"}], "Missing required parameter: 'tools[0].type'.", "tools[0].type",
     "missing_required_parameter"),
    ("chat", [C_TOOLS[0], {"type": "web_search"}], "Missing required parameter: 'tools[1].type'.", "tools[1].type",
     "missing_required_parameter"),
    ("responses", [{"type": "function", "name": ""}], "Missing required parameter: 'tools[0].name'.",
     "tools[0].name", "missing_required_parameter"),
    ("chat", [{"type": "function", "function": {"parameters": PARAMS}}],
     "Missing required parameter: 'tools[0].function.name'.", "tools[0].function.name", "missing_required_parameter"),
    ("responses", [{"type": "function", "name": "bash", "parameters": {"type": "array"}}],
     "Invalid schema for function 'bash'", "tools[0].parameters", "invalid_function_parameters"),
    ("chat", [{"type": "function", "function": {"name": "bash", "parameters": []}}],
     "Invalid schema for function 'bash'", "tools[0].function.parameters", "invalid_function_parameters"),
    ("responses", R_TOOLS * 2, "Duplicate tool name: 'bash'.", "tools", None),
    ("chat", C_TOOLS * 2, "Duplicate tool name: 'bash'.", "tools", None),
]


@pytest.mark.parametrize("api,tools,needle,param,code", TOOLS_BAD)
def test_openai_tools_array_rejects(sim: Simulator, api: str, tools, needle: str, param: str, code) -> None:
    body = ({"model": "gpt-sim", "input": "hi", "tools": tools} if api == "responses"
            else {"model": "gpt-sim", "messages": [{"role": "user", "content": "hi"}], "tools": tools})
    with pytest.raises(openai.BadRequestError) as err:
        o_client(sim).post("/responses" if api == "responses" else "/chat/completions", cast_to=object, body=body)
    assert needle in err.value.message and err.value.param == param
    assert err.value.code == code and sim.requests[-1].status == 400


def test_openai_tools_array_accepts_other_tool_types(sim: Simulator) -> None:
    """Responses takes any tool type (a non-function tool is not checked further); Chat takes
    function and custom tools."""
    r = o_client(sim).post("/responses", cast_to=object, body={
        "model": "gpt-sim", "input": "hi", "tools": R_TOOLS + [{"type": "web_search"}]})
    c = o_client(sim).post("/chat/completions", cast_to=object, body={
        "model": "gpt-sim", "messages": [{"role": "user", "content": "hi"}], "tools": C_TOOLS + [{"type": "custom"}]})
    assert r["status"] == "completed" and c["choices"][0]["index"] == 0
    assert [q.status for q in sim.requests] == [200, 200]


# ------------------------------------------------------------------------------------------ errors and limits


def test_error_injection_in_provider_shapes() -> None:
    script = Script([Reply(error=SimError(status=529, message="Overloaded", retry_after=7)),
                     Reply(error=SimError(status=429, message="slow down", retry_after=2.5)),
                     Reply(error=SimError(status=503, message="unavailable")),
                     Reply(error=SimError(status=500))])
    with Simulator(script) as sim:
        with pytest.raises(anthropic.APIStatusError) as err:
            a_client(sim).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "a"}], stream=True)
        assert err.value.status_code == 529 and err.value.response.headers["retry-after"] == "7"
        assert err.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
        with pytest.raises(openai.RateLimitError) as oerr:
            o_client(sim).responses.create(model="g", input="a")
        assert oerr.value.response.headers["retry-after"] == "2.5" and oerr.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError) as oerr:
            o_client(sim).chat.completions.create(model="g", messages=[{"role": "user", "content": "a"}])
        assert oerr.value.status_code == 503 and "retry-after" not in oerr.value.response.headers
        with pytest.raises(anthropic.InternalServerError) as err:
            a_client(sim).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "a"}])
        assert err.value.body["error"]["type"] == "api_error"
        assert [r.status for r in sim.requests] == [529, 429, 503, 500]


def test_sdk_retries_after_injected_error() -> None:
    script = Script([Reply(error=SimError(status=529, retry_after=0.05)), Reply(text="second time lucky")])
    with Simulator(script) as sim:
        msg = a_client(sim, retries=2).messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "a"}])
        assert msg.content[0].text == "second time lucky"
        assert [r.status for r in sim.requests] == [529, 200]


def test_context_window_rejection() -> None:
    script = Script([Reply(error=SimError(status=400, kind="context_too_long")), Reply(text="fits")])
    with Simulator(script, context_window={"small": 10, "*": 1000}) as sim:
        with pytest.raises(anthropic.BadRequestError) as err:
            a_client(sim).messages.create(model="small", max_tokens=5, messages=[{"role": "user", "content": "x" * 80}])
        assert re.search(r"prompt is too long: 20 tokens > 10 maximum", err.value.message)
        with pytest.raises(openai.BadRequestError) as oerr:
            o_client(sim).responses.create(model="small", input="x" * 80)
        assert oerr.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as oerr:
            o_client(sim).chat.completions.create(model="small", messages=[{"role": "user", "content": "x" * 80}])
        assert oerr.value.code == "context_length_exceeded" and "maximum context length is 10" in oerr.value.message
        # the script's own context rejection, on a model whose window is large enough
        with pytest.raises(anthropic.BadRequestError) as err:
            a_client(sim).messages.create(model="big", max_tokens=5, messages=[{"role": "user", "content": "a"}])
        assert "prompt is too long" in err.value.message
        assert a_client(sim).messages.create(model="big", max_tokens=5, messages=[{"role": "user", "content": "a"}]
                                             ).content[0].text == "fits"


def test_max_tokens_truncates() -> None:
    with Simulator(Script([Reply(text="word " * 100), Reply(text="word " * 100)])) as sim:
        msg = a_client(sim).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "a"}])
        assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 10 and len(msg.content[0].text) == 40
        c = o_client(sim).chat.completions.create(model="g", max_completion_tokens=10,
                                                  messages=[{"role": "user", "content": "a"}])
        assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 10


def test_thinking_signature_round_trip() -> None:
    script = Script([Reply(reasoning="I should list files.", tool_calls=[ToolCall(name="bash", arguments={"cmd": "ls"})]),
                     Reply(text="done")] * 2)
    with Simulator(script) as sim:
        client = a_client(sim)
        kw = dict(model="m", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048}, tools=A_TOOLS)
        with client.messages.stream(messages=[{"role": "user", "content": "go"}], **kw) as s:
            first = s.get_final_message()
        assert first.content[0].type == "thinking" and first.content[0].thinking == "I should list files."
        tid = first.content[-1].id
        history = [{"role": "user", "content": "go"},
                   {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "a"}]}]
        assert client.messages.create(messages=history, **kw).content[-1].text == "done"
        tampered = json.loads(json.dumps(history))
        tampered[1]["content"][0]["thinking"] = "edited"
        with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
            client.messages.create(messages=tampered, **kw)
        dropped = json.loads(json.dumps(history))
        dropped[1]["content"] = dropped[1]["content"][1:]
        with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
            client.messages.create(messages=dropped, **kw)


# ------------------------------------------------------------------------------------------ caching


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_write_then_read(stream: bool) -> None:
    clock = SimClock()
    with Simulator(Script([Reply(text="ok")] * 4), clock=clock) as sim:
        client = a_client(sim)
        kw = dict(model="claude-sim", max_tokens=50,
                  system=[{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}])

        def usage(question: str):
            msgs = [{"role": "user", "content": question}]
            if stream:
                with client.messages.stream(messages=msgs, **kw) as s:
                    return s.get_final_message().usage
            return client.messages.create(messages=msgs, **kw).usage

        prefix = count_tokens(LONG)
        u1 = usage("first question")
        assert (u1.cache_creation_input_tokens, u1.cache_read_input_tokens) == (prefix, 0)
        assert u1.input_tokens == count_tokens("first question")
        u2 = usage("another question")
        assert (u2.cache_creation_input_tokens, u2.cache_read_input_tokens) == (0, prefix)
        assert sim.requests[1].usage["cache_read_input_tokens"] == prefix
        clock.advance(301)  # past the 5 minute TTL
        u3 = usage("third")
        assert (u3.cache_creation_input_tokens, u3.cache_read_input_tokens) == (prefix, 0)


def test_openai_automatic_cache_hit_and_scope() -> None:
    with Simulator(Script([Reply(text="ok")] * 6)) as sim:
        client = o_client(sim)
        r1 = client.responses.create(model="gpt-sim", instructions=LONG, input="first", prompt_cache_key="s1")
        assert r1.usage.input_tokens_details.cached_tokens == 0
        r2 = client.responses.create(model="gpt-sim", instructions=LONG, input="second", prompt_cache_key="s1")
        cached = r2.usage.input_tokens_details.cached_tokens
        assert cached >= 1024 and (cached - 1024) % 128 == 0 and cached <= count_tokens(LONG)
        assert r2.usage.input_tokens == count_tokens(LONG) + count_tokens("second")
        other = client.responses.create(model="gpt-sim", instructions=LONG, input="third", prompt_cache_key="s2")
        assert other.usage.input_tokens_details.cached_tokens == 0

        msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]
        client.chat.completions.create(model="gpt-sim", messages=msgs)
        chunks = list(client.chat.completions.create(model="gpt-sim", messages=msgs, stream=True,
                                                     stream_options={"include_usage": True}))
        assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= 1024


# ------------------------------------------------------------------------------------------ scripts and CLI


def test_script_from_yaml(tmp_path) -> None:
    text = """
replies:
  - text: "I will run the tests."
    tool_calls: [{name: bash, arguments: {cmd: pytest}}]
  - {when: "FAILED", text: "Fixing it."}
  - {error: {status: 529, retry_after: 1}}
  - text: hello
"""
    path = tmp_path / "script.yaml"
    path.write_text(text)
    for script in (Script.from_yaml(text), Script.from_yaml(str(path)), Script.from_yaml(path)):
        assert script.replies[0].tool_calls[0].arguments == {"cmd": "pytest"}
        assert script.replies[2].error.status == 529 and script.replies[2].error.retry_after == 1
    with pytest.raises(ValueError, match="replies"):
        Script.from_yaml("just: nonsense")
    with pytest.raises(ValueError, match="not found"):
        Script.from_yaml(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="reply #0"):
        Script.from_yaml("replies: [{tool_calls: 3}]")

    with Simulator(Script.from_yaml(text)) as sim:
        client = a_client(sim, retries=0)
        first = client.messages.create(model="m", max_tokens=100, tools=A_TOOLS, messages=[{"role": "user", "content": "go"}])
        assert first.content[1].input == {"cmd": "pytest"}
        # "Fixing it." waits for FAILED: the error reply is next for an unrelated prompt
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": "status?"}])
        msg = client.messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": "2 FAILED"}])
        assert msg.content[0].text == "Fixing it."
        assert client.messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": "x"}]
                                      ).content[0].text == "hello"
        assert client.messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": "x"}]
                                      ).content[0].text == "[simulator] script exhausted"


def test_requests_are_recorded(sim: Simulator) -> None:
    a_client(sim).messages.create(model="m", max_tokens=100, tools=A_TOOLS, messages=[{"role": "user", "content": "hi"}])
    rec = sim.requests[0]
    assert rec.api == "anthropic" and rec.path == "/v1/messages" and rec.status == 200 and rec.error is None
    assert rec.body["messages"] == [{"role": "user", "content": "hi"}]
    auth = rec.headers.get("x-api-key") or rec.headers["authorization"]  # the SDK sends one of them
    assert "redacted" in auth and "sk-sim" not in auth
    assert rec.usage["output_tokens"] > 0 and rec.usage["input_tokens"] > 0
    with urllib.request.urlopen(sim.url + "/health") as resp:
        assert json.load(resp)["status"] == "ok"


def test_cli_serves_until_interrupted(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("replies: [{text: from the cli}]\n")
    proc = subprocess.Popen([sys.executable, "-m", "tenax.testing", "--script", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
        msg = client.messages.create(model="m", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        assert msg.content[0].text == "from the cli"
    finally:
        proc.send_signal(__import__("signal").SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "served 1 requests" in out


def test_anthropic_growing_conversation_reads_previous_turn_via_lookback() -> None:
    """The harness's pattern: a breakpoint on the newest block; the next turn reads the old prefix."""
    with Simulator(Script([Reply(text="noted")] * 3)) as sim:
        client = a_client(sim)
        system = [{"type": "text", "text": LONG}]
        turn1 = [{"role": "user", "content": [{"type": "text", "text": "step one", "cache_control": {"type": "ephemeral"}}]}]
        u1 = client.messages.create(model="m", max_tokens=50, system=system, messages=turn1).usage
        written = count_tokens(LONG) + count_tokens("step one")
        assert (u1.cache_creation_input_tokens, u1.cache_read_input_tokens, u1.input_tokens) == (written, 0, 0)
        turn2 = [{"role": "user", "content": [{"type": "text", "text": "step one"}]},
                 {"role": "assistant", "content": "noted"},
                 {"role": "user", "content": [{"type": "text", "text": "step two", "cache_control": {"type": "ephemeral"}}]}]
        u2 = client.messages.create(model="m", max_tokens=50, system=system, messages=turn2).usage
        assert u2.cache_read_input_tokens == written
        assert u2.cache_creation_input_tokens == count_tokens("noted") + count_tokens("step two")
        # top-level cache_control marks the last block automatically: same prefix, so it is all read
        u3 = client.messages.create(model="m", max_tokens=50, system=system, messages=[
            {"role": "user", "content": "step one"}], cache_control={"type": "ephemeral"}).usage
        assert (u3.cache_read_input_tokens, u3.input_tokens) == (written, 0)
        with pytest.raises(anthropic.BadRequestError, match="ttl='1h'"):
            client.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": [
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
                {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}])


def test_concurrent_requests_and_stop_closes_connections() -> None:
    from concurrent.futures import ThreadPoolExecutor

    sim = Simulator(lambda req: Reply(text=f"echo {req.last_user_text}")).start()
    client = o_client(sim)
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda i: client.chat.completions.create(
            model="g", messages=[{"role": "user", "content": f"n{i}"}]).choices[0].message.content, range(24)))
    assert texts == [f"echo n{i}" for i in range(24)] and len(sim.requests) == 24
    sim.stop()
    with pytest.raises(openai.APIConnectionError):  # the pooled keep-alive connection is not served any more
        client.chat.completions.create(model="g", messages=[{"role": "user", "content": "late"}])
    assert len(sim.requests) == 24


# ------------------------------------------------------------------------------------------ latency


def test_simulated_calls_do_not_wait_for_delayed_acks() -> None:
    """Nagle on the server socket made each call wait ~40 ms for the client's delayed ACK
    (headers and body are separate writes); with TCP_NODELAY a local round trip takes ~2 ms."""
    import socket
    import statistics
    import time

    import httpx2

    with Simulator(Script([Reply(text="hello there")] * 40)) as s, httpx2.Client() as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        client.post(s.url + "/v1/chat/completions", json=body).raise_for_status()
        (conn,) = list(s._conns)  # the server side of the one keep-alive connection
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        times = []
        for _ in range(30):
            t = time.perf_counter()
            client.post(s.url + "/v1/chat/completions", json=body).raise_for_status()
            times.append(time.perf_counter() - t)
    assert statistics.median(times) < 0.02, f"median round trip {statistics.median(times) * 1000:.1f} ms"
