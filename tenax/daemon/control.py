"""Control of any goal from any terminal, through the store (and a signal to a runner on this host).

Each function returns one line saying what happened; bad requests raise ``ConfigError``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from tenax.config import load_settings
from tenax.core.errors import ConfigError
from tenax.core.status import ENDED, FINAL, GoalStatus
from tenax.daemon import paths, queue, worktree
from tenax.daemon.supervisor import running_daemon
from tenax.store.lease import HOST, lease_live

START_TIMEOUT_S = 30.0


def _runner(goal: Any) -> int | None:
    """The pid of the live process driving the goal on this host, if any."""
    if goal.status == GoalStatus.RUNNING and lease_live(goal.lease_host, goal.lease_pid, goal.lease_expires_at):
        return goal.lease_pid if goal.lease_host == HOST else -1
    return None


def _not_final(goal: Any, verb: str) -> None:
    if goal.status in FINAL:
        raise ConfigError(f"goal {goal.id} has {goal.status}, a final status: there is nothing to {verb}")


def stop(store: Any, goal_id: str) -> str:
    """Stop a goal: it wins within one tool call (at once for a runner on this host: SIGTERM, which
    the runner turns into a stop). The goal stays resumable."""
    goal = store.get_goal(goal_id)
    _not_final(goal, "stop")
    if goal.status in {s.value for s in ENDED}:
        return f"goal {goal.id} is already {goal.status}"
    store.update_goal(goal.id, control="stop")  # kept for a queued goal: a worker starting it now obeys it
    pid = _runner(goal)
    if pid is None:
        store.update_goal(goal.id, waiting_on=None, **({} if goal.background else {"control": None}))
        store.set_status(goal.id, GoalStatus.STOPPED, error="stopped (tenax stop)")
        return f"goal {goal.id} stopped; resume it with: tenax resume {goal.id}"
    if pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it just ended; the control request is there for a resume that races with us
        return f"goal {goal.id}: stop sent to its runner (pid {pid}); it ends stopped and stays resumable"
    return f"goal {goal.id}: stop requested; its runner on host {goal.lease_host} stops within one tool call"


def pause(store: Any, goal_id: str) -> str:
    goal = store.get_goal(goal_id)
    _not_final(goal, "pause")
    if goal.status in {s.value for s in ENDED} or goal.status == GoalStatus.PAUSED:
        return f"goal {goal.id} is {goal.status}; nothing runs to pause"
    if _runner(goal) is not None:
        store.update_goal(goal.id, control="pause")
        return f"goal {goal.id}: pause requested; it pauses within one tool call (tenax resume {goal.id} continues it)"
    store.update_goal(goal.id, control="pause" if goal.background else None)
    store.set_status(goal.id, GoalStatus.PAUSED, error="paused (tenax pause)")
    return f"goal {goal.id} paused; continue it with: tenax resume {goal.id}"


def resume_background(store: Any, goal: Any) -> str:
    """``tenax resume`` of a background goal: queue it again (now) and make sure a daemon runs."""
    _not_final(goal, "resume")
    if _runner(goal) is not None:
        raise ConfigError(f"goal {goal.id} is running; there is nothing to resume")
    queue.requeue(store, goal)
    return f"goal {goal.id} queued again; {daemon_note()}"


def raise_budget(store: Any, goal_id: str, budgets: Callable[[dict[str, Any]], Any]) -> str:
    """Raise a goal's budgets in place; ``budgets`` turns the current ones into the new ``Budgets``.
    A running goal sees them at its next turn; a budget-exhausted background goal is queued again."""
    goal = store.get_goal(goal_id)
    _not_final(goal, "budget")
    new = budgets(goal.budgets or {})
    store.update_goal(goal.id, budgets=new.model_dump())
    shown = ", ".join(f"{k}={v}" for k, v in new.model_dump().items() if v is not None)
    if goal.status == GoalStatus.BUDGET_EXHAUSTED:
        if goal.background:
            return f"goal {goal.id} budgets now {shown}; " + resume_background(store, goal)
        return f"goal {goal.id} budgets now {shown}; continue it with: tenax resume {goal.id}"
    return f"goal {goal.id} budgets now {shown}" + ("; it sees them at its next turn" if _runner(goal) else "")


def remove(store: Any, goal_id: str, purge: bool = False) -> str:
    """Remove a goal's containers and worktree (its branch stays); with ``purge`` its journal too."""
    from tenax.sandbox import cleanup_by_label, ensure_docker

    goal = store.get_goal(goal_id)
    if _runner(goal) is not None or goal.status in queue.QUEUED and goal.background:
        raise ConfigError(f"goal {goal.id} is {goal.shown_status}; stop it first (tenax stop {goal.id})")
    done = [f"{cleanup_by_label(ensure_docker(), goal_id=goal.id)} container(s)"]
    tree = (goal.config or {}).get("worktree")
    if tree:
        ok = worktree.remove(tree)
        done.append(f"worktree {tree['path']} (branch {tree['branch']} kept)" if ok
                    else f"NOT the worktree {tree['path']} (git refused; remove it by hand)")
    if purge:
        store.delete_goal(goal.id)
        done.append("its journal")
    return f"goal {goal.id}: removed " + ", ".join(done)


