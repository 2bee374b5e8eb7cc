"""The daemon's commands: ``tenax daemon start|stop|status|run``, ``tenax stop|pause|budget|rm|logs``
and the queueing behind ``tenax goal --bg`` / ``tenax submit``.

``tenax.cli`` calls ``register(app, ui)`` with itself as ``ui``: these commands print through the
CLI's own helpers (``say``, ``render_event``, ``_table``, ``_fail``...) without importing it.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import typer

from tenax.core.errors import TenaxError

STATUS_ENDED = 20  # recent goals that `daemon status` lists after the live ones
_UI: Any = None  # tenax.cli, set by register()


def queue_goal(store: Any, req: Any, *, after: Optional[str], at: Optional[str], notify: Optional[str],
               worktree: Optional[bool]) -> None:
    """``tenax goal --bg`` / ``tenax submit``: queue the goal, print its id (stdout) at once, and start
    the daemon if none runs."""
    from tenax.core.errors import ConfigError
    from tenax.daemon import control, queue

    for option, value in (("--after", after), ("--notify", notify)):
        if value is not None and not value.strip():
            raise ConfigError(f"{option} is empty; give it a {'goal id' if option == '--after' else 'command'}")
    when = queue.parse_at(at) if at is not None else None
    goal_id = queue.submit(store, req, after=after, at=when, notify=notify, use_worktree=worktree)
    print(goal_id, flush=True)
    goal = store.get_goal(goal_id)
    where = f"; worktree {goal.config['worktree']['path']}" if (goal.config or {}).get("worktree") else ""
    waits = f", waiting for {goal.waiting_on}" if goal.waiting_on else ""
    _UI.say(f"queued goal {goal_id}{waits}{where}; {control.daemon_note()}. Follow it with: tenax logs {goal_id} -f",
            err=True)


def _run(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except TenaxError as e:
        _UI._fail(e)


def stop_cmd(goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix).")) -> None:
    """Stop a goal from any terminal; it wins within one tool call and stays resumable.

    Example: tenax stop 3f2a
    """
    from tenax.daemon import control

    _UI.say(_run(lambda: control.stop(_UI._store(), goal_id)))


def pause_cmd(goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix).")) -> None:
    """Pause a goal (within one tool call); tenax resume continues it.

    Example: tenax pause 3f2a
    """
    from tenax.daemon import control

    _UI.say(_run(lambda: control.pause(_UI._store(), goal_id)))


def budget_cmd(
    goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix)."),
    max_turns: Optional[int] = typer.Option(None, "--max-turns"),
    max_usd: Optional[float] = typer.Option(None, "--max-usd"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
) -> None:
    """Raise a goal's budgets in place; a budget-exhausted background goal continues.

    Example: tenax budget 3f2a --max-usd 20
    """
    from tenax.daemon import control

    if all(v is None for v in (max_turns, max_usd, max_tokens, max_minutes)):
        _UI._fail("say which budget to raise: --max-turns, --max-usd, --max-tokens or --max-minutes")
    _run(_UI._budgets, max_turns, max_usd, max_tokens, max_minutes)  # bad numbers refused before the store
    _UI.say(_run(lambda: control.raise_budget(
        _UI._store(), goal_id, lambda old: _UI._budgets(max_turns, max_usd, max_tokens, max_minutes, base=old))))


def rm_cmd(
    goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix)."),
    purge: bool = typer.Option(False, "--purge", help="Also delete its journal, usage and ledgers from the store."),
) -> None:
    """Remove a finished goal's containers and worktree (its branch stays); --purge its journal too.

    Example: tenax rm 3f2a --purge
    """
    from tenax.daemon import control

    _UI.say(_run(lambda: control.remove(_UI._store(), goal_id, purge=purge)))


def logs_cmd(
    goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep following the journal until the goal ends."),
) -> None:
    """Show a goal's journal as a foreground goal shows it; -f follows it live.

    Example: tenax logs 3f2a -f
    """
    from tenax.daemon import control

    store = _run(_UI._store)
    goal = _run(control.follow, store, goal_id, _UI.render_event, live=follow)
    if follow:
        _UI.say()
        _UI.say((goal.shown_status, "bold"), f" goal {goal.id} after {goal.turns} turns, ${goal.cost_usd:.4f}"
                + (f": {goal.error}" if goal.error else ""))


daemon_app = typer.Typer(context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True,
                         help="Run queued goals in the background (tenax goal --bg / tenax submit).")


def _concurrency(n: Optional[int]) -> Optional[int]:
    _run(_UI._require, "--concurrency", n, "a whole number between 1 and 64", lambda v: 1 <= v <= 64)
    return n


def _pool(n: Optional[int]) -> int:
    _run(_UI._require, "--pool", n, "a whole number between 0 and 64", lambda v: 0 <= v <= 64)
    return n or 0


POOL_HELP = ("Keep N started, never-used sandbox containers, so a goal's sandbox is ready at once "
             "(needs root; default 0: none).")


@daemon_app.command("start")
def daemon_start(concurrency: Optional[int] = typer.Option(None, "--concurrency", "-j",
                                                           help="Goals run at once (default 4, or TENAX_CONCURRENCY)."),
                 pool: Optional[int] = typer.Option(None, "--pool", help=POOL_HELP)) -> None:
    """Start the daemon detached (pid file and log under TENAX_HOME).

    Example: tenax daemon start --concurrency 2 --pool 2
    """
    from tenax.daemon import control, paths

    pid, started = _run(control.ensure_daemon, _concurrency(concurrency), pool=_pool(pool))
    _UI.say(f"{'started the daemon' if started else 'the daemon already runs'} (pid {pid}); log: {paths.log_file()}")


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop the daemon; goals already running finish in their workers.

    Example: tenax daemon stop
    """
    from tenax.daemon import control

    _UI.say(_run(control.stop_daemon))


