"""Column and constraint shapes the migrations in ``versions/`` share.

FROZEN: a migration is a snapshot of the schema at its revision, and the old migrations build
their tables from these helpers. Editing one would silently change what an old migration
creates on a new database, which then no longer matches the databases made before. Never change
a helper here: a later migration that needs another shape writes it out or adds a new helper.
"""

from __future__ import annotations

import sqlalchemy as sa


def string_id() -> sa.Column:
    """The ``id`` of a row keyed by a short random hex id (``tenax.store.models.new_id``)."""
    return sa.Column("id", sa.String(32), nullable=False)


def serial_id() -> sa.Column:
    """The ``id`` of a row keyed by an autoincrementing integer."""
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def ref(name: str, *, nullable: bool = False) -> sa.Column:
    """A column holding another row's string id (``goal_id``, ``session_id``, ...)."""
    return sa.Column(name, sa.String(32), nullable=nullable)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def spend_columns() -> list[sa.Column]:
    """Token counts and cost: a goal's running totals, or one model call's usage."""
    counts = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    costs = ("cost_usd", "uncached_cost_usd")
    return [*(sa.Column(n, sa.Integer(), nullable=False) for n in counts),
            *(sa.Column(n, sa.Float(), nullable=False) for n in costs)]


def lifetime_columns() -> list[sa.Column]:
    """When a row was created, last updated and finished (``None`` while it runs)."""
    return [timestamp("created_at"), timestamp("updated_at"), timestamp("finished_at", nullable=True)]


def cascade_fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    """``table.column`` references ``target.id``; the row goes when its target row is deleted."""
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE")


def primary_key(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")
