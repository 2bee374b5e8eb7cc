"""Deterministic serialization helpers shared by the providers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
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


class Memo:
    """``convert(item)`` made once per item: a message is converted when it first appears in a
    request and reused by every later request that still holds it.

    Items are known by identity and, for a message, by the identity of its parts (the engine adds
    tool results to the newest user message in place, so its parts change until the next turn).
    Each call keeps only the items of its own input, so the memo never outgrows one request.
    """

    def __init__(self, convert: Callable[[Any], Any]):
        self.convert = convert
        self._seen: dict[int, tuple[Any, tuple[int, ...], Any]] = {}

    def __call__(self, items: Iterable[Any]) -> list[Any]:
        seen, kept, out = self._seen, {}, []
        for item in items:
            parts = tuple(map(id, getattr(item, "parts", ())))
            hit = seen.get(id(item))
            if hit is None or hit[0] is not item or hit[1] != parts:
                hit = (item, parts, self.convert(item))
            kept[id(item)] = hit
            out.append(hit[2])
        self._seen = kept
        return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class BodyEncoder:
    """A request body as JSON bytes, each entry of its ``key`` list (the conversation) encoded once.

    The entries a cache layout marks are new objects each call and are encoded anew; every other
    entry is the same object as in the previous call (see ``Memo``) and its JSON is reused, so a
    1,000-turn conversation costs about what a 10-turn one does."""

    def __init__(self, key: str):
        self.key = key
        self._json = Memo(_dumps)

    def __call__(self, body: dict[str, Any]) -> bytes:
        rest = {k: v for k, v in body.items() if k != self.key}
        head = f'{{"{self.key}":[' + ",".join(self._json(body.get(self.key) or [])) + "]"
        return (head + ("," + _dumps(rest)[1:] if rest else "}")).encode("utf-8")
