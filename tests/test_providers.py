"""Providers, retries, cache layout, pricing and model specs.

Provider tests drive the real anthropic/openai SDKs over real HTTP against
``tenax.testing.Simulator``; nothing of the SDKs is mocked.
"""

from __future__ import annotations

import json
import random

import pytest

from tenax.core.errors import ConfigError, ContextTooLong, ModelSwitchRefused, ProviderError
from tenax.harness.anthropic_model import AnthropicModel
from tenax.harness.cache_layout import apply_cache_layout, count_breakpoints, previous_turn_index
from tenax.core.messages import (
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from tenax.harness.openai_models import OpenAIChatModel, OpenAIResponsesModel
from tenax.harness.pricing import (
    DEFAULT_PRICE,
    Price,
    cost_usd,
    default_pricing,
    load_pricing,
    lookup_price,
    maintained_prices,
    uncached_cost_usd,
)
from tenax.harness.registry import check_model_switch, make_model, parse_model_spec
from tenax.harness.retry import RetryPolicy, parse_retry_after

# --------------------------------------------------------------------------- helpers

TOOLS = [
    ToolSpec(
        name="bash",
        description="Run a shell command in the sandbox.",
        parameters={"type": "object", "required": ["command"], "properties": {"command": {"type": "string"}}},
    ),
    ToolSpec(
        name="read_file",
        description="Read a file.",
        parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    ),
]


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text=text)])


def a_block(text: str) -> dict:
    return {"type": "text", "text": text}


def conversation(turns: int) -> list[dict]:
    """Anthropic-shaped history: user, then (assistant tool_use, user tool_result) * turns."""
    msgs = [{"role": "user", "content": [a_block("start")]}]
    for i in range(turns):
        msgs.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "bash", "input": {}}]})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "x"}]})
    return msgs


# --------------------------------------------------------------------------- cache layout


def test_layout_places_four_breakpoints_at_the_right_blocks():
    tools = [{"name": "a"}, {"name": "b"}]
    system = [a_block("sys")]
    msgs = conversation(3)
    new_tools, new_system, new_msgs = apply_cache_layout(tools, system, msgs)
    assert "cache_control" not in new_tools[0] and new_tools[1]["cache_control"] == {"type": "ephemeral"}
    assert new_system[0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" in new_msgs[-1]["content"][-1]
    # previous request ended with the user message just before the last assistant message
    assert previous_turn_index(msgs) == len(msgs) - 3
    assert "cache_control" in new_msgs[-3]["content"][-1]
    assert count_breakpoints(new_tools, new_system, new_msgs) == 4
    # pure: the inputs are untouched
    assert count_breakpoints(tools, system, msgs) == 0


def test_layout_never_exceeds_four_and_strips_stale_marks():
    rng = random.Random(7)
    for _ in range(200):
        turns = rng.randint(0, 6)
        msgs = conversation(turns)
        for m in msgs:  # stale marks from an earlier layout must not accumulate
            for b in m["content"]:
                if rng.random() < 0.5:
                    b["cache_control"] = {"type": "ephemeral"}
        tools = [{"name": f"t{i}", "cache_control": {"type": "ephemeral"}} for i in range(rng.randint(0, 3))]
        system = [a_block("s")] * rng.randint(0, 2)
        out = apply_cache_layout(tools, system, msgs, ttl=rng.choice([None, "5m", "1h"]))
        n = count_breakpoints(*out)
        assert n <= 4
        expected = bool(tools) + bool(system) + 1 + (1 if turns else 0)
        assert n == expected


def test_layout_ttl_and_unmarkable_blocks():
    msgs = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": [a_block("ok"), {"type": "thinking", "thinking": "t", "signature": "s"}]},
    ]
    _, _, out = apply_cache_layout([], [], msgs, ttl="1h")
    # string content is turned into a block; thinking blocks are skipped for the mark
    assert out[0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert out[1]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in out[1]["content"][1]
    with pytest.raises(ValueError):
        apply_cache_layout([], [], msgs, ttl="2h")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- specs / factory


def test_parse_model_spec_forms():
    assert parse_model_spec("anthropic:claude-sonnet-4-6").model_dump() == {
        "provider": "anthropic",
        "name": "claude-sonnet-4-6",
        "base_url": None,
    }
    assert parse_model_spec("openai:gpt-5.5").name == "gpt-5.5"
    s = parse_model_spec("openai-chat:qwen3@http://localhost:8000/v1")
    assert (s.provider, s.name, s.base_url) == ("openai-chat", "qwen3", "http://localhost:8000/v1")
    s = parse_model_spec("openai-chat:qwen3:8b@https://h:9/v1/")
    assert (s.name, s.base_url) == ("qwen3:8b", "https://h:9/v1")


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("x:y", "unknown model provider 'x' in 'x:y'; use anthropic:, openai: or openai-chat:"),
        ("anthropic:", "missing model name"),
        ("claude", "expected provider:model"),
        ("openai-chat:q@ftp://host/v1", "bad base URL"),
        ("openai-chat:q@http://", "bad base URL"),
        ("openai-chat:q@http://host:abc/v1", "port is not a number"),
    ],
)
def test_parse_model_spec_errors(spec, fragment):
    with pytest.raises(ConfigError) as err:
        parse_model_spec(spec)
    assert fragment in str(err.value)


