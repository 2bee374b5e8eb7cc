"""OpenAI providers: the Responses API (``openai:``) and Chat Completions (``openai-chat:``,
for OpenAI-compatible servers such as DeepSeek, vLLM, Ollama and llama.cpp)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import openai
from openai._constants import RAW_RESPONSE_HEADER

from tenax.harness._provider import Call, Provider, Reply
from tenax.harness._serialize import dumps_args, sorted_json, tool_call, with_fields
from tenax.harness.estimate import estimate_body_tokens, estimate_json_tokens, estimate_tokens
from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.harness.retry import Failure, StreamFailed

REASONING_KEY = "openai_reasoning"
ERROR_PREFIX = "[tool error] "


def is_openai_base(base_url: str | None) -> bool:
    """True for OpenAI's own API (the default when no base URL is given)."""
    if not base_url:
        return True
    host = (urlparse(base_url).hostname or "").lower()
    return host == "api.openai.com"


def _result_text(part: ToolResultPart) -> str:
    # Neither OpenAI API has an is_error flag on tool output; say it in the text.
    return ERROR_PREFIX + part.content if part.is_error else part.content


def _usage_from(input_tokens: int | None, cached: int | None, output_tokens: int | None) -> Usage:
    total_in = input_tokens or 0
    cached = min(cached or 0, total_in)
    return Usage(input_tokens=total_in - cached, cache_read_tokens=cached, output_tokens=output_tokens or 0)


def _failure_from_event(code: str | None, message: str | None) -> StreamFailed:
    too_long = code == "context_length_exceeded"
    retryable = not too_long and code not in ("invalid_prompt", "invalid_request_error")
    return StreamFailed(
        Failure(
            message=message or f"stream failed ({code})",
            status=400 if too_long else None,
            retryable=retryable,
            context_too_long=too_long,
            code=code,
            invalid_request=not too_long and not retryable,
        )
    )


def _post(client: openai.OpenAI, path: str, body: bytes, cast_to: Any, stream_cls: Any = None) -> Any:
    """The SDK's own POST with our encoded body (the SDK would copy and re-encode the whole
    conversation every turn). Its HTTP client, headers, errors and stream parsing stay. Without
    ``stream_cls``: the raw response (``.parse()``, ``.headers``)."""
    headers = {"Content-Type": "application/json"}
    if stream_cls is None:
        headers[RAW_RESPONSE_HEADER] = "true"
    return client.post(path, content=body, cast_to=cast_to, options={"headers": headers},
                       stream=stream_cls is not None, stream_cls=stream_cls)


# --------------------------------------------------------------------------- Responses API


def tool_to_responses(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": sorted_json(tool.parameters),
        "strict": False,
    }


def message_to_responses(m: Message) -> list[dict[str, Any]]:
    """One message as Responses input items (a user message: tool outputs, then its text)."""
    items: list[dict[str, Any]] = []
    if m.role == "user":
        texts: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, ToolResultPart):
                items.append({"type": "function_call_output", "call_id": p.tool_call_id, "output": _result_text(p)})
            elif isinstance(p, TextPart) and p.text:
                texts.append({"type": "input_text", "text": p.text})
        if texts:
            items.append({"type": "message", "role": "user", "content": texts})
        return items
    text_run: list[str] = []

    def flush() -> None:
        if text_run:
            items.append({"type": "message", "role": "assistant", "content": "".join(text_run)})
            text_run.clear()

    for p in m.parts:
        if isinstance(p, TextPart):
            if p.text:
                text_run.append(p.text)
        elif isinstance(p, ReasoningPart):
            flush()
            if p.data and REASONING_KEY in p.data:  # only our own reasoning items can be replayed
                items.append(sorted_json(p.data[REASONING_KEY]))
        elif isinstance(p, ToolCallPart):
            flush()
            items.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": dumps_args(p.arguments)})
    flush()
    return items


def messages_to_responses_input(messages: list[Message]) -> list[dict[str, Any]]:
    return [item for m in messages for item in message_to_responses(m)]


