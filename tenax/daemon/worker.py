"""``python -m tenax.daemon.worker GOAL_ID``: run (or resume) one background goal to an end.

One process per goal, so a crash or a leak in one cannot hurt the others. SIGTERM (``tenax stop``)
ends the goal the way Ctrl-C ends ``tenax goal``: status ``stopped``, its sandbox halted, resumable.
A usage limit parks the goal as ``waiting``; the daemon starts a new worker after the reset.
Exit codes: 0 the goal reached a status (any), 2 it could not run (recorded as ``failed``),
3 another runner drives it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from tenax.app import run_goal
from tenax.config import load_settings
from tenax.core.errors import TenaxError
from tenax.core.status import ENDED, FINAL, GoalStatus, can_move
from tenax.daemon import paths, worktree
from tenax.daemon.notify import notify
from tenax.daemon.paths import BUSY_EXIT, log
from tenax.sandbox import ensure_docker
from tenax.store import open_store
from tenax.store.errors import GoalBusy, LeaseLost, StoreError


REMOVE_AFTER_S = 1.5  # an ended goal's container is removed this long after its end (its processes are killed
# at once): once the goal taking the freed slot has started and waits on its model, not during that start
DAEMON_PID: int | None = None  # set in a worker forked by the daemon: told when its goal leaves `running`


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _tell_daemon(kind: str, payload: dict[str, Any]) -> None:
    """Wake the daemon (SIGUSR1) when the goal stops running, so it starts the next goal while this
    worker still tears the sandbox down. Only the daemon that forked this worker, never pid 1."""
    if kind == "event" and payload.get("type") == "status" and payload.get("status") != "running" \
            and DAEMON_PID and os.getppid() == DAEMON_PID:
        os.kill(DAEMON_PID, signal.SIGUSR1)


def _record(store: Any, goal_id: str, status: GoalStatus, error: str) -> Any:
    goal = store.get_goal(goal_id)
    if goal.status not in FINAL and can_move(goal.status, status):
        store.update_goal(goal_id, waiting_on=None, control=None)
        store.set_status(goal_id, status, error=error)
    return store.get_goal(goal_id)


def spare(pipe: int) -> int:
    """A worker forked before its goal is known (a spare of the daemon's): it opens the store, then
    waits for a goal id on ``pipe`` and runs that goal, its output moved to the goal's log. The
    pipe's EOF (the daemon stopped or died, or let it go) ends it."""
    store, settings = open_store(), load_settings()
    store.prepare()  # its statements compiled now (35 ms), not on its goal's start
    try:  # its Docker client made and the engine's API version asked while there is time (not on a goal's start)
        client = ensure_docker()
    except TenaxError:
        client = None  # the goal's own start meets the fault and records it
    with os.fdopen(pipe, "rb") as given:
        goal_id = given.readline().decode("ascii", "replace").strip()
    if not goal_id:
        return 0
    fd = os.open(paths.worker_log(goal_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return main([goal_id], store=store, settings=settings, docker_client=client)


def main(argv: list[str] | None = None, store: Any = None, settings: Any = None, docker_client: Any = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tenax.daemon.worker GOAL_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    settings = settings or load_settings()
    store = store or open_store()
    goal = store.get_goal(args[0])
    goal_id = goal.id
    if goal.waiting_on is not None:
        store.update_goal(goal_id, waiting_on=None)
    log(f"goal {goal_id}: worker starts")
    try:
        status = run_goal(store, goal_id, park_on_limit=True, settings=settings, on_event=_tell_daemon,
                          sweep=False,  # the daemon's cleanup removes what ended goals left
                          remove_after_s=REMOVE_AFTER_S, docker_client=docker_client)
    except (GoalBusy, LeaseLost) as e:  # another runner has it: leave it alone
        log(str(e))
        return BUSY_EXIT
    except StoreError as e:  # the database failed: the daemon sees a dead runner and retries later
        log(f"goal {goal_id}: {e}")
        return 1
    except KeyboardInterrupt:  # stopped before its engine ran (while its sandbox started)
        goal = _record(store, goal_id, GoalStatus.STOPPED, "stopped (tenax stop)")
        notify(goal, log, settings)
        return 0
    except TenaxError as e:  # it cannot run (a workspace gone, a missing image...): say so, do not retry
        goal = _record(store, goal_id, GoalStatus.FAILED, f"{type(e).__name__}: {e}")
        log(f"goal {goal_id}: cannot run: {e}")
        notify(goal, log, settings)
        return 2
    goal = store.get_goal(goal_id)
    log(f"goal {goal_id}: {status} after {goal.turns} turns, ${goal.cost_usd:.4f}")
    tree = (goal.config or {}).get("worktree")
    if tree and status in {s.value for s in ENDED}:  # the goal's work goes onto its branch now
        try:
            commit = worktree.save(tree["path"], f"tenax goal {goal.id}: {status}\n\n{goal.objective[:2000]}")
            log(f"goal {goal_id}: " + (f"its work is commit {commit[:12]} on {tree['branch']}" if commit else
                                       f"nothing changed on {tree['branch']}"))
        except TenaxError as e:
            log(f"goal {goal_id}: {e}")
    if status in {s.value for s in ENDED}:
        notify(goal, log, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