def test_make_model_keys_and_urls():
    with pytest.raises(ConfigError) as err:
        make_model("anthropic:claude-sonnet-4-6", env={})
    assert str(err.value) == "no API key for provider anthropic: set the ANTHROPIC_API_KEY environment variable"
    assert "--api-key" not in str(err.value)  # no such flag exists
    with pytest.raises(ConfigError, match="set the OPENAI_API_KEY environment variable$"):
        make_model("openai:gpt-5", env={})
    with pytest.raises(ConfigError, match="set the OPENAI_API_KEY environment variable, or point openai-chat:"):
        make_model("openai-chat:deepseek-chat", env={})  # no URL: would go to OpenAI, needs a key
    with pytest.raises(ConfigError, match="bad base URL"):
        make_model("openai:gpt-5", env={"OPENAI_API_KEY": "k"}, base_url="localhost:8000")
    local = make_model("openai-chat:qwen3@http://127.0.0.1:9/v1", env={})
    assert isinstance(local, OpenAIChatModel) and local.client.api_key == "not-needed"
    a = make_model("anthropic:claude-haiku-4-5", env={"ANTHROPIC_API_KEY": "k1"})
    assert isinstance(a, AnthropicModel) and a.client.api_key == "k1" and a.client.max_retries == 0
    o = make_model("openai:gpt-5", api_key="k2", env={"OPENAI_API_KEY": "env"}, base_url="http://127.0.0.1:9/v1")
    assert isinstance(o, OpenAIResponsesModel) and o.client.api_key == "k2" and o.client.max_retries == 0
    assert str(o.client.base_url).startswith("http://127.0.0.1:9/v1")


class _EchoModel:
    """A provider registered by a test: answers every call with the last user text."""

    provider = "echo"

    def __init__(self, name, *, api_key, base_url, timeout, retry, **options):
        self.name, self.api_key, self.base_url, self.options = name, api_key, base_url, options

    def complete(self, system, tools, messages, *, session_id, max_tokens=None):
        from tenax.core.messages import ModelResponse

        return ModelResponse(message=Message(role="assistant", parts=[TextPart(text=messages[-1].text)]),
                             usage=Usage(), model=self.name)


def test_a_provider_is_added_by_one_registration():
    from tenax.core.protocols import Model
    from tenax.harness import registry

    registry.register_provider("echo", key_env="ECHO_KEY", base_url_env="ECHO_URL", default_url="http://echo.invalid",
                               factory=_EchoModel)
    try:
        m = make_model("echo:e1", env={"ECHO_KEY": "k"}, flavour="x")
        assert isinstance(m, _EchoModel) and isinstance(m, Model)
        assert (m.name, m.api_key, m.base_url, m.options) == ("e1", "k", "http://echo.invalid", {"flavour": "x"})
        assert m.complete("", [], [user("ping")], session_id="s").message.text == "ping"
        assert make_model("echo:e1", env={"ECHO_KEY": "k", "ECHO_URL": "http://h:1/"}).base_url == "http://h:1"
        with pytest.raises(ConfigError, match="set the ECHO_KEY environment variable"):
            make_model("echo:e1", env={"ECHO_URL": "http://h:1"})  # this provider needs a key even at a URL
        with pytest.raises(ConfigError, match="use anthropic:, openai:, openai-chat: or echo:"):
            parse_model_spec("nope:m")
    finally:
        del registry.PROVIDERS["echo"]
    with pytest.raises(ConfigError, match="unknown model provider 'echo'"):
        make_model("echo:e1", env={"ECHO_KEY": "k"})


def test_provider_classes_are_imported_only_when_built():
    import subprocess
    import sys

    code = ("import sys, tenax.harness.registry as r; "
            "print('tenax.harness.openai_models' in sys.modules, 'tenax.harness.anthropic_model' in sys.modules); "
            "r.make_model('openai-chat:q@http://127.0.0.1:9/v1', env={}); "
            "print('tenax.harness.openai_models' in sys.modules, 'tenax.harness.anthropic_model' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True", "False"]


