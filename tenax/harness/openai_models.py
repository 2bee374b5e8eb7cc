"""OpenAI providers: the Responses API (``openai:``) and Chat Completions (``openai-chat:``,
for OpenAI-compatible servers such as DeepSeek, vLLM, Ollama and llama.cpp)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import openai

from tenax.harness._serialize import dumps_args, loads_args, sorted_json
from tenax.core.messages import (
    Message,
    ModelResponse,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from tenax.harness.retry import Failure, RetryPolicy, StreamFailed, call_with_retries

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


class _OpenAIBase:
    provider = "openai"

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 600,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.name = name
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def _run(self, attempt: Callable[[], Any]) -> tuple[Any, list]:
        return call_with_retries(
            attempt, self.retry, provider=self.provider, model=self.name, url=self.base_url, sleep=self.sleep,
            rng=self.rng,
        )


# --------------------------------------------------------------------------- Responses API


def tool_to_responses(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": sorted_json(tool.parameters),
        "strict": False,
    }


def messages_to_responses_input(messages: list[Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "user":
            texts: list[dict[str, Any]] = []
            for p in m.parts:
                if isinstance(p, ToolResultPart):
                    items.append(
                        {"type": "function_call_output", "call_id": p.tool_call_id, "output": _result_text(p)}
                    )
                elif isinstance(p, TextPart) and p.text:
                    texts.append({"type": "input_text", "text": p.text})
            if texts:
                items.append({"type": "message", "role": "user", "content": texts})
            continue
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
                items.append(
                    {"type": "function_call", "call_id": p.id, "name": p.name, "arguments": dumps_args(p.arguments)}
                )
        flush()
    return items


def responses_output_to_neutral(response: Any) -> tuple[Message, Usage, str]:
    parts: list[Any] = []
    has_calls = False
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
            parts.append(ToolCallPart(id=item.call_id, name=item.name, arguments=loads_args(item.arguments)))
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
    if has_calls:
        stop = "tool_use"
    elif getattr(response, "status", None) == "incomplete":
        reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
        stop = "max_tokens" if reason == "max_output_tokens" else str(reason or "incomplete")
    else:
        stop = "end_turn"
    return Message(role="assistant", parts=parts), usage, stop


class OpenAIResponsesModel(_OpenAIBase):
    """``tenax.core.protocols.Model`` over the OpenAI Responses API (``store=False``)."""

    provider = "openai"

    def __init__(self, name: str, *, reasoning: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.reasoning = reasoning

    def build_request(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int = 8192,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "input": messages_to_responses_input(messages),
            "store": False,
            "max_output_tokens": max_tokens,
            "prompt_cache_key": session_id,
        }
        if system:
            kwargs["instructions"] = system
        if tools:
            kwargs["tools"] = [tool_to_responses(t) for t in tools]
        if self.reasoning:
            kwargs["reasoning"] = self.reasoning
        return kwargs

    def complete(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int = 8192,
    ) -> ModelResponse:
        kwargs = self.build_request(system, tools, messages, session_id=session_id, max_tokens=max_tokens)

        def attempt() -> tuple[Any, str | None]:
            final = None
            stream = self.client.responses.create(stream=True, **kwargs)
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

        (final, request_id), attempts = self._run(attempt)
        message, usage, stop = responses_output_to_neutral(final)
        return ModelResponse(
            message=message,
            usage=usage,
            stop_reason=stop,
            model=getattr(final, "model", None) or self.name,
            attempts=attempts,
            request_id=request_id,
        )


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


def messages_to_chat(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for m in messages:
        if m.role == "user":
            texts = []
            for p in m.parts:
                if isinstance(p, ToolResultPart):
                    out.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": _result_text(p)})
                elif isinstance(p, TextPart) and p.text:
                    texts.append(p.text)
            if texts:
                out.append({"role": "user", "content": "".join(texts)})
            continue
        text = "".join(p.text for p in m.parts if isinstance(p, TextPart))
        calls = [
            {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": dumps_args(p.arguments)}}
            for p in m.parts
            if isinstance(p, ToolCallPart)
        ]
        msg: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


class OpenAIChatModel(_OpenAIBase):
    """``tenax.core.protocols.Model`` over Chat Completions (OpenAI or any compatible server)."""

    provider = "openai-chat"

    def build_request(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int = 8192,
    ) -> dict[str, Any]:
        official = is_openai_base(self.base_url)
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": messages_to_chat(system, messages),
            "stream_options": {"include_usage": True},
        }
        # OpenAI deprecated max_tokens; compatible servers mostly only know max_tokens.
        kwargs["max_completion_tokens" if official else "max_tokens"] = max_tokens
        if tools:
            kwargs["tools"] = [tool_to_chat(t) for t in tools]
        if official:
            # Local servers may reject unknown parameters; send it only to OpenAI itself.
            kwargs["extra_body"] = {"prompt_cache_key": session_id}
        return kwargs

    def complete(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int = 8192,
    ) -> ModelResponse:
        kwargs = self.build_request(system, tools, messages, session_id=session_id, max_tokens=max_tokens)

        def attempt() -> dict[str, Any]:
            text: list[str] = []
            reasoning: list[str] = []
            calls: dict[int, dict[str, Any]] = {}
            finish = None
            usage = None
            model = None
            stream = self.client.chat.completions.create(stream=True, **kwargs)
            with stream:
                request_id = stream.response.headers.get("x-request-id")
                for chunk in stream:
                    model = getattr(chunk, "model", None) or model
                    if getattr(chunk, "usage", None) is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or []:
                        if choice.index != 0:
                            continue
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
                                        slot["name"] += tc.function.name
                                    if tc.function.arguments:
                                        slot["arguments"] += tc.function.arguments
                        if choice.finish_reason:
                            finish = choice.finish_reason
            if finish is None:  # cut off before the final chunk: never take a partial answer
                raise StreamFailed(Failure(message="stream ended without a finish_reason", retryable=True))
            return {
                "text": "".join(text),
                "reasoning": "".join(reasoning),
                "calls": [calls[i] for i in sorted(calls)],
                "finish": finish,
                "usage": usage,
                "model": model,
                "request_id": request_id,
            }

        out, attempts = self._run(attempt)
        parts: list[Any] = []
        if out["reasoning"]:
            parts.append(ReasoningPart(text=out["reasoning"]))
        if out["text"]:
            parts.append(TextPart(text=out["text"]))
        for n, c in enumerate(out["calls"]):
            call_id = c["id"] or f"call_tenax_{n}"  # some local servers omit ids
            parts.append(ToolCallPart(id=call_id, name=c["name"], arguments=loads_args(c["arguments"])))
        u = out["usage"]
        if u is not None:
            details = getattr(u, "prompt_tokens_details", None)
            usage = _usage_from(u.prompt_tokens, getattr(details, "cached_tokens", 0), u.completion_tokens)
        else:
            usage = Usage()
        stop = "tool_use" if out["calls"] else FINISH_REASONS.get(out["finish"] or "stop", str(out["finish"]))
        return ModelResponse(
            message=Message(role="assistant", parts=parts),
            usage=usage,
            stop_reason=stop,
            model=out["model"] or self.name,
            attempts=attempts,
            request_id=out["request_id"],
        )
