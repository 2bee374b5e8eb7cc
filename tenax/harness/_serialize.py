"""Deterministic serialization helpers shared by the providers."""

from __future__ import annotations

import json
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
