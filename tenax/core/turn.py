"""What the engine and its partners exchange: the turn context, the actions a policy or a hook
returns, the ``Hook`` base class and the ``Policy`` protocol. A hook or a policy never writes the
engine's state: it returns what to append or replace, and the engine journals it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, Union

from tenax.core.errors import ProviderError
from tenax.core.journal import Conversation
from tenax.core.messages import ModelResponse, ToolCallPart, ToolSpec
from tenax.core.protocols import Model, ToolOutcome, UsageEntry

CostFn = Callable[[Any], tuple[float, float]]  # usage -> (cost_usd, uncached_cost_usd)
EventHook = Callable[[str, dict[str, Any]], None]


@dataclass
class Append:
    """Journal one step: a ``user`` message for the model, or an ``event``. ``then`` runs once it is
    durable (e.g. marking a steering message consumed)."""

    kind: str
    payload: dict[str, Any]
    then: Callable[[], None] | None = None


@dataclass
class Replace:
    """Restart the context from a ``compaction`` step; ``response`` is its summary call, if any
    (accounted, not a turn)."""

    payload: dict[str, Any]
    response: ModelResponse | None = None
    duration_s: float = 0.0


Action = Union[Append, Replace]


@dataclass
class End:
    """How a run ends: a status and what goes with it (a summary, an error text, a report)."""

    status: str
    detail: Any = None


@dataclass
class TurnContext:
    """What a policy or a hook may look at. Read-only: act by returning actions."""

    goal_id: str
    session_id: str
    model: Model
    system: str
    tools: list[ToolSpec]
    conversation: Conversation  # the current context: its steps and their folded messages
    journal: Callable[[], list[Any]]  # the session's whole journal, read from the store on demand
    turn: int  # model calls made in this session so far
    emit: Callable[[dict[str, Any]], Any]  # journal an ``event`` step now (a check, an outage...)


class Hook:
    """Runs around model calls. Returns what to append or replace; never writes engine state."""

    def before_call(self, ctx: TurnContext) -> Sequence[Action]:
        return ()

    def on_context_too_long(self, ctx: TurnContext, attempt: int) -> Replace | None:
        return None


class Policy(Protocol):
    """What makes an agent a goal or a sub-agent: its first message, its tools, how it ends."""

    def opening(self, ctx: TurnContext) -> Append: ...
    def before_turn(self, ctx: TurnContext) -> End | Sequence[Action]: ...
    def run_tool(self, call: ToolCallPart, ctx: TurnContext) -> ToolOutcome: ...
    def after_tool(self, call: ToolCallPart, outcome: ToolOutcome, ctx: TurnContext) -> End | None: ...
    def idle(self, ctx: TurnContext) -> End | Sequence[Action]: ...
    def on_model_error(self, error: ProviderError, ctx: TurnContext) -> float | End | None: ...
    def rerun_interrupted(self, call: ToolCallPart) -> bool: ...
    def accounted(self, entry: UsageEntry) -> None: ...