def responses_output_to_neutral(response: Any) -> tuple[Message, Usage, str]:
    parts: list[Any] = []
    has_calls = False
    reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
    cut = getattr(response, "status", None) == "incomplete" and reason == "max_output_tokens"
    for item in response.output or []:
        itype = getattr(item, "type", None)
        if itype == "message":
            text = "".join(
                getattr(c, "text", "") or "" for c in (item.content or []) if getattr(c, "type", "") == "output_text"
            )
            if text:
                parts.append(TextPart(text=text))
        elif itype == "function_call":
            has_calls = True
            parts.append(tool_call(item.call_id, item.name, item.arguments, cut=cut))
        elif itype == "reasoning":
            summary = [{"type": "summary_text", "text": s.text} for s in (item.summary or [])]
            echo: dict[str, Any] = {"type": "reasoning", "id": item.id, "summary": summary}
            if getattr(item, "encrypted_content", None):
                echo["encrypted_content"] = item.encrypted_content
            text = "\n".join(s["text"] for s in summary) or "".join(
                getattr(c, "text", "") for c in (getattr(item, "content", None) or [])
            )
            parts.append(ReasoningPart(text=text, data={REASONING_KEY: echo}))
    u = response.usage
    if u is not None:
        details = getattr(u, "input_tokens_details", None)
        usage = _usage_from(u.input_tokens, getattr(details, "cached_tokens", 0), u.output_tokens)
    else:
        usage = Usage()
    if getattr(response, "status", None) == "incomplete":
        stop = "max_tokens" if cut else str(reason or "incomplete")
    elif has_calls:
        stop = "tool_use"
    else:
        stop = "end_turn"
    return Message(role="assistant", parts=parts), usage, stop


class OpenAIResponsesModel(Provider):
    """``tenax.core.protocols.Model`` over the OpenAI Responses API (``store=False``)."""

    provider = "openai"
    client_class = openai.OpenAI

    def __init__(self, name: str, *, reasoning: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.reasoning = reasoning

    wire_key = "input"

    def convert(self, message: Message) -> list[dict[str, Any]]:
        return message_to_responses(message)

    def _body(self, call: Call) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "input": messages_to_responses_input(call.messages),
            "store": False,
            "prompt_cache_key": call.session_id,
        }
        if call.max_tokens is not None:
            kwargs["max_output_tokens"] = call.max_tokens
        if call.system:
            kwargs["instructions"] = call.system
        if call.tools:
            kwargs["tools"] = [tool_to_responses(t) for t in call.tools]
        if self.reasoning:
            kwargs["reasoning"] = self.reasoning
        return kwargs

    def _attempt(self, body: bytes) -> tuple[Any, str | None]:
        final = None
        stream = _post(self.client, "/responses", with_fields(body, stream=True), openai.types.responses.Response,
                       openai.Stream[openai.types.responses.ResponseStreamEvent])
        with stream:
            request_id = stream.response.headers.get("x-request-id")
            for event in stream:
                etype = getattr(event, "type", None)
                if etype in ("response.completed", "response.incomplete"):
                    final = event.response
                elif etype == "response.failed":
                    err = getattr(event.response, "error", None)
                    raise _failure_from_event(getattr(err, "code", None), getattr(err, "message", None))
                elif etype == "error":
                    raise _failure_from_event(getattr(event, "code", None), getattr(event, "message", None))
        if final is None:
            raise StreamFailed(Failure(message="stream ended without response.completed", retryable=True))
        return final, request_id

    def _reply(self, answer: tuple[Any, str | None], body: bytes) -> Reply:
        final, request_id = answer
        return Reply(*responses_output_to_neutral(final), model=getattr(final, "model", None), request_id=request_id)


# --------------------------------------------------------------------------- Chat Completions

FINISH_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


def tool_to_chat(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": sorted_json(tool.parameters)},
    }


def message_to_chat(m: Message) -> list[dict[str, Any]]:
    """One message as Chat Completions messages (a user message: tool messages, then its text)."""
    if m.role == "user":
        out = [{"role": "tool", "tool_call_id": p.tool_call_id, "content": _result_text(p)}
               for p in m.parts if isinstance(p, ToolResultPart)]
        text = "".join(p.text for p in m.parts if isinstance(p, TextPart) and p.text)
        return out + [{"role": "user", "content": text}] if text else out
    calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": dumps_args(p.arguments)}}
             for p in m.parts if isinstance(p, ToolCallPart)]
    # Never null: older llama.cpp servers answer an assistant message with "content": null with a 500.
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(p.text for p in m.parts if isinstance(p, TextPart))}
    if calls:
        msg["tool_calls"] = calls
    return [msg]


