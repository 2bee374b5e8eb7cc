"""The goal queue and remote control.

- ``goals.control``: a pending request from another terminal (``stop`` or ``pause``); the runner
  honours it at its next step and clears it;
- ``goals.not_before``: the goal is not started before this time (``--at``, a provider's usage
  limit resetting);
- ``goals.after_goal_id``: a chained goal starts only once that goal succeeded;
- ``goals.background``: queued for the daemon (``tenax goal --bg`` / ``tenax submit``);
- ``goals.worker_attempts``: how often a worker died while driving it (the daemon's retry limit);
- ``goals.waiting_on``: what a waiting goal waits for, in words (shown by ``ls``).

Revision ID: 0005_queue
Revises: 0004_status_lease
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_queue"
down_revision = "0004_status_lease"
branch_labels = None
depends_on = None

COLUMNS = (
    ("control", sa.String(16), {}),
    ("not_before", sa.DateTime(timezone=True), {}),
    ("after_goal_id", sa.String(32), {}),
    ("background", sa.Boolean(), {"nullable": False, "server_default": sa.false()}),
    ("worker_attempts", sa.Integer(), {"nullable": False, "server_default": "0"}),
    ("waiting_on", sa.Text(), {}),
)


def upgrade() -> None:
    for name, type_, kw in COLUMNS:  # plain ADD COLUMN: no table rebuild, so the status trigger stays
        op.add_column("goals", sa.Column(name, type_, nullable=kw.get("nullable", True),
                                         server_default=kw.get("server_default")))
    op.create_index("ix_goals_background_status", "goals", ["background", "status"])


def downgrade() -> None:
    op.drop_index("ix_goals_background_status", table_name="goals")
    with op.batch_alter_table("goals") as b:
        for name, _, _ in reversed(COLUMNS):
            b.drop_column(name)
