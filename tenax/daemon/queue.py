"""The queue lives in the store: a goal with ``background`` set is the daemon's to run.

- ``pending`` / ``waiting`` / ``interrupted`` background goals are *queued*; one is *ready* once its
  ``not_before`` has passed (``--at``, a usage limit's reset, a dead worker's backoff) and, when
  chained (``after_goal_id``), its parent succeeded. A chained goal whose parent ended otherwise is
  cancelled with a reason.
- A goal is taken by its lease (``run_goal`` holds it), never by a flag, so several daemons over one
  database cannot run a goal twice.
- A ``running`` goal whose runner is gone (its lease is not live) had its worker die: it is queued
  again after a backoff, and fails after ``worker_retries`` deaths.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tenax.config import Settings
from tenax.core.errors import ConfigError
from tenax.core.status import ENDED, GoalStatus
from tenax.daemon import worktree
from tenax.store.errors import NotFound

QUEUED = (GoalStatus.PENDING.value, GoalStatus.WAITING.value, GoalStatus.INTERRUPTED.value)
LIVE = (*QUEUED, GoalStatus.RUNNING.value)
_RELATIVE = re.compile(r"\+?(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_at(text: str, now: datetime | None = None) -> datetime:
    """``--at``: ``+30m`` / ``2h`` (from now), ``23:30`` (the next such local time) or an ISO date-time
    (local unless it names its zone)."""
    now = now or utcnow()
    raw = (text or "").strip()
    if m := _RELATIVE.fullmatch(raw):
        return now + timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    local = now.astimezone()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", raw):
            hour, minute = map(int, raw.split(":"))
            when = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return (when if when > local else when + timedelta(days=1)).astimezone(timezone.utc)
        when = datetime.fromisoformat(raw)
    except ValueError:
        when = None
    if when is None:
        raise ConfigError(f"--at {text!r} is not a time; write +30m, 2h, 23:30 or 2030-01-31T06:00")
    return (when if when.tzinfo else when.replace(tzinfo=local.tzinfo)).astimezone(timezone.utc)


def submit(store: Any, req: Any, *, after: str | None = None, at: datetime | None = None,
           notify: str | None = None, use_worktree: bool | None = None, settings: Settings | None = None,
           api_key: str | None = None) -> str:
    """Validate and queue a goal for the daemon (``tenax goal --bg`` / ``tenax submit``); returns its id.
    ``use_worktree`` None means: a worktree when the workspace is in a git repository."""
    from tenax.app import create_goal, store_labels  # slow to import: only where a goal is created

    parent = store.get_goal(after) if after else None
    if parent is not None and parent.status == GoalStatus.CANCELLED:
        raise ConfigError(f"--after {after}: goal {parent.id} is cancelled, so a goal chained to it would never start")
    repo = worktree.repo_root(req.workspace) if use_worktree is not False else None
    if use_worktree and repo is None:
        raise ConfigError(f"--worktree needs a git repository, and {req.workspace} is not in one; "
                          "pass --no-worktree or run git init")
    if repo is not None:
        worktree.require_commit(repo)
    goal_id = create_goal(store, req, settings=settings, api_key=api_key)
    goal = store.get_goal(goal_id)
    config = dict(goal.config or {})
    fields: dict[str, Any] = {"background": True}
    if notify:
        config["notify"] = notify
    if repo is not None:
        try:
            config["worktree"] = worktree.add(repo, goal.workspace, goal_id, store_labels(store)["tenax.store"])
        except ConfigError:
            store.set_status(goal_id, GoalStatus.CANCELLED, error="its git worktree could not be created")
            raise
        fields["workspace"] = config["worktree"]["workspace"]
    if parent is not None:
        fields.update(after_goal_id=parent.id, waiting_on=f"goal {parent.id} to succeed")
    if at is not None:
        fields.update(not_before=at, waiting_on=f"its start time {at.astimezone():%Y-%m-%d %H:%M}")
    store.update_goal(goal_id, config=config, **fields)
    return goal_id


def background_goals(store: Any, statuses: tuple[str, ...] = LIVE) -> list[Any]:
    """Background goals in these statuses, oldest first."""
    return sorted(store.list_goals(limit=None, status=list(statuses), background=True), key=lambda g: (g.created_at, g.id))


def is_ready(store: Any, goal: Any, now: datetime) -> bool:
    if goal.status not in QUEUED or (goal.not_before is not None and goal.not_before > now):
        return False
    if goal.after_goal_id:
        try:
            return store.get_goal(goal.after_goal_id).status == GoalStatus.SUCCEEDED
        except NotFound:
            return False
    return True


def settle_chains(store: Any, goals: list[Any], on_end: Callable[[Any], None]) -> int:
    """Cancel each queued goal whose parent ended without succeeding (or is gone); returns how many."""
    cancelled = 0
    for goal in goals:
        if goal.status not in QUEUED or not goal.after_goal_id:
            continue
        try:
            parent = store.get_goal(goal.after_goal_id)
            why = None if parent.status not in ENDED or parent.status == GoalStatus.SUCCEEDED \
                else f"its parent goal {parent.id} ended {parent.status}"
        except NotFound:
            why = f"its parent goal {goal.after_goal_id} was removed"
        if why:
            store.update_goal(goal.id, waiting_on=None)
            store.set_status(goal.id, GoalStatus.CANCELLED, error=why)
            on_end(store.get_goal(goal.id))
            cancelled += 1
    return cancelled


def worker_died(store: Any, goal: Any, why: str, settings: Settings, on_end: Callable[[Any], None]) -> None:
    """A goal's runner died without recording an end: queue it again after a backoff, or fail it
    once it has died ``worker_retries`` times. Its journal is kept; the next run resumes from it."""
    attempts = goal.worker_attempts + 1
    if attempts > settings.worker_retries:
        store.update_goal(goal.id, worker_attempts=attempts, waiting_on=None)
        store.set_status(goal.id, GoalStatus.FAILED, error=f"its worker died {attempts} times (last: {why}); "
                                                           f"resume it with: tenax resume {goal.id}")
        on_end(store.get_goal(goal.id))
        return
    when = utcnow() + timedelta(seconds=settings.worker_backoff_s * 2 ** (attempts - 1))
    store.update_goal(goal.id, worker_attempts=attempts, not_before=when,
                      waiting_on=f"a retry at {when.astimezone():%H:%M:%S} ({attempts}/{settings.worker_retries}) "
                                 f"after its worker died ({why})")
    if goal.status == GoalStatus.RUNNING:
        store.set_status(goal.id, GoalStatus.INTERRUPTED, error=f"its worker died ({why})")


def requeue(store: Any, goal: Any) -> None:
    """Queue a stopped, paused, budget-exhausted, failed or stuck background goal again, now."""
    store.update_goal(goal.id, background=True, control=None, not_before=None, waiting_on=None, worker_attempts=0)
    if goal.status != GoalStatus.PENDING:
        store.set_status(goal.id, GoalStatus.PENDING)
