"""tenax's durable state: goals, sessions, the step journal, usage, the ledgers and goal leases."""

from tenax.store.errors import GoalBusy, LeaseLost, NotFound, StoreBusy, StoreError
from tenax.store.records import GoalRecord, SessionRecord, StepRecord, UsageRecord
from tenax.store.sql import SqlStore, open_store

__all__ = [
    "GoalBusy",
    "GoalRecord",
    "LeaseLost",
    "NotFound",
    "SessionRecord",
    "SqlStore",
    "StepRecord",
    "StoreBusy",
    "StoreError",
    "UsageRecord",
    "open_store",
]
