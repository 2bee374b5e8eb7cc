"""Memory ledger: plan items, notes, the steering queue and the recall index (FTS5 on SQLite).

Revision ID: 0003_memory
Revises: 0002_subagents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tenax.store.migrations._columns import cascade_fk, primary_key, ref, serial_id, timestamp


revision = "0003_memory"
down_revision = "0002_subagents"
branch_labels = None
depends_on = None

FTS_CREATE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5("
    "body, content='memory_docs', content_rowid='id', tokenize='unicode61')"
)


def _goal_table(table: str, *columns: sa.Column) -> None:
    """A table of rows that belong to a goal (deleted with it), looked up by goal."""
    op.create_table(table, serial_id(), ref("goal_id"), *columns, cascade_fk(table, "goal_id", "goals"),
                    primary_key(table))
    op.create_index(f"ix_{table}_goal_id", table, ["goal_id"])


def upgrade() -> None:
    _goal_table(
        "plan_items",
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        timestamp("updated_at"),
    )
    _goal_table(
        "memory_notes",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        ref("session_id", nullable=True),
        sa.Column("step_seq", sa.Integer(), nullable=True),
        timestamp("created_at"),
    )
    _goal_table(
        "steering",
        sa.Column("text", sa.Text(), nullable=False),
        timestamp("created_at"),
        timestamp("consumed_at", nullable=True),
    )
    _goal_table(
        "memory_docs",
        ref("session_id", nullable=True),
        sa.Column("step_seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_memory_docs_goal_step", "memory_docs", ["goal_id", "session_id", "step_seq", "kind"], unique=True)

    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS memory_fts")
    for table in ("memory_docs", "steering", "memory_notes", "plan_items"):
        op.drop_table(table)
