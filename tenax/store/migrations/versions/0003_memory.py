"""Memory ledger: plan items, notes, the steering queue and the recall index (FTS5 on SQLite).

Revision ID: 0003_memory
Revises: 0002_subagents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0003_memory"
down_revision = "0002_subagents"
branch_labels = None
depends_on = None

FTS_CREATE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5("
    "body, content='memory_docs', content_rowid='id', tokenize='unicode61')"
)


def _goal_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["goal_id"], ["goals.id"], name=f"fk_{table}_goal_id_goals", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "plan_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("goal_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _goal_fk("plan_items"),
        sa.PrimaryKeyConstraint("id", name="pk_plan_items"),
    )
    op.create_index("ix_plan_items_goal_id", "plan_items", ["goal_id"])

    op.create_table(
        "memory_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("goal_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("session_id", sa.String(32), nullable=True),
        sa.Column("step_seq", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _goal_fk("memory_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_memory_notes"),
    )
    op.create_index("ix_memory_notes_goal_id", "memory_notes", ["goal_id"])

    op.create_table(
        "steering",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("goal_id", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        _goal_fk("steering"),
        sa.PrimaryKeyConstraint("id", name="pk_steering"),
    )
    op.create_index("ix_steering_goal_id", "steering", ["goal_id"])

    op.create_table(
        "memory_docs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("goal_id", sa.String(32), nullable=False),
        sa.Column("session_id", sa.String(32), nullable=True),
        sa.Column("step_seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _goal_fk("memory_docs"),
        sa.PrimaryKeyConstraint("id", name="pk_memory_docs"),
    )
    op.create_index("ix_memory_docs_goal_id", "memory_docs", ["goal_id"])
    op.create_index("ix_memory_docs_goal_step", "memory_docs", ["goal_id", "session_id", "step_seq", "kind"], unique=True)

    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS memory_fts")
    for table in ("memory_docs", "steering", "memory_notes", "plan_items"):
        op.drop_table(table)
