"""OpenAI providers: the Responses API (``openai:``) and Chat Completions (``openai-chat:``,
for OpenAI-compatible servers such as DeepSeek, vLLM, Ollama and llama.cpp)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import openai
from openai._base_client import httpx2
from openai._constants import RAW_RESPONSE_HEADER
from openai._streaming import SSEDecoder

from tenax.harness._provider import Call, Provider, Reply
from tenax.harness._serialize import dumps_args, sorted_json, tool_call, with_fields
from tenax.harness.estimate import estimate_body_tokens, estimate_json_tokens, estimate_tokens
from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.harness.retry import Failure, StreamFailed, misshapen

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


def _post(client: openai.OpenAI, path: str, body: bytes, *, stream: bool) -> Any:
    """The SDK's own POST with our encoded body (the SDK would copy and re-encode the whole
    conversation every turn): its HTTP client, headers and HTTP errors stay. The answer is the
    raw response (streamed: its body not read yet), read here from its JSON, never built into SDK
    objects chunk by chunk."""
    headers = {"Content-Type": "application/json", RAW_RESPONSE_HEADER: "stream" if stream else "true"}
    return client.post(path, content=body, cast_to=httpx2.Response, options={"headers": headers})


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON of each server-sent event of a streamed answer (the SDK's SSE decoder), up to
    ``[DONE]``; an error sent in the stream raises as the SDK's own stream raises it."""
    try:
        for sse in SSEDecoder().iter_bytes(response.iter_bytes()):
            if sse.data.startswith("[DONE]"):
                return
            data = sse.json()
            if not isinstance(data, dict):
                raise StreamFailed(Failure(message=f"an event of the stream is not a JSON object: {sse.data[:200]!r}",
                                           retryable=True))
            if data.get("error"):
                error = data["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise openai.APIError(message if isinstance(message, str) and message else
                                      "An error occurred during streaming", request=response.request, body=error)
            yield data
    finally:
        response.close()


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


def responses_output_to_neutral(response: dict[str, Any]) -> tuple[Message, Usage, str]:
    """A Responses answer (its JSON) in neutral form."""
    parts: list[Any] = []
    has_calls = False
    reason = (response.get("incomplete_details") or {}).get("reason")
    cut = response.get("status") == "incomplete" and reason == "max_output_tokens"
    for item in response.get("output") or []:
        itype = item.get("type")
        if itype == "message":
            text = "".join(c.get("text") or "" for c in item.get("content") or [] if c.get("type") == "output_text")
            if text:
                parts.append(TextPart(text=text))
        elif itype == "function_call":
            has_calls = True
            parts.append(tool_call(item.get("call_id"), item.get("name"), item.get("arguments"), cut=cut))
        elif itype == "reasoning":
            summary = [{"type": "summary_text", "text": s.get("text")} for s in item.get("summary") or []]
            echo: dict[str, Any] = {"type": "reasoning", "id": item.get("id"), "summary": summary}
            if item.get("encrypted_content"):
                echo["encrypted_content"] = item["encrypted_content"]
            text = "\n".join(s["text"] for s in summary) or "".join(c.get("text") or "" for c in item.get("content") or [])
            parts.append(ReasoningPart(text=text, data={REASONING_KEY: echo}))
    u = response.get("usage")
    if u is not None:
        usage = _usage_from(u.get("input_tokens"), (u.get("input_tokens_details") or {}).get("cached_tokens"),
                            u.get("output_tokens"))
    else:
        usage = Usage()
    if response.get("status") == "incomplete":
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
    http_client_class = openai.DefaultHttpxClient

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

    def _attempt(self, body: bytes) -> Reply:
        final = None
        response = _post(self.client, "/responses", with_fields(body, stream=True), stream=True)
        for event in _events(response):
            with misshapen(f"a {event.get('type')} event of the stream"):
                etype = event.get("type")
                if etype in ("response.completed", "response.incomplete"):
                    final = event.get("response")
                elif etype == "response.failed":
                    err = (event.get("response") or {}).get("error") or {}
                    raise _failure_from_event(err.get("code"), err.get("message"))
                elif etype == "error":
                    raise _failure_from_event(event.get("code"), event.get("message"))
        if not isinstance(final, dict):
            raise StreamFailed(Failure(message="stream ended without response.completed", retryable=True))
        with misshapen("the response"):
            return Reply(*responses_output_to_neutral(final), model=final.get("model"),
                         request_id=response.headers.get("x-request-id"))


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
    http_client_class = openai.DefaultHttpxClient

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
            response = _post(self.client, "/chat/completions",
                             with_fields(body, stream=True, stream_options={"include_usage": True}), stream=True)
            request_id = response.headers.get("x-request-id")
            for chunk in _events(response):
                with misshapen("a chunk of the stream"):
                    model = chunk.get("model") or model
                    if chunk.get("usage") is not None:
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        saw_output = True
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            text.append(delta["content"])
                        rc = delta.get("reasoning_content") or delta.get("reasoning")
                        if isinstance(rc, str) and rc:
                            reasoning.append(rc)
                        for tc in delta.get("tool_calls") or []:
                            slot = calls.setdefault(tc.get("index", 0), {"id": None, "name": "", "arguments": ""})
                            if tc.get("id"):
                                slot["id"] = tc["id"]
                            function = tc.get("function") or {}
                            if function.get("name"):
                                slot["name"] = _merge_name(slot["name"], function["name"])
                            if function.get("arguments"):
                                slot["arguments"] += function["arguments"]
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
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
        raw = _post(self.client, "/chat/completions", body, stream=False)
        completion = raw.http_response.json()
        with misshapen("the answer"):
            return self._read_whole(completion, raw.headers.get("x-request-id"))

    @staticmethod
    def _read_whole(completion: dict[str, Any], request_id: str | None) -> dict[str, Any]:
        choice = next((c for c in completion.get("choices") or [] if c.get("index", 0) == 0), None)
        if choice is None:
            raise EmptyAnswer("a 200 answer with no choices")
        msg = choice.get("message") or {}
        rc = msg.get("reasoning_content") or msg.get("reasoning")
        calls = [{"id": c.get("id"), "name": c["function"].get("name") or "", "arguments": c["function"].get("arguments") or ""}
                 for c in msg.get("tool_calls") or [] if c.get("function")]
        return {"text": msg.get("content") or "", "reasoning": rc if isinstance(rc, str) else "", "calls": calls,
                "finish": choice.get("finish_reason") or "stop", "usage": completion.get("usage"),
                "model": completion.get("model"), "request_id": request_id}

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

    def _attempt(self, body: bytes) -> Reply:
        try:
            out = self._call(body)
        except EmptyAnswer as exc:
            raise StreamFailed(Failure(
                message=f"the server answered {exc} (no output, no error): the prompt (about "
                        f"{estimate_body_tokens(body)} tokens by a local estimate) most likely "
                        "exceeds its context window",
                status=200, context_too_long=True)) from exc
        with misshapen("the answer"):
            return self._reply(out, body)

    @staticmethod
    def _reply(out: dict[str, Any], body: bytes) -> Reply:
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
            usage = _usage_from(u.get("prompt_tokens"), (u.get("prompt_tokens_details") or {}).get("cached_tokens"),
                                u.get("completion_tokens"))
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
    produced = (out["usage"] or {}).get("completion_tokens")
    if not (out["text"] or out["reasoning"] or out["calls"]) and not produced:
        raise EmptyAnswer("200 with an empty answer")
    return out
