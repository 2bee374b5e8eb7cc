"""Anthropic Messages API provider (streaming, our retries, our cache breakpoints)."""

from __future__ import annotations

from typing import Any

import anthropic
from anthropic._base_client import httpx2
from anthropic._constants import RAW_RESPONSE_HEADER

from tenax.harness._provider import Call, Provider, Reply
from tenax.harness._serialize import sorted_json, tool_call, with_fields
from tenax.harness.cache_layout import CacheTTL, apply_cache_layout, cache_control, mark_message, message_targets
from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.harness.retry import Failure, StreamFailed, misshapen

STOP_REASONS = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "pause_turn": "pause_turn",
    "refusal": "refusal",
    "model_context_window_exceeded": "max_tokens",
}

REDACTED_KEY = "anthropic_redacted_thinking"
UNKNOWN_MODEL_MAX_TOKENS = 8192


def tool_to_anthropic(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": sorted_json(tool.parameters)}


def part_to_block(part: Any) -> dict[str, Any] | None:
    """One neutral part as an Anthropic content block (``None``: not sendable here)."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": sorted_json(part.arguments)}
    if isinstance(part, ToolResultPart):
        return {
            "type": "tool_result",
            "tool_use_id": part.tool_call_id,
            "content": part.content,
            "is_error": part.is_error,
        }
    if isinstance(part, ReasoningPart):
        if part.data and REDACTED_KEY in part.data:
            return {"type": "redacted_thinking", "data": part.data[REDACTED_KEY]}
        if part.signature:  # unsigned reasoning (e.g. from another provider) cannot be replayed
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
        return None
    raise TypeError(f"unknown message part {type(part).__name__}")


def message_to_anthropic(m: Message) -> dict[str, Any]:
    blocks = [b for b in (part_to_block(p) for p in m.parts) if b is not None]
    if not blocks:
        # The API rejects empty content; keep the turn (roles must alternate).
        blocks = [{"type": "text", "text": "(empty)"}]
    return {"role": m.role, "content": blocks}


def messages_to_anthropic(messages: list[Message]) -> list[dict[str, Any]]:
    return [message_to_anthropic(m) for m in messages]


def tools_to_anthropic(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [tool_to_anthropic(t) for t in tools]


def build_request(
    model: str,
    system: str,
    tools: list[ToolSpec],
    messages: list[Message],
    *,
    max_tokens: int,
    cache: bool = True,
    cache_ttl: CacheTTL | None = None,
    thinking: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The request body (without ``stream``); deterministic for equal inputs."""
    a_tools = tools_to_anthropic(tools)
    a_system = [{"type": "text", "text": system}] if system else []
    a_messages = messages_to_anthropic(messages)
    if cache:
        a_tools, a_system, a_messages = apply_cache_layout(a_tools, a_system, a_messages, ttl=cache_ttl)
    kwargs: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": a_messages}
    if a_system:
        kwargs["system"] = a_system
    if a_tools:
        kwargs["tools"] = a_tools
    if thinking:
        kwargs["thinking"] = thinking
    return kwargs


def _streamed(block: dict[str, Any], field: str) -> str:
    """A block's ``field``: its streamed deltas joined, else the value its start carried."""
    return "".join(block.get("_" + field, ())) or block.get(field) or ""


class StreamedMessage:
    """A streamed answer folded event by event (the events as the API documents them, decoded
    from JSON by the SDK's SSE decoder): its blocks, stop reason, usage and model. Text, thinking
    and tool input arrive as deltas; a tool_use block's input is kept as the raw JSON text sent,
    so an input cut off by max_tokens is seen as cut (never leniently completed)."""

    def __init__(self) -> None:
        self.started = False
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}

    def add(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            block, delta = self.blocks[data["index"]], data["delta"]
            for field in ("text", "thinking", "partial_json", "signature"):
                if field in delta:
                    block.setdefault("_" + field, []).append(delta[field])
        elif kind == "content_block_start":
            self.blocks[data["index"]] = dict(data["content_block"])
        elif kind == "message_start":
            self.started = True
            self.model = data["message"].get("model")
            self.usage = dict(data["message"].get("usage") or {})
        elif kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})

    def neutral(self) -> tuple[Message, Usage, str]:
        parts: list[Any] = []
        cut = self.stop_reason in ("max_tokens", "model_context_window_exceeded")
        for _, block in sorted(self.blocks.items()):
            btype = block.get("type")
            if btype == "text":
                if text := _streamed(block, "text"):
                    parts.append(TextPart(text=text))
            elif btype == "tool_use":
                raw = "".join(block["_partial_json"]) if "_partial_json" in block else block.get("input")
                parts.append(tool_call(block["id"], block["name"], raw, cut=cut))
            elif btype == "thinking":
                parts.append(ReasoningPart(text=_streamed(block, "thinking"),
                                           signature=_streamed(block, "signature") or None))
            elif btype == "redacted_thinking":
                parts.append(ReasoningPart(data={REDACTED_KEY: block.get("data")}))
        u = self.usage
        usage = Usage(input_tokens=u.get("input_tokens") or 0, output_tokens=u.get("output_tokens") or 0,
                      cache_read_tokens=u.get("cache_read_input_tokens") or 0,
                      cache_write_tokens=u.get("cache_creation_input_tokens") or 0)
        stop = STOP_REASONS.get(self.stop_reason or "end_turn", str(self.stop_reason))
        return Message(role="assistant", parts=parts), usage, stop


