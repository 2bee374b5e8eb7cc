"""Goal status guard, estimated usage, goal leases.

- ``goals.status``: a CHECK on the allowed values and a trigger that refuses an illegal
  transition (SQLite and PostgreSQL), so no bug and no hand-written UPDATE can move a goal
  from ``succeeded`` back to ``running``;
- ``usage.estimated``: the call's token counts were estimated locally;
- ``goals.lease_*``: who drives the goal (host, pid), since when, until when, and the fencing
  token every journal write of the holder checks.

The values and pairs below are a frozen copy of ``tenax.core.status`` as of this revision
(a test keeps them equal while the code does not change them). A later change to the state
machine needs a new migration that replaces the CHECK and the trigger. Note that a batch
rebuild of ``goals`` on SQLite drops its triggers: recreate the trigger after one.

Revision ID: 0004_status_lease
Revises: 0003_memory
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0004_status_lease"
down_revision = "0003_memory"
branch_labels = None
depends_on = None

STATUSES = ("pending", "running", "waiting", "paused", "stopped", "interrupted", "succeeded", "failed",
            "budget_exhausted", "stuck", "cancelled")
_RESUME = ("cancelled", "failed", "paused", "pending", "running", "stopped", "waiting")
ALLOWED: dict[str, tuple[str, ...]] = {
    "pending": _RESUME,
    "running": ("budget_exhausted", "failed", "interrupted", "paused", "running", "stopped", "stuck", "succeeded",
                "waiting"),
    "waiting": _RESUME,
    "paused": _RESUME,
    "stopped": _RESUME,
    "interrupted": (*_RESUME, "interrupted"),
    "succeeded": (),
    "failed": _RESUME,
    "budget_exhausted": (*_RESUME, "budget_exhausted"),
    "stuck": (*_RESUME, "stuck"),
    "cancelled": (),
}
PAIRS = sorted((old, new) for old, news in ALLOWED.items() for new in news)

TRIGGER = "tr_goals_status_transition"
PG_FUNCTION = "tenax_goal_status_transition"


def _quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


_PAIR_SQL = _quoted(f"{a}>{b}" for a, b in PAIRS)
_ILLEGAL = f"OLD.status || '>' || NEW.status NOT IN ({_PAIR_SQL})"

SQLITE_TRIGGER = (
    f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OF status ON goals FOR EACH ROW WHEN {_ILLEGAL} "
    "BEGIN SELECT RAISE(ABORT, 'illegal goal status transition'); END"
)
PG_TRIGGER = (
    f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"IF {_ILLEGAL} THEN RAISE EXCEPTION 'illegal goal status transition: % -> %', OLD.status, NEW.status "
    "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$",
    f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OF status ON goals FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()",
)


def upgrade() -> None:
    with op.batch_alter_table("goals") as b:
        b.add_column(sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("lease_host", sa.String(255), nullable=True))
        b.add_column(sa.Column("lease_pid", sa.Integer(), nullable=True))
        b.add_column(sa.Column("lease_acquired_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("lease_heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        b.create_check_constraint(op.f("ck_goals_status"), f"status IN ({_quoted(STATUSES)})")
    op.add_column("usage", sa.Column("estimated", sa.Boolean(), nullable=False, server_default=sa.false()))

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(SQLITE_TRIGGER)
    elif dialect == "postgresql":
        for stmt in PG_TRIGGER:
            op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}" + (" ON goals" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    with op.batch_alter_table("usage") as b:
        b.drop_column("estimated")
    with op.batch_alter_table("goals") as b:
        b.drop_constraint(op.f("ck_goals_status"), type_="check")
        for col in ("lease_expires_at", "lease_heartbeat_at", "lease_acquired_at", "lease_pid", "lease_host",
                    "lease_token"):
            b.drop_column(col)
