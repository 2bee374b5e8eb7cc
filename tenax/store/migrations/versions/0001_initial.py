"""Initial schema: goals, sessions, steps (the journal), usage.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tenax.store.migrations._columns import (cascade_fk, lifetime_columns, primary_key, ref, spend_columns,
                                             string_id, timestamp)


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "goals",
        string_id(),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("check_cmd", sa.Text(), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("workspace", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("budgets", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        *spend_columns(),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *lifetime_columns(),
        primary_key("goals"),
    )
    op.create_index("ix_goals_created_at", "goals", ["created_at"])
    op.create_index("ix_goals_status", "goals", ["status"])

    op.create_table(
        "sessions",
        string_id(),
        ref("goal_id"),
        ref("parent_session_id", nullable=True),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        timestamp("created_at"),
        cascade_fk("sessions", "goal_id", "goals"),
        primary_key("sessions"),
    )
    op.create_index("ix_sessions_goal_id", "sessions", ["goal_id"])

    op.create_table(
        "steps",
        string_id(),
        ref("session_id"),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        timestamp("created_at"),
        cascade_fk("steps", "session_id", "sessions"),
        primary_key("steps"),
    )
    op.create_index("ix_steps_session_seq", "steps", ["session_id", "seq"], unique=True)

    op.create_table(
        "usage",
        string_id(),
        ref("session_id"),
        ref("goal_id"),
        sa.Column("step_seq", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *spend_columns(),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempts_json", sa.JSON(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        timestamp("created_at"),
        cascade_fk("usage", "session_id", "sessions"),
        primary_key("usage"),
    )
    op.create_index("ix_usage_goal_id", "usage", ["goal_id"])
    op.create_index("ix_usage_session_id", "usage", ["session_id"])


def downgrade() -> None:
    op.drop_table("usage")
    op.drop_table("steps")
    op.drop_table("sessions")
    op.drop_table("goals")
