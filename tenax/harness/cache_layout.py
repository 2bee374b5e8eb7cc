"""Anthropic prompt-cache breakpoints.

Anthropic caches the prefix up to each block marked ``cache_control`` and, on lookup, walks
back at most 20 blocks from a breakpoint to find an earlier cache entry.  We place (at most
4, the API's limit):

1. the last tool definition           - tools are frozen for a session;
2. the last system block              - so is the system prompt;
3. the last block of the last message - the rolling breakpoint that writes this turn;
4. the last block of the previous request's last message (the newest user message before
   the last assistant message)        - the entry written by the previous call; reading it
   directly means a turn that adds many tool-result blocks never falls outside the lookback.

``apply_cache_layout`` is pure: it returns new lists and never mutates its input; it copies only
the messages whose marks change (the tail), never the whole conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

MAX_BREAKPOINTS = 4
# Blocks that the API refuses to carry cache_control.
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})

CacheTTL = Literal["5m", "1h"]


def cache_control(ttl: CacheTTL | None = None) -> dict[str, str]:
    if ttl is None or ttl == "5m":
        return {"type": "ephemeral"}
    if ttl == "1h":
        return {"type": "ephemeral", "ttl": "1h"}
    raise ValueError(f"unknown cache ttl {ttl!r}; use '5m' or '1h'")


def _markable_index(blocks: list[dict[str, Any]]) -> int | None:
    for i in range(len(blocks) - 1, -1, -1):
        block = blocks[i]
        if block.get("type") in _UNMARKABLE:
            continue
        if block.get("type") == "text" and not block.get("text"):
            continue
        return i
    return None


def _strip(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


def previous_turn_index(messages: Sequence[Any]) -> int | None:
    """Index of the previous request's last message: the newest user message that precedes the
    last assistant message (``None`` when there is none). Walks back from the end only as far as
    that message (``messages`` may be wire dicts or neutral messages)."""
    last_assistant = None
    for i in range(len(messages) - 1, -1, -1):
        if _role(messages[i]) == "assistant":
            last_assistant = i
            break
    if last_assistant is None:
        return None
    for i in range(last_assistant - 1, -1, -1):
        if _role(messages[i]) == "user":
            return i
    return None


def message_targets(messages: Sequence[Any]) -> list[int]:
    """The messages that get a breakpoint: the last one and the previous request's last one."""
    targets = [len(messages) - 1] if messages else []
    prev = previous_turn_index(messages)
    if prev is not None and prev not in targets:
        targets.append(prev)
    return targets


def mark_message(message: dict[str, Any], mark: dict[str, str]) -> dict[str, Any] | None:
    """A copy of ``message`` (a block list, unmarked) with ``mark`` on its last markable block;
    ``None`` when it has none."""
    blocks = list(message["content"])
    bi = _markable_index(blocks)
    if bi is None:
        return None
    blocks[bi] = {**blocks[bi], "cache_control": dict(mark)}
    return {**message, "content": blocks}


def _unmarked(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` itself when its content is a block list with no mark; else a copy that is."""
    content = message.get("content", [])
    if isinstance(content, str):
        return {**message, "content": [{"type": "text", "text": content}]}
    if any("cache_control" in b for b in content):
        return {**message, "content": _strip(content)}
    return message


def apply_cache_layout(
    tools: list[dict[str, Any]],
    system: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    *,
    ttl: CacheTTL | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (tools, system blocks, messages) with cache breakpoints placed, as new lists.

    Any ``cache_control`` already present is removed first so the count is exact.
    Messages whose ``content`` is a string are turned into one text block. Only what changes is
    copied (the tools and system blocks, and the messages that get or lose a mark): every other
    message is returned as it was given. (A provider's hot path marks only the two target
    messages of its already-encoded conversation: see ``message_targets`` and ``mark_message``.)
    """
    mark = cache_control(ttl)
    new_tools = _strip(tools)
    new_system = _strip(system)
    new_messages = [_unmarked(m) for m in messages]

    placed = 0
    if new_tools:
        new_tools[-1]["cache_control"] = dict(mark)
        placed += 1
    idx = _markable_index(new_system)
    if idx is not None:
        new_system[idx]["cache_control"] = dict(mark)
        placed += 1
    for mi in message_targets(new_messages):
        marked = mark_message(new_messages[mi], mark)
        if marked is not None:
            new_messages[mi] = marked
            placed += 1
    assert placed <= MAX_BREAKPOINTS, f"{placed} cache breakpoints placed; the API allows {MAX_BREAKPOINTS}"
    return new_tools, new_system, new_messages


def count_breakpoints(tools: list[dict], system: list[dict], messages: list[dict]) -> int:
    n = sum(1 for t in tools if "cache_control" in t) + sum(1 for b in system if "cache_control" in b)
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            n += sum(1 for b in content if isinstance(b, dict) and "cache_control" in b)
    return n
