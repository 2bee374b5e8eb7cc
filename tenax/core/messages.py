"""Provider-neutral conversation model.

Every provider translates to and from these types; the goal loop, the store and the
exporters only ever see them.  A conversation is ``system`` (a frozen string), ``tools``
(frozen ``ToolSpec`` list) and an ordered list of ``Message``.

Invariants the harness keeps (and the simulator enforces):
- roles strictly alternate, starting with ``user``;
- an assistant message holding ``ToolCallPart``s is followed by a user message whose
  *first* parts are exactly one ``ToolResultPart`` per call;
- tools are always sent when any message holds tool parts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolCallPart(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    # Set by a provider when the arguments could not be taken as given (cut off by max_tokens,
    # not valid JSON): the engine answers the call with a tool error and never runs it.
    error: str | None = None


class ToolResultPart(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: str
    is_error: bool = False


class ReasoningPart(BaseModel):
    """Model reasoning. ``signature``/``data`` carry provider-opaque payloads that must be
    echoed back verbatim (Anthropic thinking signatures, OpenAI encrypted reasoning)."""

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    data: dict[str, Any] | None = None


Part = Annotated[Union[TextPart, ToolCallPart, ToolResultPart, ReasoningPart], Field(discriminator="type")]


class Message(BaseModel):
    role: Literal["user", "assistant"]
    parts: list[Part] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if isinstance(p, ToolCallPart)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        return [p for p in self.parts if isinstance(p, ToolResultPart)]


class ToolSpec(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema (type: object)

    @classmethod
    def object(cls, name: str, description: str, properties: dict[str, Any], *, required: tuple[str, ...] = (),
               closed: bool = False) -> "ToolSpec":
        """A tool whose arguments are one JSON object with these properties (``closed``: no others)."""
        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = list(required)
        if closed:
            parameters["additionalProperties"] = False
        return cls(name=name, description=description, parameters=parameters)

    def canonical(self) -> str:
        """Deterministic serialization (sorted keys) used for cache-stable prefixes."""
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))


class Usage(BaseModel):
    """Per-call token usage. ``input_tokens`` is *uncached* input only."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class Attempt(BaseModel):
    """One HTTP attempt of a model call (retries produce several)."""

    number: int
    ok: bool
    status: int | None = None
    error: str | None = None
    duration_s: float = 0.0
    retry_after_s: float | None = None


class ModelResponse(BaseModel):
    message: Message
    usage: Usage
    stop_reason: str = "end_turn"  # end_turn | tool_use | max_tokens | ...
    model: str = ""
    attempts: list[Attempt] = Field(default_factory=list)
    request_id: str | None = None
    estimated: bool = False  # the usage was estimated locally: the server reported none
