"""Plain snapshots the store hands out. Never attached to a database session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tenax.core.messages import Usage
from tenax.store.lease import lease_live
from tenax.store.models import TERMINAL_GOAL_STATUSES


class FrozenRecord(BaseModel):
    """Base of the snapshots: immutable, never attached to a database session."""

    model_config = ConfigDict(frozen=True)


class _Spend(FrozenRecord):
    """Token counts and cost: a goal's running totals or one model call's."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    uncached_cost_usd: float = 0.0

    @property
    def usage(self) -> Usage:
        return Usage.model_validate(self, from_attributes=True)  # Usage's fields, read from this record


class GoalRecord(_Spend):
    id: str
    objective: str
    check_cmd: str | None = None
    model: str
    workspace: str
    status: str
    strategy: str = "continuous"
    network: str = "none"
    budgets: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    turns: int = 0
    elapsed_s: float = 0.0
    summary: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    control: str | None = None
    not_before: datetime | None = None
    after_goal_id: str | None = None
    background: bool = False
    worker_attempts: int = 0
    waiting_on: str | None = None
    lease_token: int = 0
    lease_host: str | None = None
    lease_pid: int | None = None
    lease_acquired_at: datetime | None = None
    lease_heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None

    @property
    def shown_status(self) -> str:
        """The status to show in ``ls``/``show``: ``interrupted`` for a goal still marked running whose
        runner is gone (its lease expired, was released, or its owner pid on this host is dead)."""
        if self.status == "running" and self.lease_token and not lease_live(
                self.lease_host, self.lease_pid, self.lease_expires_at):
            return "interrupted"
        return self.status

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_GOAL_STATUSES


class SessionRecord(FrozenRecord):
    id: str
    goal_id: str
    parent_session_id: str | None = None
    role: str
    model: str
    system: str
    tools: list[dict[str, Any]] = Field(default_factory=list)
    status: str
    created_at: datetime


class StepRecord(FrozenRecord):
    session_id: str
    seq: int
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class UsageRecord(_Spend):
    id: str
    session_id: str
    goal_id: str
    step_seq: int | None = None
    provider: str
    model: str
    attempts: int = 1
    attempts_json: list[dict[str, Any]] = Field(default_factory=list)
    duration_s: float = 0.0
    estimated: bool = False
    created_at: datetime
