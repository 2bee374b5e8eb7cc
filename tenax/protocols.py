"""The three boundaries of tenax. Swap a provider, sandbox or store by implementing one."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from tenax.harness.messages import Message, ModelResponse, ToolSpec


@runtime_checkable
class Model(Protocol):
    provider: str  # "anthropic" | "openai" | "openai-chat"
    name: str  # model name as the provider knows it

    def complete(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int = 8192,
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

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@runtime_checkable
class Sandbox(Protocol):
    workspace: str  # host path bind-mounted at /workspace

    def start(self) -> None: ...

    def exec(
        self, command: str, *, timeout: float = 120.0, cwd: str = "/workspace", env: dict[str, str] | None = None
    ) -> ExecResult:
        """Run ``bash -lc command`` inside the sandbox; the timeout is enforced in-container."""
        ...

    def stop(self) -> None: ...


class ToolOutcome(BaseModel):
    content: str
    is_error: bool = False


@runtime_checkable
class Store(Protocol):
    """Durable state. See tenax.store.sql.SqlStore for the reference implementation."""

    def create_goal(self, **fields: Any) -> str: ...
    def get_goal(self, goal_id: str) -> Any: ...
    def update_goal(self, goal_id: str, **fields: Any) -> None: ...
    def create_session(self, goal_id: str, **fields: Any) -> str: ...
    def append_step(self, session_id: str, kind: str, payload: dict[str, Any]) -> int: ...
    def steps(self, session_id: str, *, after_seq: int = 0) -> list[Any]: ...
    def record_usage(self, session_id: str, **fields: Any) -> None: ...
