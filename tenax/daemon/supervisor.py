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
Spare workers (as many as goals may run at once) wait, forked and their store opened in a quiet
moment after the last start, each for a goal id on its pipe, so starting a goal does not wait for a
fork; a spare exits at its pipe's EOF (the daemon stopped or died).
A daemon that stops (or dies) leaves running goals to finish; the next daemon watches them
through their leases.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, IO

from tenax.config import Settings, load_settings
from tenax.core.errors import ConfigError, TenaxError
from tenax.core.ready import readable
from tenax.core.status import GoalStatus
from tenax.daemon import paths, queue, worktree
from tenax.daemon.notify import notify
from tenax.daemon.paths import BUSY_EXIT, log
from tenax.store.lease import lease_live, pid_alive

TICK_S = 0.5  # the longest sleep between ticks (TENAX_DAEMON_TICK_S); a worker's exit or its goal's end wakes it at once
WAKE = (signal.SIGCHLD, signal.SIGUSR1)
CLEANUP_EVERY_S = 300.0
FILL_SETTLE_S = 1.0  # a refill starts this long after the first claim it replaces: the goal that took the
# container starts first (creating containers is the Docker engine's heaviest work, and goals tend to end together)
FILLER_WAIT_S = 10.0  # at the daemon's stop, how long a running pool filler may take to finish


class Child:
    """A process forked from the daemon, running ``main()`` with its output appended to ``out``;
    ``poll()`` answers like ``subprocess.Popen.poll`` (minus a signal)."""

    def __init__(self, main: Callable[[], int], out: Path, keep_closed: list[int]):
        from tenax.daemon import worker

        self.returncode: int | None = None
        daemon = os.getpid()
        self.pid = os.fork()
        if self.pid:
            return
        code = 1
        try:  # the child: never returns into the daemon's code
            os.setsid()  # its own session: the daemon's terminal and its end do not reach it
            gc.enable()  # (a child forked while the daemon's start-up imports run)
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
            code = main()
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

    def wait(self, timeout: float) -> bool:
        """Wait until it ends, at most ``timeout`` s, then kill it (a hung Docker engine must not
        hold the daemon) and reap it. True when it ended by itself."""
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > end:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
                return False
            time.sleep(0.02)
        return True


