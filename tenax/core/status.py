"""A goal's status and the transitions allowed between statuses.

The store enforces the same table (a CHECK on the values and a trigger on the transitions), so
neither a bug in tenax nor a hand-written UPDATE can move a goal from ``succeeded`` back to
``running``. Moving to the status a goal already has is always allowed, except out of a final one.
"""

from __future__ import annotations

from enum import Enum

from tenax.core.errors import TenaxError


class GoalStatus(str, Enum):
    PENDING = "pending"  # created, not started (or queued for the daemon)
    RUNNING = "running"  # a runner holds the goal's lease and drives it
    WAITING = "waiting"  # parked until a time (a provider usage limit, --at)
    PAUSED = "paused"  # paused by the user; resume continues it
    STOPPED = "stopped"  # stopped by the user or a signal; resume continues it
    INTERRUPTED = "interrupted"  # its runner died; resume continues it
    SUCCEEDED = "succeeded"  # the check passed (or the judge accepted): final
    FAILED = "failed"  # a fatal error; resume may retry it
    BUDGET_EXHAUSTED = "budget_exhausted"  # raise a budget to continue
    STUCK = "stuck"  # circled without progress; steer and resume to continue
    CANCELLED = "cancelled"  # will never run (e.g. its parent in a chain failed): final

    def __str__(self) -> str:
        return self.value


_RESUMABLE = frozenset({GoalStatus.STOPPED, GoalStatus.INTERRUPTED, GoalStatus.FAILED,
                        GoalStatus.BUDGET_EXHAUSTED, GoalStatus.STUCK, GoalStatus.PAUSED, GoalStatus.WAITING})

ALLOWED: dict[GoalStatus, frozenset[GoalStatus]] = {
    GoalStatus.PENDING: frozenset({GoalStatus.RUNNING, GoalStatus.WAITING, GoalStatus.PAUSED, GoalStatus.STOPPED,
                                   GoalStatus.CANCELLED, GoalStatus.FAILED}),
    GoalStatus.RUNNING: frozenset({GoalStatus.SUCCEEDED, GoalStatus.FAILED, GoalStatus.BUDGET_EXHAUSTED,
                                   GoalStatus.STOPPED, GoalStatus.STUCK, GoalStatus.WAITING, GoalStatus.PAUSED,
                                   GoalStatus.INTERRUPTED}),
    **{s: frozenset({GoalStatus.RUNNING, GoalStatus.PENDING, GoalStatus.STOPPED, GoalStatus.CANCELLED,
                     GoalStatus.FAILED, GoalStatus.WAITING, GoalStatus.PAUSED}) - {s} for s in _RESUMABLE},
    GoalStatus.SUCCEEDED: frozenset(),
    GoalStatus.CANCELLED: frozenset(),
}

FINAL = frozenset({GoalStatus.SUCCEEDED, GoalStatus.CANCELLED})
# Statuses in which no runner drives the goal and a `finished_at` is stamped.
ENDED = frozenset({GoalStatus.SUCCEEDED, GoalStatus.FAILED, GoalStatus.BUDGET_EXHAUSTED, GoalStatus.STOPPED,
                   GoalStatus.STUCK, GoalStatus.CANCELLED})
VALUES = tuple(s.value for s in GoalStatus)


class IllegalTransition(TenaxError):
    """A status change the state machine does not allow."""


def parse(value: str | GoalStatus) -> GoalStatus:
    try:
        return GoalStatus(value)
    except ValueError:
        raise TenaxError(f"invalid goal status {value!r}; expected one of: {', '.join(VALUES)}") from None


def can_move(old: str | GoalStatus, new: str | GoalStatus) -> bool:
    a, b = parse(old), parse(new)
    return (a == b and a not in FINAL) or b in ALLOWED[a]


def check_transition(old: str | GoalStatus, new: str | GoalStatus) -> GoalStatus:
    """The new status, or IllegalTransition saying why not."""
    a, b = parse(old), parse(new)
    if not can_move(a, b):
        if a in FINAL:
            raise IllegalTransition(f"goal is {a.value}, a final status: it cannot become {b.value}")
        raise IllegalTransition(f"a goal cannot go from {a.value} to {b.value}")
    return b


def allowed_pairs() -> list[tuple[str, str]]:
    """Every (old, new) pair the state machine allows: the store's trigger is generated from it."""
    return sorted((a.value, b.value) for a in GoalStatus for b in GoalStatus if can_move(a, b))
