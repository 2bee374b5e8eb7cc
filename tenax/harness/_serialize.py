"""Deterministic serialization helpers shared by the providers."""

from __future__ import annotations

import json
from typing import Any


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


def loads_args(raw: str | None) -> dict[str, Any]:
    """Parse model-issued tool arguments. Bad JSON is kept, not raised: the tool layer
    answers it with an error tool result so the run goes on."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"__invalid_json__": raw}
    if not isinstance(value, dict):
        return {"__invalid_json__": raw}
    return value