def messages_to_chat(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    lead = [{"role": "system", "content": system}] if system else []
    return lead + [item for m in messages for item in message_to_chat(m)]


def _merge_name(current: str, delta: str) -> str:
    """A streamed tool-call name. OpenAI sends it once; some servers repeat the whole name in every
    delta (or send it growing), others split it: take a repeat once, append only a real piece."""
    if not current or delta.startswith(current):
        return delta
    return current + delta


class EmptyAnswer(Exception):
    """A 200 answer with no output at all: no text, no tool call, no finish reason or no tokens."""


_STREAM_TOOL_CHOICE = re.compile(r"stream\w*\s+tool.?choice|tool.?choice.*stream", re.IGNORECASE)


class OpenAIChatModel(Provider):
    """``tenax.core.protocols.Model`` over Chat Completions (OpenAI or any compatible server).

    Compatible servers differ from OpenAI; each difference handled here was seen on a real one:
    repeated tool names in stream deltas, no usage (estimated locally, ``estimated=True``), tools
    ignored unless ``tool_choice`` is sent, streamed calls with tools refused with an empty 200
    (this model object then calls without streaming from then on), and a prompt over the context
    window answered with an empty 200 (raised as ``ContextTooLong``)."""

    provider = "openai-chat"
    client_class = openai.OpenAI

    def __init__(self, name: str, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.stream_tools = True  # False once the server refused a streamed call with tools
        self.with_tools = False  # the body being sent has tools

    def convert(self, message: Message) -> list[dict[str, Any]]:
        return message_to_chat(message)

    def encode(self, call: Call) -> bytes:
        self.with_tools = bool(call.tools)
        return super().encode(call)

    def _body(self, call: Call) -> dict[str, Any]:
        official = is_openai_base(self.base_url)
        kwargs: dict[str, Any] = {"model": self.name, "messages": messages_to_chat(call.system, call.messages)}
        if call.max_tokens is not None:
            # OpenAI deprecated max_tokens; compatible servers mostly only know max_tokens.
            kwargs["max_completion_tokens" if official else "max_tokens"] = call.max_tokens
        if call.tools:
            kwargs["tools"] = [tool_to_chat(t) for t in call.tools]
            kwargs["tool_choice"] = "auto"  # some servers leave the tools out of the prompt without it
        if official:
            # Local servers may reject unknown parameters; send it only to OpenAI itself.
            kwargs["prompt_cache_key"] = call.session_id
        return kwargs

    def _streamed(self, body: bytes) -> dict[str, Any]:
        text: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish = None
        usage = None
        model = None
        saw_output = False
        try:
            stream = _post(self.client, "/chat/completions",
                           with_fields(body, stream=True, stream_options={"include_usage": True}),
                           openai.types.chat.ChatCompletion, openai.Stream[openai.types.chat.ChatCompletionChunk])
            with stream:
                request_id = stream.response.headers.get("x-request-id")
                for chunk in stream:
                    model = getattr(chunk, "model", None) or model
                    if getattr(chunk, "usage", None) is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or []:
                        if choice.index != 0:
                            continue
                        saw_output = True
                        delta = choice.delta
                        if delta is not None:
                            if delta.content:
                                text.append(delta.content)
                            extra = getattr(delta, "model_extra", None) or {}
                            rc = extra.get("reasoning_content") or extra.get("reasoning")
                            if isinstance(rc, str) and rc:
                                reasoning.append(rc)
                            for tc in delta.tool_calls or []:
                                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                                if tc.id:
                                    slot["id"] = tc.id
                                if tc.function is not None:
                                    if tc.function.name:
                                        slot["name"] = _merge_name(slot["name"], tc.function.name)
                                    if tc.function.arguments:
                                        slot["arguments"] += tc.function.arguments
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except openai.APIError as exc:
            if getattr(exc, "status_code", None) is None and _STREAM_TOOL_CHOICE.search(str(exc.message)):
                raise EmptyAnswer(str(exc.message)) from exc
            raise
        if not saw_output:
            raise EmptyAnswer("an empty 200 stream")
        if finish is None:  # cut off before the final chunk: never take a partial answer
            raise StreamFailed(Failure(message="stream ended without a finish_reason", retryable=True))
        return {"text": "".join(text), "reasoning": "".join(reasoning), "calls": [calls[i] for i in sorted(calls)],
                "finish": finish, "usage": usage, "model": model, "request_id": request_id}

    def _whole(self, body: bytes) -> dict[str, Any]:
        raw = _post(self.client, "/chat/completions", body, openai.types.chat.ChatCompletion)
        completion = raw.parse()
        choice = next((c for c in completion.choices or [] if c.index == 0), None)
        if choice is None:
            raise EmptyAnswer("a 200 answer with no choices")
        msg = choice.message
        extra = getattr(msg, "model_extra", None) or {}
        rc = extra.get("reasoning_content") or extra.get("reasoning")
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments or ""}
                 for c in msg.tool_calls or [] if getattr(c, "function", None) is not None]
        return {"text": msg.content or "", "reasoning": rc if isinstance(rc, str) else "", "calls": calls,
                "finish": choice.finish_reason or "stop", "usage": completion.usage, "model": completion.model,
                "request_id": raw.headers.get("x-request-id")}

    def _call(self, body: bytes) -> dict[str, Any]:
        """One attempt: streamed, unless the server refused streaming with tools before."""
        with_tools = self.with_tools
        if with_tools and not self.stream_tools:
            return _nonempty(self._whole(body))
        try:
            return _nonempty(self._streamed(body))
        except EmptyAnswer:
            if not with_tools:
                raise
        # Some servers refuse a streamed call with tools with an empty 200: ask once without
        # streaming; if that answers, stay with it for this model object.
        out = _nonempty(self._whole(body))
        self.stream_tools = False
        return out

    def _attempt(self, body: bytes) -> dict[str, Any]:
        try:
            return self._call(body)
        except EmptyAnswer as exc:
            raise StreamFailed(Failure(
                message=f"the server answered {exc} (no output, no error): the prompt (about "
                        f"{estimate_body_tokens(body)} tokens by a local estimate) most likely "
                        "exceeds its context window",
                status=200, context_too_long=True)) from exc

    def _reply(self, out: dict[str, Any], body: bytes) -> Reply:
        cut = out["finish"] == "length"
        parts: list[Any] = []
        if out["reasoning"]:
            parts.append(ReasoningPart(text=out["reasoning"]))
        if out["text"]:
            parts.append(TextPart(text=out["text"]))
        for n, c in enumerate(out["calls"]):
            call_id = c["id"] or f"call_tenax_{n}"  # some local servers omit ids
            parts.append(tool_call(call_id, c["name"], c["arguments"], cut=cut))
        u = out["usage"]
        estimated = u is None
        if u is not None:
            details = getattr(u, "prompt_tokens_details", None)
            usage = _usage_from(u.prompt_tokens, getattr(details, "cached_tokens", 0), u.completion_tokens)
        else:  # the server reports none: estimate, so budgets and compaction keep working
            usage = Usage(input_tokens=estimate_body_tokens(body),
                          output_tokens=estimate_json_tokens(out["calls"]) + estimate_tokens(out["text"] + out["reasoning"]))
        if out["calls"] and not cut:
            stop = "tool_use"
        else:
            stop = FINISH_REASONS.get(out["finish"] or "stop", str(out["finish"]))
        return Reply(Message(role="assistant", parts=parts), usage, stop, model=out["model"],
                     request_id=out["request_id"], estimated=estimated)


def _nonempty(out: dict[str, Any]) -> dict[str, Any]:
    """``out`` unless it holds nothing at all (no text, reasoning or call, and no output tokens)."""
    produced = getattr(out["usage"], "completion_tokens", None)
    if not (out["text"] or out["reasoning"] or out["calls"]) and not produced:
        raise EmptyAnswer("200 with an empty answer")
    return out
