"""Anthropic Messages API provider (streaming, our retries, our cache breakpoints)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anthropic
from anthropic.lib.streaming import MessageStreamManager

from tenax.harness._provider import Call, Provider, Reply
from tenax.harness._serialize import BodyEncoder, Memo, sorted_json, tool_call
from tenax.harness.cache_layout import CacheTTL, apply_cache_layout
from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.harness.retry import Failure, StreamFailed

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
    to_messages: Callable[[list[Message]], list[dict[str, Any]]] = messages_to_anthropic,
    to_tools: Callable[[list[ToolSpec]], list[dict[str, Any]]] = tools_to_anthropic,
) -> dict[str, Any]:
    """The request body (without ``stream``); deterministic for equal inputs. ``to_messages`` /
    ``to_tools`` convert the neutral messages and tools (a provider passes memoized ones)."""
    a_tools = to_tools(tools)
    a_system = [{"type": "text", "text": system}] if system else []
    a_messages = to_messages(messages)
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


def response_to_neutral(msg: Any, raw_inputs: dict[int, str] | None = None) -> tuple[Message, Usage, str]:
    """``raw_inputs``: each streamed tool_use block's input JSON as sent (by block index). The SDK
    parses a cut-off input leniently into a plausible dict; the raw text shows it was cut."""
    parts: list[Any] = []
    cut = msg.stop_reason in ("max_tokens", "model_context_window_exceeded")
    for index, block in enumerate(msg.content):
        btype = getattr(block, "type", None)
        if btype == "text":
            if block.text:
                parts.append(TextPart(text=block.text))
        elif btype == "tool_use":
            raw = (raw_inputs or {}).get(index)
            parts.append(tool_call(block.id, block.name, block.input if raw is None else raw, cut=cut))
        elif btype == "thinking":
            parts.append(ReasoningPart(text=block.thinking, signature=block.signature))
        elif btype == "redacted_thinking":
            parts.append(ReasoningPart(data={REDACTED_KEY: block.data}))
    u = msg.usage
    usage = Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_tokens=u.cache_read_input_tokens or 0,
        cache_write_tokens=u.cache_creation_input_tokens or 0,
    )
    stop = STOP_REASONS.get(msg.stop_reason or "end_turn", str(msg.stop_reason))
    return Message(role="assistant", parts=parts), usage, stop


class AnthropicModel(Provider):
    """``tenax.core.protocols.Model`` over the Anthropic Messages API."""

    provider = "anthropic"
    client_class = anthropic.Anthropic

    def __init__(
        self, name: str, *, cache_ttl: CacheTTL | None = None, thinking: dict[str, Any] | None = None, **kwargs: Any
    ):
        super().__init__(name, **kwargs)
        self.cache_ttl = cache_ttl
        self.thinking = thinking
        # Each message and tool is converted and JSON-encoded once, then reused on every later turn.
        self._messages, self._tools = Memo(message_to_anthropic), Memo(tool_to_anthropic)
        self._encode = BodyEncoder("messages")

    def _body(self, call: Call) -> dict[str, Any]:
        # The session id is unused: Anthropic caches by prefix and breakpoints, not by a key. The API
        # needs a max_tokens figure: the model's limit, or a modest one for a model in no table.
        return build_request(
            self.name,
            call.system,
            call.tools,
            call.messages,
            max_tokens=call.max_tokens or UNKNOWN_MODEL_MAX_TOKENS,
            cache_ttl=self.cache_ttl,
            thinking=self.thinking,
            to_messages=self._messages,
            to_tools=self._tools,
        )

    def _attempt(self, kwargs: dict[str, Any]) -> tuple[Any, str | None, dict[int, str]]:
        raw_inputs: dict[int, str] = {}
        # The SDK's own POST with our encoded body: the SDK would copy the whole conversation and
        # encode it again on every turn. Its HTTP client, headers, errors and stream parsing stay.
        body = self._encode({**kwargs, "stream": True})
        request = functools.partial(self.client.post, "/v1/messages", content=body, cast_to=anthropic.types.Message,
                                    stream=True, stream_cls=anthropic.Stream[anthropic.types.RawMessageStreamEvent],
                                    options={"headers": {"Content-Type": "application/json"}})
        with MessageStreamManager(request, output_format=anthropic.NOT_GIVEN) as stream:
            for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    raw_inputs[event.index] = raw_inputs.get(event.index, "") + event.delta.partial_json
            try:
                final = stream.get_final_message()
            except AssertionError:  # the SDK saw no message_start at all
                final = None
            if final is None or final.stop_reason is None:  # the stream ended before message_delta/message_stop
                raise StreamFailed(Failure(message="stream ended before the message was complete", retryable=True))
            return final, stream.request_id, raw_inputs

    def _reply(self, answer: tuple[Any, str | None, dict[int, str]], kwargs: dict[str, Any]) -> Reply:
        final, request_id, raw_inputs = answer
        return Reply(*response_to_neutral(final, raw_inputs), model=getattr(final, "model", None),
                     request_id=request_id)