@daemon_app.command("run")
def daemon_run(concurrency: Optional[int] = typer.Option(None, "--concurrency", "-j",
                                                         help="Goals run at once (default 4, or TENAX_CONCURRENCY)."),
               pool: Optional[int] = typer.Option(None, "--pool", help=POOL_HELP)) -> None:
    """Run the daemon in the foreground (for systemd or a container).

    Example: tenax daemon run --concurrency 4 --pool 4
    """
    import gc

    gc.disable()  # the daemon's start-up imports run without collections; Supervisor.run enables them after
    from tenax.config import load_settings
    from tenax.daemon.supervisor import Supervisor

    n, size = _concurrency(concurrency), _pool(pool)
    settings = _run(load_settings)
    _run(lambda: Supervisor(_UI._store(), concurrency=n or settings.concurrency, pool=size, settings=settings).run())


@daemon_app.command("status")
def daemon_status() -> None:
    """The daemon's pid, uptime and workers, the queue, and each background goal's state.

    Example: tenax daemon status
    """
    from tenax.daemon import paths, queue
    from tenax.daemon.supervisor import running_daemon

    info = running_daemon()
    if info is None:
        _UI.say(f"no daemon runs for {paths.home()}; start one with: tenax daemon start")
    else:
        _UI.say(("daemon", "bold"), f" pid {info['pid']}, up {_UI._duration(time.time() - info['started_at'])}, "
                f"concurrency {info['concurrency']}, warm pool {info.get('pool') or 'off'}, home {paths.home()}")
    store = _run(_UI._store)
    live = _run(queue.background_goals, store)
    ended = [g for g in _run(store.list_goals, limit=STATUS_ENDED) if g.background and g.id not in {x.id for x in live}]
    goals = live + ended[::-1]
    running = sum(g.shown_status == "running" for g in live)
    _UI.say(f"{running} worker(s) busy, {len(live) - running} goal(s) queued; the last {len(ended)} ended below them")
    if goals:
        _UI.console.print(_UI._table("id", "status", "worker", "turns", "cost", "waits on", "objective", rows=(
            (g.id, g.shown_status, g.lease_pid if g.shown_status == "running" else "", g.turns,
             f"${g.cost_usd:.4f}", waits_on(g), _UI._short(g.objective, 50)) for g in goals)))


def waits_on(goal: Any) -> str:
    """What a queued goal waits for, in words ('' for one that runs or ended)."""
    if goal.shown_status in ("pending", "waiting", "interrupted", "paused") and goal.waiting_on:
        return goal.waiting_on
    if goal.status == "pending" and goal.background:
        return "a free worker"
    return ""


def job_wait(store: Any, goal: Any) -> str:
    """For a running goal: the background job it is waiting on ('' when none)."""
    from tenax.export.describe import job_waiting

    if goal.shown_status != "running":
        return ""
    main = next((s for s in store.sessions_for_goal(goal.id) if s.role == "main"), None)
    return job_waiting(store.steps(main.id, kinds=["event"])) if main else ""


def register(app: typer.Typer, ui: Any) -> None:
    """Add these commands to the CLI ``app``; ``ui`` is ``tenax.cli`` (its printing helpers)."""
    global _UI
    _UI = ui
    for name, fn in (("stop", stop_cmd), ("pause", pause_cmd), ("budget", budget_cmd), ("rm", rm_cmd),
                     ("logs", logs_cmd)):
        app.command(name)(fn)
    app.add_typer(daemon_app, name="daemon")