def tick_s() -> float:
    """How long the daemon sleeps when nothing wakes it: what bounds its reaction to a newly queued
    goal, an ``--at`` time or a control; TENAX_DAEMON_TICK_S overrides the default."""
    raw = os.environ.get("TENAX_DAEMON_TICK_S", "").strip()
    try:
        value = float(raw) if raw else TICK_S
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 60:
        raise ConfigError(f"TENAX_DAEMON_TICK_S={raw!r} is not a number of seconds between 0.05 and 60; "
                          f"unset it (default {TICK_S}) or give e.g. 0.5")
    return value


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
    pool: int = 0  # warm pool size (0: every goal's sandbox is cold-started by its worker)
    workers: dict[str, Child] = field(default_factory=dict)  # goal id -> its worker
    stopping: bool = False
    _lock: IO[str] | None = None
    _cleaned_at: float = 0.0
    _tick: float = TICK_S
    _wake: tuple[int, int] | None = None  # the pipe signals are written to (signal.set_wakeup_fd)
    _warmed: set[str] = field(default_factory=set)
    _ahead: dict[str, str] = field(default_factory=dict)  # goal id -> the pool container claimed ahead for it
    _no_claim: set[str] = field(default_factory=set)  # goals not to claim ahead for (they got none)
    _started_at: float = 0.0  # (monotonic) the last goal's start
    _ahead_child: Child | None = None  # the child starting containers ahead (_start_ahead)
    _starting: set[str] = field(default_factory=set)  # the goals whose containers it starts
    _started_ahead: set[str] = field(default_factory=set)  # goals whose containers were started ahead
    _pool_id: str = ""
    _pool_missing: int = 0  # pool containers to start (the filler is forked when none runs)
    _filler: Child | None = None
    _client: Any = None  # the daemon's Docker client (for the pool)
    _fill_after: float = 0.0  # the next fill not before this (monotonic): after a failed fill, or a claim
    _spares: list[tuple[Child, int]] = field(default_factory=list)  # workers waiting for a goal id (on the pipe
    # the int writes to)
    _spare_after: float = 0.0  # no new spare before this (monotonic): a spare that failed is retried after a pause

    def run(self) -> None:
        """Run until SIGTERM / SIGINT; running workers are left to finish their goals."""
        self._tick = tick_s()
        if self.pool:
            from tenax.sandbox.pool import SandboxPool

            SandboxPool(self.pool)._shared_root()  # refused at once without root
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
            f"concurrency {self.concurrency}, warm pool {self.pool or 'off'}")
        gc.disable()  # while the start-up imports run (`daemon run` disabled it already): collections over
        try:  # thousands of new classes cost a quarter of their time, and what they load stays alive (then frozen)
            import tenax.daemon.worker  # noqa: F401 - loaded once here, shared by every forked worker
            from tenax.sandbox import _channel

            _channel._payload()  # the exec server's code, compiled once here (14 ms) instead of in each worker
            gc.freeze()
            if self.pool:  # the filler starts the pool while the daemon loads the queued goals' SDKs
                import uuid

                self._pool_id, self._pool_missing = uuid.uuid4().hex[:8], self.pool
                self._refill()
            for goal in queue.background_goals(self.store, queue.QUEUED):
                self._warm(goal)
        finally:
            gc.enable()
        try:
            while not self.stopping:
                try:
                    self.tick()
                except (TenaxError, OSError) as e:  # a busy or failing database, a failed fork: try again next tick
                    log(f"tick failed: {e}")
                self._nap()
        finally:
            self._drop_spares()
            self._drop_ahead()
            self._drain_pool()
            paths.pid_file().unlink(missing_ok=True)
            log(f"daemon stopped; {len(self._alive())} worker(s) go on with their goals")

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _nap(self) -> None:
        """Sleep up to a tick, or until a signal (a worker's exit or ping, a stop) arrives."""
        if readable([self._wake[0]], self._tick):
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
        paths.pid_file().write_text(json.dumps({"pid": os.getpid(), "started_at": time.time(), "pool": self.pool,
                                                "wake": "SIGUSR1", "concurrency": self.concurrency, "db": str(self.store.url)}))

    # -- one pass over the queue --------------------------------------------------------------
    def tick(self) -> None:
        self._reap()
        goals = queue.background_goals(self.store)  # the queue's one listing per tick (unless it changes below)
        changed = queue.settle_chains(self.store, goals, self._ended)
        live = {g.id for g in goals}
        busy = {gid for gid in self._alive() if gid in live}  # a worker tearing down an ended goal holds no slot
        for goal in goals:
            if goal.status == GoalStatus.RUNNING and goal.id not in busy:
                if lease_live(goal.lease_host, goal.lease_pid, goal.lease_expires_at):
                    busy.add(goal.id)  # a worker of an earlier daemon still drives it
                else:
                    log(f"goal {goal.id}: its runner is gone; it resumes from its journal")
                    queue.worker_died(self.store, goal, "its runner is gone", self.settings, self._ended)
                    changed = True
        if changed:
            goals = queue.background_goals(self.store)
        queued = {g.id for g in goals if g.status in queue.QUEUED}
        self._no_claim &= queued
        for gid in set(self._ahead) - queued:  # ended (or paused...) before it started: its container is its own
            del self._ahead[gid]
        self._started_ahead &= queued
        now = queue.utcnow()
        waiting, later = 0, []  # ready goals beyond the free slots: the next to start (without a pool container)
        for goal in goals:
            if goal.status not in queue.QUEUED or goal.id in self.workers:
                continue
            if len(busy) >= self.concurrency and (waiting >= self.concurrency or not self._settled()):
                break
            if not queue.is_ready(self.store, goal, now):
                continue
            if len(busy) < self.concurrency:
                self._spawn(goal)
                busy.add(goal.id)
            else:
                waiting += 1
                if not self._claim_ahead(goal):
                    later.append(goal)
        self._start_ahead(later)
        self._refill()
        self._keep_spare()
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
        gc.freeze()  # what is loaded now is never collected: a worker's collections skip it (and leave its pages shared)

    def _fork(self, main: Callable[[], int], out: Path, also_close: tuple[int, ...] = ()) -> Child:
        sys.stdout.flush()  # a child keeps none of the daemon's own descriptors (a spare's pipe: its EOF ends the spare)
        return Child(main, out, [*([self._lock.fileno()] if self._lock else []), *(self._wake or ()),
                                 *(fd for _, fd in self._spares), *also_close])

    def _spawn(self, goal: Any) -> None:
        from tenax.daemon import worker

        self._warm(goal)
        self._started_at = time.monotonic()
        self._wait_ahead(goal.id)
        if goal.id in self._started_ahead:
            self._started_ahead.discard(goal.id)
            where = ", its container started ahead"
        else:
            where = self._ahead.pop(goal.id, None) or self._claim(goal)
        self.workers[goal.id] = self._take_spare(goal.id) or self._fork(lambda: worker.main([goal.id]),
                                                                         paths.worker_log(goal.id))
        log(f"goal {goal.id}: worker {self.workers[goal.id].pid} started ({goal.status}{where})")

    # -- the spare workers ---------------------------------------------------------------------
    def _keep_spare(self) -> None:
        """Fork spare workers up to the concurrency, once the last start settled (a spare's fork is
        never one a goal's start waits for)."""
        for spare, fd in list(self._spares):
            if (code := spare.poll()) is not None:  # it ended before it had a goal (its store could not be opened...)
                self._spares.remove((spare, fd))
                os.close(fd)
                log(f"a spare worker exited {code} before it had a goal (see {paths.worker_log('spare')}); "
                    f"the next one in {CLEANUP_EVERY_S / 10:.0f} s")
                self._spare_after = time.monotonic() + CLEANUP_EVERY_S / 10
        from tenax.daemon import worker

        while len(self._spares) < self.concurrency and not self.stopping and self._settled() \
                and time.monotonic() >= self._spare_after:
            read_fd, write_fd = os.pipe()
            try:
                self._spares.append((self._fork(lambda: worker.spare(read_fd), paths.worker_log("spare"),
                                                also_close=(write_fd,)), write_fd))
            except OSError:
                os.close(write_fd)
                raise
            finally:
                os.close(read_fd)

    def _take_spare(self, goal_id: str) -> Child | None:
        """Hand ``goal_id`` to a spare worker; None when there is no live one."""
        while self._spares:
            spare, fd = self._spares.pop(0)
            try:
                taken = spare.poll() is None and os.write(fd, f"{goal_id}\n".encode()) > 0
            except OSError:  # it died meanwhile
                taken = False
            finally:
                os.close(fd)
            if taken:
                return spare
        return None

    def _drop_spares(self) -> None:
        """Let the spares go (EOF on their pipes: they exit)."""
        for spare, fd in self._spares:
            os.close(fd)
            spare.poll()
        self._spares.clear()

    # -- the warm pool ------------------------------------------------------------------------
    def _settled(self) -> bool:
        """Whether the last goal's start is long enough ago for work ahead (not while starts run)."""
        return time.monotonic() - self._started_at >= FILL_SETTLE_S

    def _may_claim_ahead(self) -> bool:
        """Whether to claim pool containers for the goals that start next: once the last starts
        settled, when the pool has unclaimed ready containers."""
        return bool(self._pool_id) and self._filler is None and self._pool_missing < self.pool and self._settled()

    def _claim_ahead(self, goal: Any) -> bool:
        """Claim a pool container for a ready goal that waits for a slot, while the workers run: its
        start (when a slot frees, often together with others) then makes no Docker call in the daemon.
        A goal that ends before it starts leaves its container to the cleanup, as any ended goal.
        True when the goal has one claimed ahead."""
        if goal.id in self._ahead:
            return True
        if goal.id in self._no_claim or not self._may_claim_ahead():
            return False
        where = self._claim(goal)
        if where:
            self._ahead[goal.id] = where
            log(f"goal {goal.id}:{where.removeprefix(',')} claimed ahead (it starts on it when a slot frees)")
        else:
            self._no_claim.add(goal.id)  # not for the pool (its network, image...), or none was ready
        return bool(where)

    def _start_ahead(self, goals: list[Any]) -> None:
        """Without a pool container for them, start the containers of the goals that start next, in a
        forked child, while the workers run (creating one costs the Docker engine a third of a second,
        which the goal's start then does not wait for). Each goal's runner re-attaches to its own."""
        from tenax.app import can_start_ahead, goal_sandbox

        if self._ahead_child is not None:
            if self._ahead_child.poll() is None:
                return
            self._ahead_done()
        goals = [g for g in goals if g.id not in self._started_ahead and can_start_ahead(g)]
        if not goals or not self._settled() or self._filler is not None:
            return
        boxes = [goal_sandbox(self.store, g, self.settings) for g in goals]
        self._starting = {g.id for g in goals}
        self._started_ahead |= self._starting
        self._ahead_child = self._fork(lambda: _start_all(boxes), paths.worker_log("ahead"))
        log(f"starting the containers of {len(goals)} goal(s) ahead: {', '.join(sorted(self._starting))}")

    def _wait_ahead(self, goal_id: str | None = None) -> None:
        """Wait for the child starting containers ahead (at most FILLER_WAIT_S): when it starts
        ``goal_id``'s, which is about to start (its runner must find the container whole), or with no
        goal, at the daemon's stop."""
        child = self._ahead_child
        if child is None or (goal_id is not None and goal_id not in self._starting):
            return
        if not child.wait(FILLER_WAIT_S):
            log(f"starting containers ahead (pid {child.pid}) did not finish in {FILLER_WAIT_S:.0f} s; killed it")
        self._ahead_done()

    def _ahead_done(self) -> None:
        """The child starting containers ahead ended: when it failed, its goals start their own."""
        if self._ahead_child is not None and self._ahead_child.poll() != 0:
            log(f"some containers could not be started ahead (see {paths.worker_log('ahead')}); "
                "their goals start their own")
            self._started_ahead -= self._starting
        self._ahead_child, self._starting = None, set()

    def _drop_ahead(self) -> None:
        """At the daemon's stop: remove the containers claimed or started ahead for goals that did not
        start (no container waits for a daemon that is gone; the next one does the same again)."""
        self._wait_ahead()
        waiting = set(self._ahead) | self._started_ahead
        if not waiting:
            return
        from tenax.sandbox import cleanup_by_label

        removed = 0
        try:
            for gid in sorted(waiting):
                goal = self.store.get_goal(gid)
                if goal.status in queue.QUEUED and not lease_live(goal.lease_host, goal.lease_pid, goal.lease_expires_at):
                    removed += cleanup_by_label(self._docker(), goal_id=gid)
        except Exception as e:  # noqa: BLE001 - Docker or the store away: each goal re-attaches to its own later
            log(f"could not remove the containers started ahead: {e}")
        log(f"removed {removed} container(s) claimed or started ahead for goals that did not start")

    def _claim(self, goal: Any) -> str:
        """Hand the goal a container of the warm pool before its worker starts (its sandbox's start()
        re-attaches to it by name); '' when it gets none and cold-starts its own."""
        config = goal.config or {}
        if not self._pool_id or goal.status != GoalStatus.PENDING or config.get("allow_hosts") or config.get("worktree") \
                or (goal.network or "none") != "none" or (config.get("image") or self.settings.image) != self.settings.image:
            return ""
        from tenax.sandbox.pool import claim

        try:
            container = claim(self._pool_id, goal.workspace, goal.id, self._docker())
        except Exception as e:  # noqa: BLE001 - a pool fault must not stop the goal: it cold-starts
            log(f"goal {goal.id}: no pool container ({e})")
            return ""
        if container is None:
            return ""
        if self._pool_missing == 0:  # the first claim since the last fill: refill once the goals it starts have started
            self._fill_after = max(self._fill_after, time.monotonic() + FILL_SETTLE_S)
        self._pool_missing += 1
        return f", pool container {container[:12]}"

    def _docker(self) -> Any:
        if self._client is None:
            from tenax.sandbox import ensure_docker

            self._client = ensure_docker()
        return self._client

    def _refill(self) -> None:
        """Start the pool containers claimed since the last fill, in a forked filler (creating a container
        takes the Docker engine about half a second, which the daemon's own loop must not wait for)."""
        if not self._pool_id:
            return
        from tenax.sandbox.pool import POOL_LABEL, UNUSED, SandboxPool

        if self._filler is not None:
            code = self._filler.poll()
            if code is None:
                return
            self._filler = None
            if code != 0:
                log(f"warm pool: refill failed (exit code {code}, see {paths.worker_log('pool')}); "
                    f"retrying in {CLEANUP_EVERY_S / 10:.0f} s")
                self._fill_after = time.monotonic() + CLEANUP_EVERY_S / 10
            try:  # what the pool lacks now (claims went on while it filled; a failed fill started fewer)
                self._pool_missing = self.pool - len(self._docker().containers.list(
                    all=True, filters={"label": f"{POOL_LABEL}={self._pool_id}", "name": UNUSED}, ignore_removed=True))
            except Exception as e:  # noqa: BLE001 - Docker away: try again after the pause
                log(f"warm pool: could not count its containers: {e}")
                self._fill_after = time.monotonic() + CLEANUP_EVERY_S / 10
        if self._pool_missing <= 0 or time.monotonic() < self._fill_after:
            return
        from tenax.app import sandbox_limits, store_labels

        pool = SandboxPool(self._pool_missing, pool_id=self._pool_id, image=self.settings.image,
                           labels=store_labels(self.store), **sandbox_limits(self.settings))
        self._pool_missing = 0
        self._filler = self._fork(lambda: 0 if pool.fill(detach=True) >= 0 else 1, paths.worker_log("pool"))

    def _drain_pool(self) -> None:
        """At the daemon's stop: let a running filler finish, then remove the pool's unused containers."""
        if not self._pool_id:
            return
        if self._filler is not None and not self._filler.wait(FILLER_WAIT_S):
            log(f"warm pool: its filler (pid {self._filler.pid}) did not finish in {FILLER_WAIT_S:.0f} s; killed it")
        from tenax.sandbox.pool import POOL_LABEL, cleanup_pools

        try:
            removed = cleanup_pools(labels={POOL_LABEL: self._pool_id})
            log(f"warm pool: removed its {removed} unused container(s)")
        except Exception as e:  # noqa: BLE001 - Docker being away: the next daemon's cleanup removes them
            log(f"warm pool: could not remove its unused containers: {e}")

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

    def _knows(self, goal_id: str) -> bool:
        from tenax.store.errors import NotFound

        try:
            return self.store.get_goal(goal_id).id == goal_id
        except NotFound:
            return False

    # -- containers and worktrees ---------------------------------------------------------------
    def cleanup(self) -> int:
        """Remove, by label, the containers of this store's finished goals and of goals it does not
        know (only those labelled with its own store), and the worktrees of goals it does not know.
        Never a goal that is live or resumable in place. Returns how many containers were removed."""
        from tenax.app import done_with_container, store_labels
        from tenax.sandbox import cleanup_by_label, ensure_docker
        from tenax.store.errors import NotFound

        self._cleaned_at = time.monotonic()
        mine = store_labels(self.store)["tenax.store"]
        trees = worktree.remove_orphans(self._knows, mine)
        if trees:
            log(f"removed the worktrees of {len(trees)} goal(s) this store no longer has: {', '.join(trees)}")
        try:
            client = ensure_docker()
            containers = client.containers.list(all=True, filters={"label": ["tenax=1"]}, ignore_removed=True)  # one
            # removed between the listing and its inspect (a goal's own, 1.5 s after it ended) skipped the whole cleanup
        except Exception as e:  # noqa: BLE001 - Docker being away must not stop the queue
            log(f"container cleanup skipped: {e}")
            return 0
        from tenax.sandbox.pool import POOL_LABEL, UNUSED, cleanup_pools

        doomed: set[str] = set()
        for c in containers:
            if POOL_LABEL in c.labels and c.name.startswith(UNUSED):
                continue  # an unused pool container: cleanup_pools below
            gid = c.name.removeprefix("tenax-") if POOL_LABEL in c.labels else c.labels.get("tenax.goal")
            if not gid:
                continue
            try:
                goal = self.store.get_goal(gid)
            except NotFound:
                if c.labels.get("tenax.store") == mine:
                    doomed.add(gid)
                continue
            if done_with_container(goal.status) and gid not in self.workers:
                doomed.add(gid)
        removed = sum(cleanup_by_label(client, goal_id=gid) for gid in sorted(doomed))
        if removed:
            log(f"removed {removed} container(s) of finished or unknown goals: {', '.join(sorted(doomed))}")
        try:
            unused = cleanup_pools(client, labels={"tenax.store": mine}, keep=self._pool_id or None)
        except Exception as e:  # noqa: BLE001 - as above; the next cleanup tries again
            log(f"warm pool cleanup skipped: {e}")
            unused = 0
        if unused:
            log(f"removed {unused} unused container(s) of warm pools no daemon runs")
        client.close()
        return removed + unused


def _start_all(boxes: list[Any]) -> int:
    """(In the forked child of ``Supervisor._start_ahead``.) Start each goal's container ahead."""
    failed = 0
    for box in boxes:
        try:
            box.start_ahead()
        except TenaxError as e:  # the goal's own start meets it again, and records it
            print(f"goal {box.goal_id}: its container could not be started ahead: {e}", flush=True)
            failed += 1
    return 1 if failed else 0