class AnthropicModel(Provider):
    """``tenax.core.protocols.Model`` over the Anthropic Messages API."""

    provider = "anthropic"
    client_class = anthropic.Anthropic
    http_client_class = anthropic.DefaultHttpxClient

    def __init__(
        self, name: str, *, cache_ttl: CacheTTL | None = None, thinking: dict[str, Any] | None = None,
        cache: bool = True, **kwargs: Any
    ):
        super().__init__(name, **kwargs)
        self.cache_ttl = cache_ttl
        self.thinking = thinking
        self.cache = cache  # False: no breakpoints at all (only to measure what they save)

    def _body(self, call: Call) -> dict[str, Any]:
        # The session id is unused: Anthropic caches by prefix and breakpoints, not by a key. The API
        # needs a max_tokens figure: the model's limit, or a modest one for a model in no table.
        return build_request(
            self.name,
            call.system,
            call.tools,
            call.messages,
            max_tokens=call.max_tokens or UNKNOWN_MODEL_MAX_TOKENS,
            cache=self.cache,
            cache_ttl=self.cache_ttl,
            thinking=self.thinking,
        )

    def convert(self, message: Message) -> list[dict[str, Any]]:
        return [message_to_anthropic(message)]

    def _marked(self, call: Call) -> dict[int, list[dict[str, Any]]]:
        """The two messages that carry a breakpoint (see ``cache_layout``), converted afresh with it."""
        if not self.cache:
            return {}
        mark = cache_control(self.cache_ttl)
        marked = {i: mark_message(message_to_anthropic(call.messages[i]), mark) for i in message_targets(call.messages)}
        return {i: [m] for i, m in marked.items() if m is not None}

    def _attempt(self, body: bytes) -> Reply:
        # The SDK's own POST with our encoded body (the SDK would copy the whole conversation and
        # encode it again on every turn), its HTTP client, headers, HTTP errors and SSE decoder; the
        # events are folded here from their JSON, not built into SDK objects event by event.
        response = self.client.post("/v1/messages", content=with_fields(body, stream=True), cast_to=httpx2.Response,
                                    options={"headers": {"Content-Type": "application/json",
                                                         RAW_RESPONSE_HEADER: "stream"}})
        answer = StreamedMessage()
        try:
            for sse in anthropic.Stream.raw_events(response):
                if sse.event == "error":  # as the SDK's own stream raises it
                    try:
                        err: Any = sse.json()
                    except ValueError:
                        err = sse.data
                    raise self.client._make_status_error(f"{err}", body=err, response=response)
                if sse.event and sse.data and sse.event != "ping":
                    with misshapen(f"a {sse.event} event of the stream"):
                        answer.add(sse.event, sse.json())
        finally:
            response.close()
        if not answer.started or answer.stop_reason is None:  # ended before message_start / message_delta
            raise StreamFailed(Failure(message="stream ended before the message was complete", retryable=True))
        with misshapen("the streamed message"):
            return Reply(*answer.neutral(), model=answer.model, request_id=response.headers.get("request-id"))
