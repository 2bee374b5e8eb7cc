"""Shared pieces of the simulator's wire protocols."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable
import itertools
import threading

from tenax.testing.cache import Block
from tenax.testing.script import SimRequest
from tenax.testing.tokens import block_key, canonical_json, count_tokens


class InvalidRequest(Exception):
    """A request the real API would reject; rendered in the provider's own error shape."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.kind = kind


@dataclass
class Parsed:
    """A validated request: what the policy sees plus the blocks the cache engine sees."""

    req: SimRequest
    blocks: list[Block]
    stream: bool
    max_output: int | None = None  # output token limit the request sets
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return sum(b.tokens for b in self.blocks)


@dataclass
class OutCall:
    id: str
    name: str
    arguments: dict[str, Any]
    item_id: str = ""  # OpenAI Responses function_call item id
    cut: str | None = None  # the arguments JSON as far as it got before the output token limit

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)

    @property
    def wire_arguments(self) -> str:
        """The arguments text the API sends: whole, or cut off by the output token limit."""
        return self.arguments_json if self.cut is None else self.cut


@dataclass
class Turn:
    """The simulated model output of one request, provider-neutral."""

    text: str
    calls: list[OutCall]
    reasoning: str | None
    output_tokens: int
    reasoning_tokens: int
    truncated: bool  # the output token limit cut it short


class Counter:
    """Thread-safe id counter: ``next("toolu_sim_")`` -> ``toolu_sim_1``, ``toolu_sim_2``..."""

    def __init__(self) -> None:
        self._it = itertools.count(1)
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._it)}"


def make_block(content: Any, text: str | None = None, breakpoint: str | None = None) -> Block:
    """A cache block: key = hash of ``content``; tokens = count_tokens(text) when the block is
    text-like, else count_tokens of its canonical JSON (see tenax.testing.tokens)."""
    tokens = count_tokens(text if text is not None else canonical_json(content))
    return Block(key=block_key(content), tokens=tokens, breakpoint=breakpoint)


def chunks(text: str, size: int = 24) -> list[str]:
    """Split ``text`` into stream deltas (never empty list entries)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def build_turn(reply_text: str, tool_calls: list, reasoning: str | None, override: int | None,
               limit: int | None, new_call_id: Callable[[], str]) -> Turn:
    """Compute the output (and its token count), applying an output token limit like the APIs:
    past the limit the output stops where the budget ends (text first, then each call's arguments
    JSON; the call it ends in keeps its JSON up to there in ``cut``, later calls are dropped) and
    ``truncated`` is set."""
    calls = [OutCall(id=new_call_id(), name=c.name, arguments=dict(c.arguments)) for c in tool_calls]
    reasoning_tokens = count_tokens(reasoning) if reasoning else 0
    computed = (
        count_tokens(reply_text) + sum(count_tokens(c.arguments_json) for c in calls) + reasoning_tokens
    )
    out = override if override is not None else computed
    truncated = False
    if limit is not None and out > limit:
        truncated = True
        room = max(0, limit - reasoning_tokens) * 4  # characters
        reply_text = reply_text[:room]
        room -= len(reply_text)
        kept = []
        for call in calls:
            if room <= 0:
                break
            text = call.arguments_json
            if len(text) > room:
                call.cut = text[:room]
            kept.append(call)
            room -= len(text)
        calls = kept
        out = limit
    return Turn(text=reply_text, calls=calls, reasoning=reasoning, output_tokens=out,
                reasoning_tokens=min(reasoning_tokens, out), truncated=truncated)


def text_of(content: Any) -> str:
    """Plain text of a content value: a string or a list of blocks with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def require(cond: bool, message: str, **kw: Any) -> None:
    if not cond:
        raise InvalidRequest(message, **kw)


def type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
