"""The sub-agent ledger: one row per spawned sub-agent (task, role, model, status, summary, cost).

The ledger is what lets a parent always find its sub-agents again (after compaction, a crash or
a resume): ``list_agents`` and resume read it, never the parent's context. A row is written
*before* the agent starts (journal-before-act) and updated as it progresses.

``AgentRow`` is an ORM model on the store's declarative ``Base`` (schema: Alembic
``0002_subagents``); ``AgentLedger`` is mixed into ``SqlStore`` and gives it the ledger methods.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable

from pydantic import Field
from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from tenax.core.errors import ConfigError
from tenax.store.errors import NotFound
from tenax.store.models import Base, GoalRow, UTCDateTime, new_id, utcnow
from tenax.store.records import FrozenRecord
from tenax.store.base import StoreBase, check_json, fetch

AGENT_STATUSES = ("pending", "running", "done", "failed", "stopped")
UNFINISHED_AGENT_STATUSES = frozenset({"pending", "running"})
ISOLATIONS = ("shared", "copy")


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    goal_id: Mapped[str] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"))
    parent_session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    task: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    depth: Mapped[int] = mapped_column(Integer, default=1)
    background: Mapped[bool] = mapped_column(Boolean, default=False)
    isolation: Mapped[str] = mapped_column(String(32), default="shared")
    tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_turns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spawn_call_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_agents_goal_id", "goal_id"),
        Index("ix_agents_parent_session_id", "parent_session_id"),
    )


class AgentRecord(FrozenRecord):
    """A frozen snapshot of one ledger row. ``summary`` is the structured report (outcome,
    findings, files_changed, failed_commands, open_questions, ...) once the agent finished."""

    id: str
    goal_id: str
    parent_session_id: str | None = None
    session_id: str | None = None
    task: str
    role: str
    model: str
    status: str
    summary: dict[str, Any] | None = None
    cost_usd: float = 0.0
    created_at: datetime
    depth: int = 1
    background: bool = False
    isolation: str = "shared"
    tools: list[str] = Field(default_factory=list)
    max_turns: int | None = None
    spawn_call_id: str | None = None
    error: str | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED_AGENT_STATUSES


_UPDATABLE = frozenset({"session_id", "status", "summary", "cost_usd", "error", "finished_at"})


def _record(row: AgentRow) -> AgentRecord:
    return AgentRecord.model_validate(row, from_attributes=True)


def _check_status(status: Any) -> str:
    if status not in AGENT_STATUSES:
        raise ConfigError(f"invalid agent status {status!r}; expected one of: {', '.join(AGENT_STATUSES)}")
    return status


class AgentLedger(StoreBase):
    """Ledger methods of ``SqlStore``."""

    def create_agent(
        self,
        goal_id: str,
        *,
        task: str,
        role: str,
        model: str,
        parent_session_id: str | None = None,
        depth: int = 1,
        background: bool = False,
        isolation: str = "shared",
        tools: Iterable[str] = (),
        max_turns: int | None = None,
        spawn_call_id: str | None = None,
        status: str = "pending",
    ) -> str:
        if not isinstance(task, str) or not task.strip():
            raise ConfigError("an agent task must be a non-empty string")
        if isolation not in ISOLATIONS:
            raise ConfigError(f"invalid isolation {isolation!r}; expected one of: {', '.join(ISOLATIONS)}")
        now = utcnow()
        row = AgentRow(
            id=new_id(), goal_id=goal_id, parent_session_id=parent_session_id, session_id=None, task=task,
            role=role, model=model, status=_check_status(status), summary=None, cost_usd=0.0, depth=int(depth),
            background=bool(background), isolation=isolation, tools=[str(t) for t in tools], max_turns=max_turns,
            spawn_call_id=spawn_call_id, error=None, created_at=now, updated_at=now, finished_at=None,
        )
        with self._write() as s:
            fetch(s, GoalRow, goal_id, "goal")
            s.add(row)
        return row.id

    def get_agent(self, agent_id: str) -> AgentRecord:
        return self._get(AgentRecord, AgentRow, agent_id, "agent")

    def update_agent(self, agent_id: str, **fields: Any) -> None:
        """Set ledger fields; a finished status stamps ``finished_at`` unless given."""
        unknown = sorted(set(fields) - _UPDATABLE)
        if unknown:
            raise ConfigError(f"cannot update agent field(s) {', '.join(unknown)}; updatable: {', '.join(sorted(_UPDATABLE))}")
        values = dict(fields)
        if "status" in values:
            _check_status(values["status"])
            if "finished_at" not in values:
                values["finished_at"] = None if values["status"] in UNFINISHED_AGENT_STATUSES else utcnow()
        if values.get("summary") is not None:
            check_json("agent summary", values["summary"])
        values["updated_at"] = utcnow()
        with self._write() as s:
            res = s.execute(update(AgentRow).where(AgentRow.id == agent_id).values(**values))
            if res.rowcount == 0:
                raise NotFound(f"no agent {agent_id!r}")

    def add_agent_cost(self, agent_id: str, cost_usd: float) -> None:
        if isinstance(cost_usd, bool) or not isinstance(cost_usd, (int, float)) or not math.isfinite(cost_usd):
            raise ConfigError(f"cost_usd must be a finite number, got {cost_usd!r}")
        with self._write() as s:
            s.execute(
                update(AgentRow).where(AgentRow.id == agent_id)
                .values(cost_usd=AgentRow.cost_usd + float(cost_usd), updated_at=utcnow())
            )

    def agents_for_goal(self, goal_id: str) -> list[AgentRecord]:
        """Every sub-agent of a goal, oldest first."""
        q = select(AgentRow).where(AgentRow.goal_id == goal_id).order_by(AgentRow.created_at, AgentRow.id)
        with self._read() as s:
            return [_record(r) for r in s.scalars(q)]

    def agents_for_session(self, parent_session_id: str) -> list[AgentRecord]:
        """The sub-agents spawned by one session, oldest first."""
        q = (select(AgentRow).where(AgentRow.parent_session_id == parent_session_id)
             .order_by(AgentRow.created_at, AgentRow.id))
        with self._read() as s:
            return [_record(r) for r in s.scalars(q)]


__all__ = ["AGENT_STATUSES", "AgentLedger", "AgentRecord", "AgentRow", "UNFINISHED_AGENT_STATUSES", ]
