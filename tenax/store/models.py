"""SQLAlchemy 2.0 declarative models for tenax's durable state.

The schema itself is owned by the Alembic migrations in ``tenax/store/migrations``; these
models must stay in step with them (``tests/test_store.py`` compares the
migrated schema against this metadata).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
                        Text, TypeDecorator, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenax.core import status

ID_LEN = 12

GOAL_STATUSES = status.VALUES  # the one spelling: tenax.core.status.GoalStatus
TERMINAL_GOAL_STATUSES = frozenset(s.value for s in status.ENDED)
BUDGET_KEYS = ("max_turns", "max_usd", "max_tokens", "max_minutes")


def new_id() -> str:
    """A short random hex id (12 chars, 48 bits)."""
    return secrets.token_hex(ID_LEN // 2)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back timezone-aware UTC datetimes (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Spend:
    """Token counts and cost: a goal's running totals (``GoalRow``) or one model call's (``UsageRow``)."""

    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    uncached_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


class GoalRow(Spend, Base):
    __tablename__ = "goals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    objective: Mapped[str] = mapped_column(Text)
    check_cmd: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    workspace: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    strategy: Mapped[str] = mapped_column(String(64), default="continuous")
    network: Mapped[str] = mapped_column(String(64), default="none")
    budgets: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The lease (see tenax.store.lease): who drives the goal and the fencing token of its hold.
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The queue and remote control (migration 0005).
    control: Mapped[str | None] = mapped_column(String(16), nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    after_goal_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    background: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    worker_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    waiting_on: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_goals_created_at", "created_at"),
        Index("ix_goals_status", "status"),
        Index("ix_goals_background_status", "background", "status"),
        CheckConstraint("status IN (" + ", ".join(f"'{v}'" for v in GOAL_STATUSES) + ")", name="status"),
    )


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    goal_id: Mapped[str] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"))
    parent_session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    role: Mapped[str] = mapped_column(String(64), default="main")
    model: Mapped[str] = mapped_column(String(200))
    system: Mapped[str] = mapped_column(Text)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(32), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_sessions_goal_id", "goal_id"),)


class StepRow(Base):
    __tablename__ = "steps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # The unique index is both the (session_id, seq) lookup index and the guard that makes
    # a racing writer fail instead of producing a duplicate seq.
    __table_args__ = (Index("ix_steps_session_seq", "session_id", "seq", unique=True),)


class UsageRow(Spend, Base):
    __tablename__ = "usage"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    goal_id: Mapped[str] = mapped_column(String(32))
    step_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    attempts_json: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_usage_goal_id", "goal_id"),
        Index("ix_usage_session_id", "session_id"),
    )