def follow(store: Any, goal_id: str, render: Callable[[str, dict[str, Any]], None], *, live: bool,
           poll_s: float = 0.5) -> Any:
    """Render the goal's main journal; with ``live``, keep following it until the goal ends or stops
    running. Returns the goal as last read."""
    goal = store.get_goal(goal_id)
    seen, session = 0, None
    while True:
        session = session or next((s.id for s in store.sessions_for_goal(goal.id) if s.role == "main"), None)
        if session is not None:
            for step in store.steps(session, after_seq=seen):
                render(step.kind, step.payload)
                seen = step.seq
        if not live or _over(goal):
            return goal
        time.sleep(poll_s)
        goal = store.get_goal(goal.id)


def _over(goal: Any) -> bool:
    """Nothing more will be written unless someone resumes it."""
    if goal.status in {s.value for s in ENDED} or goal.status == GoalStatus.PAUSED:
        return True
    return not goal.background and goal.shown_status != GoalStatus.RUNNING and goal.status != GoalStatus.PENDING


def ensure_daemon(concurrency: int | None = None, pool: int = 0) -> tuple[int, bool]:
    """Start a daemon for this ``TENAX_HOME`` unless one runs: its pid, and whether it was started now."""
    info = running_daemon()
    if info is not None:
        return int(info["pid"]), False
    return start_daemon(concurrency, pool), True


def daemon_note(concurrency: int | None = None) -> str:
    """After a goal was queued: make sure a daemon runs, and wake a running one so it takes the goal
    now rather than at its next tick (only a daemon that says it wakes on SIGUSR1: to an older
    one, the signal would be fatal)."""
    info = running_daemon()
    if info is not None and info.get("wake") == "SIGUSR1":
        try:
            os.kill(int(info["pid"]), signal.SIGUSR1)
        except OSError:
            pass  # gone meanwhile, or not ours to signal: it reads the queue at its next tick
    pid, started = ensure_daemon(concurrency)
    return f"started the daemon (pid {pid})" if started else f"the daemon (pid {pid}) runs it"


def start_daemon(concurrency: int | None = None, pool: int = 0) -> int:
    """Start ``tenax daemon run`` detached (own session, output to ``daemon.log``); return its pid."""
    n = concurrency or load_settings().concurrency
    with open(paths.log_file(), "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tenax.cli", "daemon", "run", "--concurrency", str(n),
                                 "--pool", str(pool)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        info = running_daemon()
        if info is not None:
            return int(info["pid"])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = paths.log_file().read_text(errors="replace").strip().splitlines()[-3:]
    raise ConfigError(f"the daemon did not start: {' | '.join(tail) or 'no output'} (log: {paths.log_file()})")


def stop_daemon(timeout_s: float = 20.0) -> str:
    info = running_daemon()
    if info is None:
        raise ConfigError(f"no daemon runs for {paths.home()} (TENAX_HOME); nothing to stop")
    os.kill(int(info["pid"]), signal.SIGTERM)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and running_daemon() is not None:
        time.sleep(0.1)
    if running_daemon() is not None:
        raise ConfigError(f"the daemon (pid {info['pid']}) did not stop within {timeout_s:.0f} s; kill it by its pid")
    return f"daemon {info['pid']} stopped; running goals go on in their workers (tenax ls)"
