"""A session's conversation is its step journal, folded. The engine keeps the fold in memory
and extends it one step at a time; the whole journal is read only on resume.

Journal step kinds (payloads are JSON):

- ``user``         {"text": str, "why": str, ...}     appended user text (objective, continuation, steering...)
- ``request``      {"turn": int, "messages": int, "est_input_tokens": int}   written before each model call
- ``assistant``    {"message": Message, "stop_reason": str, "usage": Usage}  (its usage row in the same transaction)
- ``tool_started`` {"id": str, "name": str}           written *before* a tool runs
- ``tool_result``  ToolResultPart                     written when it finished
- ``event``        {"type": str, ...}                 status changes, checks, outages, hooks' notes...
- ``compaction``   {"ledger": str, "summary": str, "kept_from": int, ...}: the context restarts here

Folding: user text and tool results that follow an assistant message merge into one user message,
tool results first, so every tool_use gets exactly one tool_result, next and first. From the
latest ``compaction`` step on, the context is a user message holding its ledger and summary, then
the steps from ``kept_from`` on (a turn boundary, so every kept tool_use keeps its tool_result).
Earlier steps stay in the journal (archived); they are just no longer folded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from tenax.core.messages import Message, TextPart, ToolCallPart, ToolResultPart

CONTEXT_KINDS = ("user", "assistant", "tool_result")


@dataclass(frozen=True)
class Entry:
    """A journal step as the engine keeps it (the store's records have the same fields)."""

    seq: int
    kind: str
    payload: dict[str, Any]


def step_chars(step: Any) -> int:
    """About how many characters a context step adds to a request."""
    if step.kind == "user":
        return len(step.payload.get("text", ""))
    if step.kind == "tool_result":
        return len(step.payload.get("content", "")) + 40
    if step.kind == "assistant":
        return len(json.dumps(step.payload.get("message", {})))
    return 0


@dataclass
class Conversation:
    """The current context of a session: its steps since the latest compaction, their fold, and a
    running estimate of its size (kept as steps arrive, never recomputed)."""

    steps: list[Any] = field(default_factory=list)  # context steps (CONTEXT_KINDS), in seq order
    messages: list[Message] = field(default_factory=list)
    marker: Any = None  # the latest compaction step, if any
    reported: int = 0  # input + output tokens the latest call in this context reported (0: none yet)
    appended: int = 0  # characters added to the context since that call (or since its start)
    calls: int = 0  # model replies added since the latest compaction (kept turns not counted)

    def tokens(self, prefix_chars: int) -> int:
        """Estimated tokens of the next request (``prefix_chars``: system prompt and tools)."""
        if self.reported:
            return self.reported + (self.appended + 3) // 4
        return (prefix_chars + self.appended + 3) // 4

    @classmethod
    def of(cls, journal: Iterable[Any]) -> "Conversation":
        conv = cls()
        for step in journal:
            conv.add(step)
        return conv

    def add(self, step: Any) -> None:
        if step.kind == "compaction":
            kept_from = int(step.payload["kept_from"])
            self.marker = step
            self.calls = 0
            self.steps = [s for s in self.steps if s.seq >= kept_from]
            self.messages = [_head(step)]
            self.reported = 0
            self.appended = sum(len(p.text) for p in self.messages[0].parts) + sum(map(step_chars, self.steps))
            for s in self.steps:
                self._fold(s)
        elif step.kind in CONTEXT_KINDS:
            self.steps.append(step)
            self._fold(step)
            self.calls += step.kind == "assistant"
            u = step.payload.get("usage") if step.kind == "assistant" else None
            if u:
                self.reported = (u.get("input_tokens", 0) + u.get("cache_read_tokens", 0)
                                 + u.get("cache_write_tokens", 0) + u.get("output_tokens", 0))
                self.appended = 0
            else:
                self.appended += step_chars(step)

    def _fold(self, step: Any) -> None:
        if step.kind == "assistant":
            self.messages.append(Message.model_validate(step.payload["message"]))
            return
        if step.kind == "user":
            part: Any = TextPart(text=step.payload["text"])
        else:
            part = ToolResultPart.model_validate(step.payload)
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != "user":
            self.messages.append(Message(role="user", parts=[part]))
        elif isinstance(part, ToolResultPart):  # tool results first, in call order, then text
            at = next((i for i, p in enumerate(last.parts) if not isinstance(p, ToolResultPart)), len(last.parts))
            last.parts.insert(at, part)
        else:
            last.parts.append(part)

    @property
    def turns(self) -> int:
        """Assistant messages in the current context."""
        return sum(1 for s in self.steps if s.kind == "assistant")

    def last_assistant(self) -> Any:
        return next((s for s in reversed(self.steps) if s.kind == "assistant"), None)


def _head(marker: Any) -> Message:
    texts = [t for t in (marker.payload.get("ledger"), marker.payload.get("summary")) if t]
    return Message(role="user", parts=[TextPart(text=t) for t in texts] or [TextPart(text="(context compacted)")])


def fold(steps: Iterable[Any]) -> list[Message]:
    """The messages a journal folds to (see the module docstring)."""
    return Conversation.of(steps).messages


def pending_tool_calls(steps: list[Any]) -> tuple[list[ToolCallPart], set[str]]:
    """Tool calls of the last assistant message that have no tool_result yet.

    Returns (calls without a result, ids among them that were *started*). A started call
    with no result was interrupted (crash, kill -9): it must not be run again blindly.
    """
    last = max((i for i, s in enumerate(steps) if s.kind == "assistant"), default=None)
    if last is None:
        return [], set()
    msg = Message.model_validate(steps[last].payload["message"])
    after = steps[last + 1:]
    done = {s.payload["tool_call_id"] for s in after if s.kind == "tool_result"}
    started = {s.payload["id"] for s in after if s.kind == "tool_started"}
    pending = [c for c in msg.tool_calls if c.id not in done]
    return pending, {c.id for c in pending if c.id in started}
