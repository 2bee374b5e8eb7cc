"""tenax's durable state: goals, sessions, the step journal and usage, via SQLAlchemy."""

from tenax.store.records import GoalRecord, SessionRecord, StepRecord, UsageRecord
from tenax.store.sql import NotFound, SqlStore, open_store
from tenax.store import memory  # noqa: E402,F401  (registers the memory-ledger tables on Base.metadata)

__all__ = [
    "GoalRecord",
    "NotFound",
    "SessionRecord",
    "SqlStore",
    "StepRecord",
    "UsageRecord",
    "open_store",
]
