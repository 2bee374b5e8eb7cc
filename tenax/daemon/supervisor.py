"""The daemon: runs queued background goals, each in its own worker process, up to N at once.

It keeps no state of its own that matters: every tick it reads the queue from the store, so a
daemon started after a dead one picks up every goal (a goal whose worker still runs is left to it;
one whose runner died is resumed from its journal). One daemon per ``TENAX_HOME`` (an exclusive
``flock`` on ``daemon.lock``); ``daemon.pid`` holds its pid, start time and concurrency as JSON.
Control goes through the store only: no socket, no TCP.

Workers are forked from the daemon once it has imported tenax's wiring (``tenax.app``) and the
goal's provider SDK (seconds of CPU each on a small machine), so a goal starts in milliseconds;
each is still a process of its own, in its own session, running ``tenax.daemon.worker.main``.
The daemon sleeps between ticks until a worker exits (SIGCHLD) or a worker's goal leaves
``running`` (the worker sends SIGUSR1), so a freed slot is filled at once, not at the next tick.
A daemon that stops (or dies) leaves running goals to finish; the next daemon watches them
through their leases.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, IO

from tenax.config import Settings, load_settings
from tenax.core.errors import ConfigError, TenaxError
from tenax.core.status import ENDED, GoalStatus
from tenax.daemon import paths, queue
from tenax.daemon.notify import notify
from tenax.daemon.paths import BUSY_EXIT, log
from tenax.store.lease import lease_live, pid_alive

TICK_S = 0.5  # the longest sleep between ticks; a worker's exit or its goal's end wakes the daemon at once
WAKE = (signal.SIGCHLD, signal.SIGUSR1)
CLEANUP_EVERY_S = 300.0
RESUMABLE_CONTAINERS = {GoalStatus.STOPPED.value, GoalStatus.PAUSED.value}  # kept for resume


class Worker:
    """A forked worker process; ``poll()`` answers like ``subprocess.Popen.poll`` (minus a signal)."""

    def __init__(self, goal_id: str, keep_closed: list[int]):
        from tenax.daemon import worker

        out = paths.worker_log(goal_id)
        self.returncode: int | None = None
        daemon = os.getpid()
        self.pid = os.fork()
        if self.pid:
            return
        code = 1
        try:  # the child: never returns into the daemon's code
            os.setsid()  # its own session: the daemon's terminal and its end do not reach it
            signal.set_wakeup_fd(-1)
            for fd in keep_closed:
                os.close(fd)  # e.g. the daemon's lock: a worker must not keep it after the daemon dies
            for sig in (signal.SIGINT, signal.SIGTERM, *WAKE):
                signal.signal(sig, signal.SIG_DFL)
            worker.DAEMON_PID = daemon
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            code = worker.main([goal_id])
        except BaseException:  # noqa: BLE001 - whatever happens, the child ends here
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def running_daemon() -> dict[str, Any] | None:
    """The live daemon of this ``TENAX_HOME`` (its pid file's content), or None."""
    try:
        info = json.loads(paths.pid_file().read_text())
    except (OSError, ValueError):
        return None
    with open(paths.lock_file(), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return info if pid_alive(int(info.get("pid", 0))) else None
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


@dataclass
class Supervisor:
    store: Any
    concurrency: int = 4
    settings: Settings = field(default_factory=load_settings)
    workers: dict[str, Worker] = field(default_factory=dict)  # goal id -> its worker
    stopping: bool = False
    _lock: IO[str] | None = None
    _cleaned_at: float = 0.0
    _wake: tuple[int, int] | None = None  # the pipe signals are written to (signal.set_wakeup_fd)
    _warmed: set[str] = field(default_factory=set)

    def run(self) -> None:
        """Run until SIGTERM / SIGINT; running workers are left to finish their goals."""
        self._take_lock()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake[1])
        for sig in WAKE:
            signal.signal(sig, lambda signum, frame: None)  # only to wake the select() in _nap
        log(f"daemon {os.getpid()} started: home {paths.home()}, db {self.store.url.render_as_string(hide_password=True)}, "
            f"concurrency {self.concurrency}")
        import tenax.daemon.worker  # noqa: F401 - loaded once here, shared by every forked worker
        try:
            while not self.stopping:
                try:
                    self.tick()
                except TenaxError as e:  # a busy or failing database: try again next tick
                    log(f"tick failed: {e}")
                self._nap()
        finally:
            paths.pid_file().unlink(missing_ok=True)
            log(f"daemon stopped; {len(self._alive())} worker(s) go on with their goals")

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _nap(self) -> None:
        """Sleep up to TICK_S, or until a signal (a worker's exit or ping, a stop) arrives."""
        if select.select([self._wake[0]], [], [], TICK_S)[0]:
            try:
                while os.read(self._wake[0], 512):
                    pass
            except BlockingIOError:
                pass

    def _take_lock(self) -> None:
        self._lock = open(paths.lock_file(), "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = running_daemon() or {}
            raise ConfigError(f"a tenax daemon already runs for {paths.home()} (pid {other.get('pid', '?')}); "
                              "stop it with `tenax daemon stop` or use another TENAX_HOME") from None
        paths.pid_file().write_text(json.dumps({"pid": os.getpid(), "started_at": time.time(),
                                                "concurrency": self.concurrency, "db": str(self.store.url)}))

    # -- one pass over the queue --------------------------------------------------------------
    def tick(self) -> None:
        self._reap()
        goals = queue.background_goals(self.store)
        queue.settle_chains(self.store, goals, self._ended)
        live = {g.id for g in goals}
        busy = {gid for gid in self._alive() if gid in live}  # a worker tearing down an ended goal holds no slot
        for goal in goals:
            if goal.status == GoalStatus.RUNNING and goal.id not in busy:
                if lease_live(goal.lease_host, goal.lease_pid, goal.lease_expires_at):
                    busy.add(goal.id)  # a worker of an earlier daemon still drives it
                else:
                    log(f"goal {goal.id}: its runner is gone; it resumes from its journal")
                    queue.worker_died(self.store, goal, "its runner is gone", self.settings, self._ended)
        now = queue.utcnow()
        for goal in queue.background_goals(self.store, queue.QUEUED):
            if len(busy) >= self.concurrency:
                break
            if goal.id not in self.workers and queue.is_ready(self.store, goal, now):
                self._spawn(goal)
                busy.add(goal.id)
        if time.monotonic() - self._cleaned_at > CLEANUP_EVERY_S:
            self.cleanup()

    def _alive(self) -> list[str]:
        return [gid for gid, p in self.workers.items() if p.poll() is None]

    def _warm(self, goal: Any) -> None:
        """Once per provider, build a throw-away model of the goal's kind in the daemon, so its SDK
        is imported (2-3 s of CPU for anthropic's) before the fork instead of in every worker."""
        provider = goal.model.partition(":")[0]
        if provider in self._warmed:
            return
        self._warmed.add(provider)
        from tenax.app import build_model, price_for

        try:
            price_for(build_model(goal.model, (goal.config or {}).get("base_url"), api_key="warm-up"), self.settings)
        except Exception as e:  # noqa: BLE001 - the worker meets the same fault and records it on the goal
            log(f"could not load the {provider} provider ahead of its workers: {e}")

    def _spawn(self, goal: Any) -> None:
        self._warm(goal)
        sys.stdout.flush()
        keep_closed = [*([self._lock.fileno()] if self._lock else []), *(self._wake or ())]
        self.workers[goal.id] = Worker(goal.id, keep_closed)
        log(f"goal {goal.id}: worker {self.workers[goal.id].pid} started ({goal.status})")

    def _reap(self) -> None:
        for gid, proc in list(self.workers.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.workers[gid]
            goal = self.store.get_goal(gid)
            log(f"goal {gid}: worker {proc.pid} exited {code}; the goal is {goal.status}")
            if goal.status == GoalStatus.RUNNING and not lease_live(goal.lease_host, goal.lease_pid, goal.lease_expires_at) \
                    or (goal.status == GoalStatus.PENDING and code not in (0, BUSY_EXIT)):
                why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                queue.worker_died(self.store, goal, why, self.settings, self._ended)

    def _ended(self, goal: Any) -> None:
        log(f"goal {goal.id}: {goal.status}" + (f" ({goal.error})" if goal.error else ""))
        notify(goal, log)

    # -- containers ---------------------------------------------------------------------------
    def cleanup(self) -> int:
        """Remove, by label, the containers of this store's finished goals and of goals it does not
        know (only those labelled with its own store). Never a goal that is live or resumable in place."""
        from tenax.app import store_labels
        from tenax.sandbox import cleanup_by_label, ensure_docker
        from tenax.store.errors import NotFound

        self._cleaned_at = time.monotonic()
        try:
            client = ensure_docker()
            containers = client.containers.list(all=True, filters={"label": ["tenax=1"]})
        except Exception as e:  # noqa: BLE001 - Docker being away must not stop the queue
            log(f"container cleanup skipped: {e}")
            return 0
        mine = store_labels(self.store)["tenax.store"]
        doomed: set[str] = set()
        for c in containers:
            gid = c.labels.get("tenax.goal")
            if not gid:
                continue
            try:
                goal = self.store.get_goal(gid)
            except NotFound:
                if c.labels.get("tenax.store") == mine:
                    doomed.add(gid)
                continue
            if goal.status in {s.value for s in ENDED} - RESUMABLE_CONTAINERS and gid not in self.workers:
                doomed.add(gid)
        removed = sum(cleanup_by_label(client, goal_id=gid) for gid in sorted(doomed))
        client.close()
        if removed:
            log(f"removed {removed} container(s) of finished or unknown goals: {', '.join(sorted(doomed))}")
        return removed
