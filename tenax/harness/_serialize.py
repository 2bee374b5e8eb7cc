"""Deterministic serialization helpers shared by the providers."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tenax.core.messages import ToolCallPart


def sorted_json(obj: Any) -> Any:
    """A copy of ``obj`` with every dict's keys in sorted order (lists keep their order).

    The SDKs serialize dicts in insertion order, so sorting here makes tool schemas and
    tool-call arguments byte-stable even after a round trip through a store that reorders
    keys (e.g. PostgreSQL JSONB).
    """
    if isinstance(obj, dict):
        return {k: sorted_json(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [sorted_json(v) for v in obj]
    return obj


def dumps_args(arguments: dict[str, Any]) -> str:
    """Tool-call arguments as the JSON string OpenAI APIs expect, byte-stable."""
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


CUT_OFF = "cut off by max_tokens: the arguments JSON is incomplete"


def tool_call(call_id: str, name: str, raw: str | dict[str, Any] | None, *, cut: bool) -> ToolCallPart:
    """A model-issued tool call from its raw arguments JSON. Arguments that are not one complete
    JSON object are never repaired: the call gets ``arguments={}`` and an ``error`` the engine answers
    it with (``cut``: the output hit max_tokens, so incomplete JSON was cut off there)."""
    if isinstance(raw, dict):
        return ToolCallPart(id=call_id, name=name, arguments=raw)
    if not raw:
        return ToolCallPart(id=call_id, name=name, error=CUT_OFF if cut else None)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        error = CUT_OFF if cut else f"arguments are not valid JSON: {exc.msg} at character {exc.pos}"
        return ToolCallPart(id=call_id, name=name, error=error)
    if not isinstance(value, dict):
        return ToolCallPart(id=call_id, name=name, error=f"arguments are not a JSON object: got {type(value).__name__}")
    return ToolCallPart(id=call_id, name=name, arguments=value)


def dumps(obj: Any) -> str:
    """Compact JSON, as every request body is sent."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class Wire:
    """A conversation in one provider's wire format, kept in step with the conversation.

    Each message is converted (to the zero or more items the API takes for it) and JSON-encoded
    once, when it first appears in a request; every later request reuses that JSON, so a
    1,000-turn conversation costs about what a 10-turn one does. The engine only appends messages
    and extends its newest one in place (tool results, then text): a message is reused while it is
    the same object as before and, for the newest ``TAIL``, still holds the same parts. Anything
    else (a compaction's new context, another caller's list) is converted from the first
    difference on.
    """

    TAIL = 2

    def __init__(self, convert: Callable[[Any], list[dict[str, Any]]]):
        self.convert = convert
        self.messages: list[Any] = []
        self.json: list[str] = []  # per message: its items' JSON joined by commas ("" for none)
        self._parts: list[tuple[Any, ...]] = []

    def sync(self, messages: Sequence[Any]) -> "Wire":
        old, n = self.messages, min(len(self.messages), len(messages))
        same = n if all(map(operator.is_, old[:n], messages[:n])) else \
            next(i for i in range(n) if old[i] is not messages[i])
        for i in range(max(0, same - self.TAIL), same):
            parts = tuple(getattr(messages[i], "parts", ()))
            if len(parts) != len(self._parts[i]) or not all(map(operator.is_, parts, self._parts[i])):
                same = i
                break
        del self.messages[same:], self.json[same:], self._parts[same:]
        for m in messages[same:]:
            self.messages.append(m)
            self._parts.append(tuple(getattr(m, "parts", ())))
            self.json.append(",".join(map(dumps, self.convert(m))))
        return self

    def joined(self, lead: Iterable[str] = (), replace: dict[int, str] | None = None) -> str:
        """The items as a JSON array's inside: ``lead`` (JSON texts) first, then every message's
        items, message ``i`` as ``replace[i]`` when given (e.g. with a cache mark)."""
        body = self.json
        if replace:
            body = list(body)
            for i, text in replace.items():
                body[i] = text
        return ",".join(filter(None, (*lead, *body)))


def splice(key: str, items: str, rest: str = "{}") -> bytes:
    """A request body as JSON bytes: ``key`` holding the already-encoded ``items`` (see
    ``Wire.joined``), then the fields of ``rest`` (a JSON object's text)."""
    return f'{{{dumps(key)}:[{items}]{"}" if rest == "{}" else "," + rest[1:]}'.encode("utf-8")


def with_fields(body: bytes, **first: Any) -> bytes:
    """``body`` (a JSON object's bytes) with the ``first`` fields put in front (e.g. ``stream``)."""
    lead = "".join(f"{dumps(k)}:{dumps(v)}," for k, v in first.items())
    return b"{" + lead.encode("utf-8") + body[1:]