def test_model_switch_refused():
    check_model_switch("anthropic:claude-sonnet-4-6", "anthropic:claude-sonnet-4-6")
    with pytest.raises(ModelSwitchRefused) as err:
        check_model_switch("anthropic:claude-sonnet-4-6", "openai:gpt-5")
    assert "discards its prompt cache; spawn a sub-agent on the other model instead" in str(err.value)


# --------------------------------------------------------------------------- pricing


def test_pricing_lookup_and_math():
    sonnet = lookup_price("anthropic", "claude-sonnet-4-6")
    assert (sonnet.input, sonnet.output, sonnet.cache_read, sonnet.cache_write_5m, sonnet.cache_write_1h) == (
        3.0,
        15.0,
        0.3,
        3.75,
        6.0,
    )
    # Prices come from genai-prices' maintained table (shipped in its wheel): the hand-kept table had
    # Opus 4.1 at Opus 4.5's $5; it is $15. Tiered prices are taken at their base tier.
    opus = lookup_price("anthropic", "claude-opus-4-1")
    assert (opus.input, opus.output) == (15.0, 75.0) and maintained_prices("anthropic", "claude-opus-4-1")
    assert lookup_price("anthropic", "claude-haiku-4-5").output == 5.0
    gpt55 = lookup_price("openai", "gpt-5.5")
    assert (gpt55.input, gpt55.output, gpt55.cache_read) == (5.0, 30.0, 0.5)
    assert gpt55.context_window == 400_000 and gpt55.max_output == 128_000  # limits: tenax's own table
    # a model the maintained table lacks falls back to tenax's table (longest prefix wins over gpt-5)
    assert maintained_prices("openai", "gpt-5-mini-2025") is None
    assert lookup_price("openai", "gpt-5-mini-2025").input == 0.25
    assert lookup_price("openai-chat", "gpt-4.1").cache_read == 0.5  # chat looks models up among OpenAI's
    unknown = lookup_price("openai-chat", "qwen3")
    assert unknown.estimated and unknown == DEFAULT_PRICE
    assert not unknown.known and sonnet.known  # the app can show "unknown" and refuse a USD budget
    assert not sonnet.estimated

    u = Usage(input_tokens=1_000, output_tokens=2_000, cache_read_tokens=100_000, cache_write_tokens=10_000)
    # 1000*3 + 2000*15 + 100000*0.3 + 10000*3.75 = 3000+30000+30000+37500 = 100500 per 1e6
    assert cost_usd(sonnet, u) == pytest.approx(0.1005)
    assert cost_usd(sonnet, u, cache_ttl="1h") == pytest.approx(0.1005 - 10_000 * 3.75 / 1e6 + 10_000 * 6 / 1e6)
    # uncached: 111000*3 + 2000*15 = 363000
    assert uncached_cost_usd(sonnet, u) == pytest.approx(0.363)


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_load_pricing_overrides(tmp_path, suffix):
    data = {"anthropic:claude-sonnet-4": {"input": 4, "output": 20}, "openai-chat:qwen3": {"input": 0, "output": 0}}
    path = tmp_path / f"prices{suffix}"
    if suffix == ".toml":
        path.write_text(
            '["anthropic:claude-sonnet-4"]\ninput = 4\noutput = 20\n["openai-chat:qwen3"]\ninput = 0\noutput = 0\n'
        )
    elif suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        import yaml

        path.write_text(yaml.safe_dump(data))
    table = load_pricing(path)
    p = table.lookup("anthropic", "claude-sonnet-4-6")
    assert (p.input, p.output, p.cache_read, p.cache_write_5m) == (4, 20, 0.4, 5.0)
    q = table.lookup("openai-chat", "qwen3-coder")
    assert q.input == 0 and not q.estimated
    assert table.lookup("anthropic", "claude-opus-4-5").input == 5.0  # the rest of the table stays
    assert default_pricing().lookup("anthropic", "claude-sonnet-4-6").input == 3.0  # built-in untouched


def test_load_pricing_errors(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text("not = [valid")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_pricing(bad)
    key = tmp_path / "k.json"
    key.write_text(json.dumps({"sonnet": {"input": 1, "output": 2}}))
    with pytest.raises(ConfigError, match="provider:model-prefix"):
        load_pricing(key)
    neg = tmp_path / "n.json"
    neg.write_text(json.dumps({"openai:x": {"input": -1, "output": 2}}))
    with pytest.raises(ConfigError, match="is invalid"):
        load_pricing(neg)
    with pytest.raises(ConfigError, match="cannot read pricing file"):
        load_pricing(tmp_path / "missing.toml")
    assert isinstance(Price(input=1, output=1, cache_read=1, cache_write_5m=1, cache_write_1h=1), Price)


# --------------------------------------------------------------------------- retry policy


def test_backoff_is_exponential_capped_and_jittered():
    p = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=False)
    assert [p.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert p.delay(3, retry_after=0.25) == 0.25  # the server's hint wins
    j = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=True)
    rng = random.Random(1)
    values = [j.backoff(3, rng) for _ in range(50)]
    assert all(2.0 <= v <= 4.0 for v in values) and len(set(values)) > 1


