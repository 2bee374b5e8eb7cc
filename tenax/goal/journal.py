"""The conversation is never kept in memory only: it is folded from the step journal.

Journal step kinds of a session (payloads are JSON):

- ``user``         {"text": str, "why": str}        appended user text (objective, continuation, reminder)
- ``assistant``    {"message": Message, "stop_reason": str, "usage": Usage}
- ``tool_started`` {"id": str, "name": str}          written *before* a tool runs
- ``tool_result``  ToolResultPart                    written when it finished
- ``request``      {"turn": int, "messages": int}    written before each model call
- ``event``        {"type": str, ...}                status changes, checks, budget warnings...
- ``compaction``   {"ledger": str, "summary": str, "kept_from": int, "archived": [first, last], ...}
                   written by ``tenax.compaction``: the context restarts from here (see below)

``fold`` turns the journal into provider-neutral messages: user text and tool results that
follow an assistant message merge into one user message, tool results first, so every
tool_use gets exactly one tool_result, next and first.

With a ``compaction`` step in the journal, ``fold`` starts from the latest one: a user message
holding the rendered ledger and the handoff summary, then the steps from ``kept_from`` on (a turn
boundary: an assistant step, so every kept tool_use keeps its tool_result). Earlier steps stay in
the journal (archived), they are just no longer folded.
"""

from __future__ import annotations

from typing import Any, Iterable

from tenax.harness.messages import Message, TextPart, ToolCallPart, ToolResultPart

CONTEXT_KINDS = ("user", "assistant", "tool_result")


def fold(steps: Iterable[Any]) -> list[Message]:
    steps = list(steps)
    messages: list[Message] = []
    marker = next((s for s in reversed(steps) if s.kind == "compaction"), None)
    if marker is not None:
        head = [TextPart(text=t) for t in (marker.payload.get("ledger"), marker.payload.get("summary")) if t]
        messages.append(Message(role="user", parts=head or [TextPart(text="(context compacted)")]))
        kept_from = int(marker.payload["kept_from"])
        steps = [s for s in steps if s.seq >= kept_from]
    for step in steps:
        if step.kind == "assistant":
            messages.append(Message.model_validate(step.payload["message"]))
            continue
        if step.kind == "user":
            part: Any = TextPart(text=step.payload["text"])
        elif step.kind == "tool_result":
            part = ToolResultPart.model_validate(step.payload)
        else:
            continue
        if messages and messages[-1].role == "user":
            messages[-1].parts.append(part)
        else:
            messages.append(Message(role="user", parts=[part]))
    for msg in messages:
        if msg.role == "user":
            # Stable: tool results first (in call order), then text.
            msg.parts.sort(key=lambda p: 0 if isinstance(p, ToolResultPart) else 1)
    return messages


def pending_tool_calls(steps: list[Any]) -> tuple[list[ToolCallPart], set[str]]:
    """Tool calls of the last assistant message that have no tool_result yet.

    Returns (calls without a result, ids among them that were *started*). A started call
    with no result was interrupted (crash, kill -9): it must not be run again blindly.
    """
    last_assistant = None
    for i, step in enumerate(steps):
        if step.kind == "assistant":
            last_assistant = i
    if last_assistant is None:
        return [], set()
    msg = Message.model_validate(steps[last_assistant].payload["message"])
    after = steps[last_assistant + 1 :]
    done = {s.payload["tool_call_id"] for s in after if s.kind == "tool_result"}
    started = {s.payload["id"] for s in after if s.kind == "tool_started"}
    pending = [c for c in msg.tool_calls if c.id not in done]
    return pending, {c.id for c in pending if c.id in started}
