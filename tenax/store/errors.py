"""The store's errors. Each message names the goal, the database or the owner concerned, and what to do."""

from __future__ import annotations

from tenax.core.errors import TenaxError


class NotFound(TenaxError):
    """No goal/session/agent matches the given id (or a goal prefix is ambiguous)."""


class StoreError(TenaxError):
    """The database could not do what was asked (full disk, corruption, I/O error); nothing was written."""


class StoreBusy(StoreError):
    """Another process held the database's write lock for longer than the busy timeout."""


class GoalBusy(TenaxError):
    """Another live process holds the goal's lease: it is driving the goal right now."""


class LeaseLost(TenaxError):
    """This process no longer holds the goal's lease (it expired and another runner took it over):
    it must stop driving the goal and write nothing more to it."""


__all__ = ["GoalBusy", "LeaseLost", "NotFound", "StoreBusy", "StoreError"]
