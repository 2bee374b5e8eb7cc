"""Sub-agent ledger: one row per spawned sub-agent (task, role, model, status, summary, cost).

Revision ID: 0002_subagents
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tenax.store.migrations._columns import cascade_fk, lifetime_columns, primary_key, ref, string_id


revision = "0002_subagents"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        string_id(),
        ref("goal_id"),
        ref("parent_session_id", nullable=True),
        ref("session_id", nullable=True),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("isolation", sa.String(32), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("max_turns", sa.Integer(), nullable=True),
        sa.Column("spawn_call_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *lifetime_columns(),
        cascade_fk("agents", "goal_id", "goals"),
        primary_key("agents"),
    )
    op.create_index("ix_agents_goal_id", "agents", ["goal_id"])
    op.create_index("ix_agents_parent_session_id", "agents", ["parent_session_id"])


def downgrade() -> None:
    op.drop_index("ix_agents_parent_session_id", table_name="agents")
    op.drop_index("ix_agents_goal_id", table_name="agents")
    op.drop_table("agents")
