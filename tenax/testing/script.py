"""What the simulated model says: replies, scripts and the request view a policy sees.

A *policy* is any callable ``(SimRequest) -> Reply``.  A ``Script`` is the usual policy: an
ordered list of replies, consumed one per (valid) request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

__all__ = ["ToolCall", "SimError", "Reply", "SimRequest", "Script", "Policy"]


class ToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class SimError(BaseModel):
    """Answer with an HTTP error in the provider's own shape.

    ``kind="context_too_long"`` answers with the provider's context-window rejection."""

    status: int
    message: str = "simulated error"
    retry_after: float | None = None
    kind: str | None = None


class Reply(BaseModel):
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    reasoning: str | None = None
    error: SimError | None = None
    when: str | None = None
    output_tokens: int | None = None
    # A transport fault instead of a clean answer: ``reset`` (the connection is reset half way
    # through the answer), ``stall`` (half the answer, then silence for ``stall_s``), ``malformed``
    # (an event or body that is not valid JSON), ``empty_body`` (a 200 with nothing in it).
    fault: Literal["reset", "stall", "malformed", "empty_body"] | None = None
    stall_s: float = 30.0

    def matches(self, req: "SimRequest") -> bool:
        """``when`` selection: the substring occurs in the system prompt or in the last user
        turn (its text, or the content of its tool results)."""
        if self.when is None:
            return True
        return (self.when in req.system or self.when in req.last_user_text
                or any(self.when in str(r.get("content", "")) for r in req.last_tool_results))


@dataclass
class SimRequest:
    """The simulator's provider-neutral view of one valid request."""

    api: str  # "anthropic" | "openai-responses" | "openai-chat"
    model: str
    system: str
    tool_names: list[str]
    last_user_text: str  # text parts of the last user message ("" when it holds only tool results)
    last_tool_results: list[dict[str, Any]]  # [{"id", "content", "is_error"}] of the last user turn
    n_messages: int
    body: dict[str, Any] = field(repr=False)


Policy = Callable[[SimRequest], Reply]

EXHAUSTED_TEXT = "[simulator] script exhausted"


class Script:
    """An ordered list of replies; itself a policy.

    Each call returns the first unconsumed reply whose ``when`` matches the request (or that
    has no ``when``) and consumes it; with none left it returns a plain text reply saying the
    script is exhausted.  Thread-safe.
    """

    def __init__(self, replies: list[Reply]):
        self.replies: list[Reply] = [r if isinstance(r, Reply) else Reply.model_validate(r) for r in replies]
        self._used = [False] * len(self.replies)
        self._lock = threading.Lock()

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> "Script":
        """Load ``{replies: [{text: ..., tool_calls: [{name: ..., arguments: {...}}]}, ...]}``.

        Accepts a file path or the YAML text itself.  A bare list of replies is accepted too."""
        text: str
        if isinstance(path_or_text, Path):
            text = path_or_text.read_text(encoding="utf-8")
        elif "\n" not in path_or_text and Path(path_or_text).is_file():
            text = Path(path_or_text).read_text(encoding="utf-8")
        elif "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml")):
            raise ValueError(f"simulator script file not found: {path_or_text}")
        else:
            text = path_or_text
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"simulator script is not valid YAML: {exc}") from exc
        if isinstance(data, list):
            data = {"replies": data}
        if not isinstance(data, dict) or not isinstance(data.get("replies"), list):
            raise ValueError("simulator script must be a mapping with a 'replies' list, e.g. {replies: [{text: hi}]}")
        replies = []
        for i, item in enumerate(data["replies"]):
            if isinstance(item, str):
                item = {"text": item}
            try:
                replies.append(Reply.model_validate(item))
            except ValidationError as exc:
                raise ValueError(f"simulator script reply #{i} is invalid: {exc}") from exc
        return cls(replies)

    @property
    def remaining(self) -> int:
        with self._lock:
            return self._used.count(False)

    def __call__(self, req: SimRequest) -> Reply:
        with self._lock:
            for i, reply in enumerate(self.replies):
                if not self._used[i] and reply.matches(req):
                    self._used[i] = True
                    return reply
        return Reply(text=EXHAUSTED_TEXT)