def test_parse_retry_after_headers():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert 0 <= parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1


# --------------------------------------------------------------------------- transport failures


class _DroppingServer:
    """A real TCP server that accepts each connection, reads the request and hangs up
    without answering: what a dying load balancer looks like to the SDK."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            try:  # read the whole request before hanging up, so the client sees a clean drop
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
            except OSError:
                pass
            conn.close()

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.mark.parametrize("spec", ["anthropic:claude-sonnet-4-6", "openai:gpt-5", "openai-chat:qwen3"])
def test_connection_drops_are_retried_then_reported(spec):
    server = _DroppingServer()
    delays: list[float] = []
    try:
        suffix = "" if spec.startswith("anthropic") else "/v1"
        model = make_model(
            spec,
            api_key="k",
            env={},
            base_url=f"http://127.0.0.1:{server.port}{suffix}",
            timeout=10,
            retry=RetryPolicy(max_attempts=3, base_delay=0.5, jitter=False),
            sleep=delays.append,
        )
        with pytest.raises(ProviderError) as err:
            model.complete("sys", TOOLS, [user("hi")], session_id="s1")
    finally:
        server.close()
    assert not isinstance(err.value, ContextTooLong)
    # Every attempt reached the server, except that the SDK's connection pool sometimes sends a
    # retry over a connection the server had already closed (seen with the Responses client: 2 in
    # 15 runs); that attempt fails at once, as a drop, and is retried and reported like the others.
    assert 2 <= server.connections <= 3, [a.error for a in err.value.attempts]
    assert delays == [0.5, 1.0]
    attempts = err.value.attempts
    assert [a.number for a in attempts] == [1, 2, 3] and not any(a.ok for a in attempts)
    assert "after 3 attempts" in str(err.value) and "try again later" in str(err.value)
    # the server was reached each time (it hung up): an outage to wait out, not a wrong URL
    assert err.value.transient and not err.value.unreachable


@pytest.mark.parametrize("spec", ["anthropic:claude-sonnet-4-6", "openai:gpt-5", "openai-chat:qwen3"])
def test_an_endpoint_nothing_listens_on_is_unreachable_and_named(spec):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}" + ("" if spec.startswith("anthropic") else "/v1")
    delays: list[float] = []
    model = make_model(spec, api_key="k", env={}, base_url=url, timeout=10,
                       retry=RetryPolicy(max_attempts=3, base_delay=0.1, jitter=False), sleep=delays.append)
    with pytest.raises(ProviderError) as err:
        model.complete("sys", TOOLS, [user("hi")], session_id="s1")
    assert err.value.unreachable and err.value.transient and not err.value.retryable
    assert f"cannot reach {url}: could not connect" in str(err.value) and "Connection refused" in str(err.value)
    assert "Check the base URL" in str(err.value) and len(err.value.attempts) == 3


# --------------------------------------------------------------------------- through the simulator

sim_mod = pytest.importorskip("tenax.testing")
Simulator = sim_mod.Simulator
Script = sim_mod.Script
Reply = sim_mod.Reply
SimToolCall = sim_mod.ToolCall
SimError = sim_mod.SimError

SPECS = {
    "anthropic": "anthropic:claude-sonnet-4-6",
    "openai": "openai:gpt-5",
    "openai-chat": "openai-chat:qwen3",
}
API = {"anthropic": "anthropic", "openai": "openai-responses", "openai-chat": "openai-chat"}
LONG_SYSTEM = "You are a careful coding agent. " * 400  # ~12.8k chars: well past 1024 tokens


class Recorder:
    """A policy that remembers what the simulator showed it, then defers to a Script."""

    def __init__(self, replies):
        self.script = Script(replies)
        self.seen = []

    def __call__(self, req):
        self.seen.append(req)
        return self.script(req)


@pytest.fixture
def sim_factory():
    started = []

    def make(policy, **kw):
        sim = Simulator(policy, **kw).start()
        started.append(sim)
        return sim

    yield make
    for s in started:
        s.stop()


def model_for(kind, sim, *, sleep=None, retry=None, **kw):
    url = sim.url if kind == "anthropic" else sim.url + "/v1"
    delays = [] if sleep is None else sleep
    return make_model(
        SPECS[kind],
        api_key="test-key",
        env={},
        base_url=url,
        timeout=30,
        retry=retry or RetryPolicy(max_attempts=4, base_delay=0.5, jitter=False),
        sleep=delays.append,
        **kw,
    )


@pytest.mark.parametrize("kind", list(SPECS))
def test_tool_round_trip_streaming(kind, sim_factory):
    policy = Recorder(
        [
            Reply(text="Listing.", tool_calls=[SimToolCall(name="bash", arguments={"command": "ls -la"})]),
            Reply(text="All done."),
        ]
    )
    sim = sim_factory(policy)
    model = model_for(kind, sim)
    history = [user("list the files")]
    r1 = model.complete("sys prompt", TOOLS, history, session_id="sess-1")
    assert r1.stop_reason == "tool_use"
    (call,) = r1.message.tool_calls
    assert call.name == "bash" and call.arguments == {"command": "ls -la"}
    assert call.id.startswith("toolu_sim_" if kind == "anthropic" else "call_sim_")
    assert r1.message.text == "Listing."
    assert r1.usage.input_tokens > 0 and r1.usage.output_tokens > 0
    assert [a.ok for a in r1.attempts] == [True]

    history += [r1.message, Message(role="user", parts=[ToolResultPart(tool_call_id=call.id, content="a.txt", is_error=True)])]
    r2 = model.complete("sys prompt", TOOLS, history, session_id="sess-1")
    assert r2.stop_reason == "end_turn" and r2.message.text == "All done." and not r2.message.tool_calls

    assert [r.api for r in sim.requests] == [API[kind]] * 2
    assert all(r.body.get("stream") is True for r in sim.requests)
    seen = policy.seen[1]
    assert seen.system == "sys prompt" and seen.tool_names == ["bash", "read_file"]
    (result,) = seen.last_tool_results
    assert result["id"] == call.id and "a.txt" in result["content"]
    if kind == "anthropic":
        assert result["is_error"] is True
    else:
        assert result["content"].startswith("[tool error] ")


@pytest.mark.parametrize("kind", list(SPECS))
def test_usage_mapping_and_cache_read_on_second_call(kind, sim_factory):
    sim = sim_factory(Script([Reply(text="one"), Reply(text="two")]))
    model = model_for(kind, sim)
    history = [user("first question")]
    r1 = model.complete(LONG_SYSTEM, TOOLS, history, session_id="sess-cache")
    history += [r1.message, user("second question")]
    r2 = model.complete(LONG_SYSTEM, TOOLS, history, session_id="sess-cache")

    raw1, raw2 = sim.requests[0].usage, sim.requests[1].usage
    for resp, raw in ((r1, raw1), (r2, raw2)):
        if kind == "anthropic":
            assert resp.usage.input_tokens == raw["input_tokens"]
            assert resp.usage.cache_read_tokens == (raw.get("cache_read_input_tokens") or 0)
            assert resp.usage.cache_write_tokens == (raw.get("cache_creation_input_tokens") or 0)
            assert resp.usage.output_tokens == raw["output_tokens"]
        elif kind == "openai":
            cached = raw["input_tokens_details"]["cached_tokens"]
            assert resp.usage.input_tokens == raw["input_tokens"] - cached
            assert resp.usage.cache_read_tokens == cached and resp.usage.cache_write_tokens == 0
            assert resp.usage.output_tokens == raw["output_tokens"]
        else:
            cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            assert resp.usage.input_tokens == raw["prompt_tokens"] - cached
            assert resp.usage.cache_read_tokens == cached
            assert resp.usage.output_tokens == raw["completion_tokens"]
    assert r1.usage.cache_read_tokens == 0
    assert r2.usage.cache_read_tokens >= 1024
    if kind == "anthropic":
        assert r1.usage.cache_write_tokens >= 1024  # our breakpoints wrote the prefix
    assert r2.usage.total_input > r1.usage.total_input
    # pricing on real usage: caching made the second call cheaper than uncached
    price = lookup_price(model.provider, model.name)
    assert cost_usd(price, r2.usage) < uncached_cost_usd(price, r2.usage)


def test_anthropic_breakpoints_keep_long_tool_loops_cached(sim_factory):
    n = 8
    replies = [
        Reply(tool_calls=[SimToolCall(name="read_file", arguments={"path": f"f{i}.py"})]) for i in range(n)
    ]
    sim = sim_factory(Script(replies + [Reply(text="done")]))
    model = model_for("anthropic", sim)
    history = [user("read many files")]
    reads = []
    for i in range(n + 1):
        r = model.complete(LONG_SYSTEM, TOOLS, history, session_id="loop")
        reads.append(r.usage.cache_read_tokens)
        if not r.message.tool_calls:
            break
        # a turn with many result blocks would push the old breakpoint out of the 20-block lookback
        parts = [ToolResultPart(tool_call_id=c.id, content="x" * 300) for c in r.message.tool_calls]
        parts += [TextPart(text=f"note {k}") for k in range(25)]
        history += [r.message, Message(role="user", parts=parts)]
    for rec in sim.requests:
        body = rec.body
        n_marks = count_breakpoints(body.get("tools", []), body.get("system", []), body["messages"])
        assert n_marks <= 4
    assert count_breakpoints(sim.requests[-1].body["tools"], sim.requests[-1].body["system"], sim.requests[-1].body["messages"]) == 4
    # every call after the first reads the previous call's cache entry
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert all(later > earlier for earlier, later in zip(reads[1:], reads[2:]))


@pytest.mark.parametrize("kind", list(SPECS))
def test_identical_inputs_give_byte_identical_bodies(kind, sim_factory):
    sim = sim_factory(Script([Reply(text="a"), Reply(text="b"), Reply(text="c")]))
    history = [
        user("hi"),
        Message(role="assistant", parts=[ToolCallPart(id="call_1", name="bash", arguments={"z": 1, "a": {"y": 2, "b": 3}})]),
        Message(role="user", parts=[ToolResultPart(tool_call_id="call_1", content="ok"), TextPart(text="go on")]),
    ]
    reordered = [
        history[0],
        Message(role="assistant", parts=[ToolCallPart(id="call_1", name="bash", arguments={"a": {"b": 3, "y": 2}, "z": 1})]),
        history[2],
    ]
    model_for(kind, sim).complete("sys", TOOLS, history, session_id="s")
    model_for(kind, sim).complete("sys", TOOLS, history, session_id="s")  # a fresh client, same inputs
    model_for(kind, sim).complete("sys", TOOLS, reordered, session_id="s")  # key order does not leak
    bodies = [json.dumps(r.body, ensure_ascii=False) for r in sim.requests]
    assert bodies[0] == bodies[1] == bodies[2]
    body = sim.requests[0].body
    tools = body["tools"]
    names = [t.get("name") or t["function"]["name"] for t in tools]
    assert names == ["bash", "read_file"]  # order as given
    for t in tools:
        schema = t.get("input_schema") or t.get("parameters") or t["function"]["parameters"]
        assert list(schema) == sorted(schema)
    if kind == "openai":
        assert body["prompt_cache_key"] == "s" and body["store"] is False and body["instructions"] == "sys"
    if kind == "openai-chat":
        assert "prompt_cache_key" not in body  # local base URL: never send unknown params
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"][0] == {"role": "system", "content": "sys"}


@pytest.mark.parametrize("kind, status", [("anthropic", 529), ("openai", 503), ("openai-chat", 429)])
def test_retries_honour_retry_after_and_record_attempts(kind, status, sim_factory):
    sim = sim_factory(
        Script(
            [
                Reply(error=SimError(status=status, message="busy", retry_after=2)),
                Reply(error=SimError(status=503, message="down")),
                Reply(text="finally"),
            ]
        )
    )
    delays: list[float] = []
    model = model_for(kind, sim, sleep=delays)
    r = model.complete("sys", TOOLS, [user("hi")], session_id="s")
    assert r.message.text == "finally"
    assert delays == [2.0, 1.0]  # retry-after honoured, then exponential backoff (0.5 * 2)
    assert [(a.number, a.ok, a.status) for a in r.attempts] == [(1, False, status), (2, False, 503), (3, True, 200)]
    assert r.attempts[0].retry_after_s == 2.0 and r.attempts[1].retry_after_s is None
    assert [rec.status for rec in sim.requests] == [status, 503, 200]


@pytest.mark.parametrize("kind", list(SPECS))
def test_exhausted_retries_raise_provider_error(kind, sim_factory):
    sim = sim_factory(Script([Reply(error=SimError(status=500, message="boom"))] * 3))
    delays: list[float] = []
    model = model_for(kind, sim, sleep=delays, retry=RetryPolicy(max_attempts=3, base_delay=0.1, jitter=False))
    with pytest.raises(ProviderError) as err:
        model.complete("sys", TOOLS, [user("hi")], session_id="s")
    assert err.value.status == 500 and not err.value.retryable
    assert err.value.transient and not err.value.unreachable  # a plain 500: an outage to wait out
    assert len(err.value.attempts) == 3 and delays == [0.1, 0.2]
    assert "HTTP 500 server error: boom (after 3 attempts)" in str(err.value)


@pytest.mark.parametrize("kind", list(SPECS))
def test_overload_reads_as_status_words_and_server_message(kind, sim_factory):
    sim = sim_factory(Script([Reply(error=SimError(status=529, message="Overloaded"))] * 2))
    model = model_for(kind, sim, retry=RetryPolicy(max_attempts=2, base_delay=0.1, jitter=False))
    with pytest.raises(ProviderError) as err:
        model.complete("sys", TOOLS, [user("hi")], session_id="s")
    assert f"{SPECS[kind]}: HTTP 529 overloaded: Overloaded (after 2 attempts)" in str(err.value)
    assert err.value.transient and err.value.status == 529


LLAMA_INVALID_CONTENT = "Invalid 'content' type (ref: https://github.com/ggerganov/llama.cpp/issues/8367)"


@pytest.mark.parametrize("kind", list(SPECS))
def test_a_5xx_naming_an_invalid_request_fails_after_a_few_attempts_not_transient(kind, sim_factory):
    sim = sim_factory(Script([Reply(error=SimError(status=500, message=LLAMA_INVALID_CONTENT))] * 8))
    delays: list[float] = []
    model = model_for(kind, sim, sleep=delays, retry=RetryPolicy(max_attempts=8, base_delay=0.1, jitter=False))
    with pytest.raises(ProviderError) as err:
        model.complete("sys", TOOLS, [user("hi")], session_id="s")
    assert not err.value.transient and not err.value.retryable and not err.value.unreachable
    assert len(sim.requests) == 3 and len(err.value.attempts) == 3  # not the policy's 8
    assert f"HTTP 500 server error: {LLAMA_INVALID_CONTENT} (after 3 attempts)" in str(err.value)


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("status, advice", [(400, "invalid"), (401, "check the API key"), (404, "check the model name")])
def test_client_errors_are_not_retried(kind, status, advice, sim_factory):
    sim = sim_factory(Script([Reply(error=SimError(status=status, message="nope")), Reply(text="never")]))
    delays: list[float] = []
    model = model_for(kind, sim, sleep=delays)
    with pytest.raises(ProviderError) as err:
        model.complete("sys", TOOLS, [user("hi")], session_id="s")
    assert not isinstance(err.value, ContextTooLong)
    assert err.value.status == status and advice in str(err.value) and f"HTTP {status} " in str(err.value)
    assert str(err.value).split(": ", 1)[1].startswith(f"request failed: HTTP {status}") and "nope" in str(err.value)
    assert not err.value.transient and not err.value.unreachable
    assert delays == [] and len(sim.requests) == 1 and len(err.value.attempts) == 1


@pytest.mark.parametrize("kind", list(SPECS))
def test_context_too_long(kind, sim_factory):
    sim = sim_factory(Script([Reply(text="never")]), context_window=500)
    delays: list[float] = []
    model = model_for(kind, sim, sleep=delays)
    with pytest.raises(ContextTooLong) as err:
        model.complete("sys", TOOLS, [user("word " * 2000)], session_id="s")
    assert err.value.status == 400 and "context window" in str(err.value)
    assert delays == [] and len(sim.requests) == 1


@pytest.mark.parametrize("kind", list(SPECS))
def test_scripted_context_too_long(kind, sim_factory):
    sim = sim_factory(Script([Reply(error=SimError(status=400, kind="context_too_long"))]))
    with pytest.raises(ContextTooLong):
        model_for(kind, sim).complete("sys", TOOLS, [user("hi")], session_id="s")


def test_anthropic_thinking_signature_round_trip(sim_factory):
    sim = sim_factory(
        Script(
            [
                Reply(reasoning="I should list files.", tool_calls=[SimToolCall(name="bash", arguments={"command": "ls"})]),
                Reply(text="done"),
            ]
        )
    )
    model = model_for("anthropic", sim, thinking={"type": "enabled", "budget_tokens": 1024})
    history = [user("go")]
    r1 = model.complete("sys", TOOLS, history, session_id="s", max_tokens=4096)
    reasoning = [p for p in r1.message.parts if isinstance(p, ReasoningPart)]
    assert reasoning and reasoning[0].text == "I should list files." and reasoning[0].signature
    history += [r1.message, Message(role="user", parts=[ToolResultPart(tool_call_id=r1.message.tool_calls[0].id, content="a")])]
    # the simulator rejects a tool loop whose assistant turn lost its signed thinking block
    r2 = model.complete("sys", TOOLS, history, session_id="s", max_tokens=4096)
    assert r2.message.text == "done"
    echoed = sim.requests[1].body["messages"][1]["content"][0]
    assert echoed["type"] == "thinking" and echoed["signature"] == reasoning[0].signature


def test_openai_reasoning_items_are_echoed(sim_factory):
    sim = sim_factory(
        Script(
            [
                Reply(reasoning="plan first", tool_calls=[SimToolCall(name="bash", arguments={"command": "ls"})]),
                Reply(text="done"),
            ]
        )
    )
    model = model_for("openai", sim)
    history = [user("go")]
    r1 = model.complete("sys", TOOLS, history, session_id="s")
    (reasoning,) = [p for p in r1.message.parts if isinstance(p, ReasoningPart)]
    item = reasoning.data["openai_reasoning"]
    assert item["type"] == "reasoning" and item["id"]
    history += [r1.message, Message(role="user", parts=[ToolResultPart(tool_call_id=r1.message.tool_calls[0].id, content="a")])]
    model.complete("sys", TOOLS, history, session_id="s")
    sent = sim.requests[1].body["input"]
    assert [i["type"] for i in sent] == ["message", "reasoning", "function_call", "function_call_output"]
    assert sent[1]["id"] == item["id"]


# --------------------------------------------------------------------------- broken streams
# The simulator answers errors before the stream starts; real providers also fail *inside*
# a 200 stream (an `error` event, or a connection cut short).  A small real HTTP server
# that replays raw SSE bytes covers that.


def _sse(event: str | None, data: dict) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data) + "\n\n").encode()


ANTHROPIC_OK = [
    _sse("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 1, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 3}}}),
    _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "recovered"}}),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 5}}),
    _sse("message_stop", {"type": "message_stop"}),
]
ANTHROPIC_OVERLOADED = ANTHROPIC_OK[:3] + [
    _sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
]
ANTHROPIC_CUT = ANTHROPIC_OK[:3]  # the connection closes after a partial answer

CHAT_OK = [
    _sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "qwen3",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "recovered"}, "finish_reason": None}]}),
    _sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "qwen3",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    _sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "qwen3", "choices": [],
                "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24,
                          "prompt_tokens_details": {"cached_tokens": 16}}}),
    b"data: [DONE]\n\n",
]
CHAT_CUT = CHAT_OK[:1]
# Valid JSON shaped otherwise than the API documents: a delta for a block never started, a chunk
# that is a list, a choice that is a string (read as SDK objects, these raised AttributeError).
ANTHROPIC_MISSHAPEN = ANTHROPIC_OK[:2] + [
    _sse("content_block_delta", {"type": "content_block_delta", "index": 5, "delta": {"type": "text_delta", "text": "x"}})]
CHAT_LIST = [b"data: [1, 2]\n\n"] + CHAT_OK
CHAT_MISSHAPEN = [_sse(None, {"id": "c1", "model": "qwen3", "choices": ["not an object"]})] + CHAT_OK


class _ReplayServer:
    """Real HTTP on 127.0.0.1: answers request i with scripted raw SSE bytes, then closes."""

    def __init__(self, responses: list[list[bytes]]):
        import http.server
        import threading

        self.responses = list(responses)
        self.bodies: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                chunks = outer.responses.pop(0)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for c in chunks:
                    self.wfile.write(c)
                    self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    "spec, suffix, broken, ok, expected_usage",
    [
        ("anthropic:claude-sonnet-4-6", "", ANTHROPIC_OVERLOADED, ANTHROPIC_OK, (11, 5, 7, 3)),
        ("anthropic:claude-sonnet-4-6", "", ANTHROPIC_CUT, ANTHROPIC_OK, (11, 5, 7, 3)),
        ("openai-chat:qwen3", "/v1", CHAT_CUT, CHAT_OK, (4, 4, 16, 0)),
        ("anthropic:claude-sonnet-4-6", "", ANTHROPIC_MISSHAPEN, ANTHROPIC_OK, (11, 5, 7, 3)),
        ("openai-chat:qwen3", "/v1", CHAT_LIST, CHAT_OK, (4, 4, 16, 0)),
        ("openai-chat:qwen3", "/v1", CHAT_MISSHAPEN, CHAT_OK, (4, 4, 16, 0)),
    ],
    ids=["anthropic-error-event", "anthropic-cut", "chat-cut", "anthropic-misshapen", "chat-list", "chat-misshapen"],
)
def test_broken_streams_are_retried_not_taken_as_answers(spec, suffix, broken, ok, expected_usage):
    server = _ReplayServer([broken, ok])
    delays: list[float] = []
    try:
        model = make_model(spec, api_key="k", env={}, base_url=server.url + suffix, timeout=10,
                           retry=RetryPolicy(max_attempts=3, base_delay=0.25, jitter=False), sleep=delays.append)
        r = model.complete("sys", TOOLS, [user("hi")], session_id="s")
    finally:
        server.close()
    assert r.message.text == "recovered" and r.stop_reason == "end_turn"
    u = r.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == expected_usage
    assert [a.ok for a in r.attempts] == [False, True] and delays == [0.25]
    assert len(server.bodies) == 2 and server.bodies[0] == server.bodies[1]


def test_default_base_urls_ignore_process_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
    o = make_model("openai-chat:gpt-4.1", env={"OPENAI_API_KEY": "k"})
    assert str(o.client.base_url).startswith("https://api.openai.com/v1")
    assert o.build_request("s", TOOLS, [user("x")], session_id="sid")["prompt_cache_key"] == "sid"
    a = make_model("anthropic:claude-sonnet-4-6", env={"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://h:2"})
    assert str(a.client.base_url).startswith("http://h:2")
