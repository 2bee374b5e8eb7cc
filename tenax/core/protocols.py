"""The seams of tenax. A provider, a sandbox, a toolbox or a store is added by implementing one.

Nothing here names a concrete class: ``tenax.app`` is the one place that picks them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

from pydantic import BaseModel

from tenax.core.messages import Message, ModelResponse, ToolSpec, Usage


@runtime_checkable
class Model(Protocol):
    provider: str  # the registered provider name: "anthropic" | "openai" | "openai-chat" | ...
    name: str  # model name as the provider knows it

    def complete(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        """One (streamed) model call with retries. Raises ProviderError / ContextTooLong."""
        ...


class ExecResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    duration_s: float = 0.0
    truncated_bytes: int = 0  # how much output was cut (head+tail kept)
    reaped: int = 0  # processes the command left running that were killed when it returned
    left_running: int = 0  # processes it started that could not be killed
    note: str | None = None  # what the sandbox itself has to say (container died, restarted, OOM...)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@runtime_checkable
class Sandbox(Protocol):
    """Where model-issued commands run. ``exec`` never raises for what the command does (a
    failing, hung or memory-hungry command is an ExecResult); when the sandbox itself died and
    was replaced, the result's ``note`` says so."""

    workspace: str  # host path bind-mounted at /workspace

    def start(self) -> None: ...

    def exec(
        self,
        command: str,
        *,
        timeout: float = 120.0,
        cwd: str = "/workspace",
        env: dict[str, str] | None = None,
        max_output_chars: int | None = None,
        retry_on_restart: bool = False,
    ) -> ExecResult:
        """Run ``command`` inside the sandbox; the timeout is enforced in-container and every
        process the command started is gone when it returns. ``max_output_chars`` bounds each
        of stdout/stderr (None: the sandbox's default). With ``retry_on_restart`` an idempotent
        command (a goal's check) is run again once when the sandbox died under it."""
        ...

    def put_file(self, directory: str, name: str, data: bytes, mode: int = 0o600) -> None:
        """Write ``data`` to ``directory/name`` inside the sandbox, owned by the sandbox user."""
        ...

    def halt(self) -> None:
        """Kill whatever runs in the sandbox and stop it, keeping it for a later ``start()``."""
        ...

    def stop(self) -> None:
        """Stop and remove the sandbox (the goal is over)."""
        ...


class ToolOutcome(BaseModel):
    content: str
    is_error: bool = False


@runtime_checkable
class Toolbox(Protocol):
    """Tools the model may call. ``call`` never raises for bad arguments: it answers with an
    error outcome the model can read."""

    def specs(self) -> list[ToolSpec]: ...

    def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...


@runtime_checkable
class Step(Protocol):
    """One journal entry of a session."""

    seq: int
    kind: str
    payload: dict[str, Any]


class UsageEntry(BaseModel):
    """A model call's accounting, written in the same transaction as its journal step."""

    provider: str
    model: str
    usage: Usage
    cost_usd: float = 0.0
    uncached_cost_usd: float = 0.0
    attempts: list[dict[str, Any]] = []
    duration_s: float = 0.0
    turns: int = 0  # 1 for a main-session turn
    estimated: bool = False  # token counts estimated locally (the server reported none, or the call was cut)
    elapsed_s: float = 0.0  # the goal's wall time since its last flush, added to its totals in the same write


@runtime_checkable
class Store(Protocol):
    """Durable state: goals, sessions, the step journal, usage and steering. See ``tenax.store``."""

    def get_goal(self, goal_id: str) -> Any: ...
    def goal_control(self, goal_id: str) -> str | None: ...
    def update_goal(self, goal_id: str, **fields: Any) -> None: ...
    def set_status(self, goal_id: str, status: str, *, error: str | None = None) -> None: ...
    def add_to_goal_totals(self, goal_id: str, **deltas: float) -> None: ...
    def create_session(self, goal_id: str, *, role: str, model: str, system: str,
                       tools: Iterable[Mapping[str, Any]], parent_session_id: str | None = None) -> str: ...
    def get_session(self, session_id: str) -> Any: ...
    def sessions_for_goal(self, goal_id: str) -> list[Any]: ...
    def append_step(self, session_id: str, kind: str, payload: Mapping[str, Any], *,
                    usage: UsageEntry | None = None) -> int: ...
    def steps(self, session_id: str, *, after_seq: int = 0, kinds: Iterable[str] | None = None,
              limit: int | None = None) -> list[Any]: ...
    def pending_steering(self, goal_id: str) -> list[Any]: ...
    def mark_steering_consumed(self, steering_id: int) -> None: ...
