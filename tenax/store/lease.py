"""Goal leases: at most one runner drives a goal, and a runner that lost its lease writes nothing more.

A lease lives in the goal's row: the owner (host, pid), when it was taken, its last heartbeat, when
it expires, and ``lease_token``, a counter raised by every acquisition (the fencing token).

- ``with store.hold_lease(goal_id, ttl_s=30) as lease:`` takes the lease or raises ``GoalBusy``
  naming the live owner. An expired lease is taken over; so is one whose owner is on this host
  and whose pid is dead (a shortcut: other hosts are judged by expiry alone, so several hosts can
  share one PostgreSQL store, as long as their clocks agree to well within ``ttl_s``).
- A daemon thread renews the lease every ``ttl_s / 3`` seconds; leaving the block releases it.
- While the lease is held, ``append_step`` (and ``update_goal``, ``record_usage``) for that goal
  check, in their own transaction, that ``lease_token`` is still this holder's; if another runner
  took the goal over they raise ``LeaseLost`` and write nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, null, select, update
from sqlalchemy.orm import Session

from tenax.core.errors import ConfigError, TenaxError
from tenax.store.base import StoreBase
from tenax.store.errors import GoalBusy, LeaseLost, NotFound
from tenax.store.models import GoalRow, utcnow
from tenax.store.prepared import hot

HOST = socket.gethostname()
_log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is alive (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def lease_live(host: str | None, pid: int | None, expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a recorded owner still holds its lease."""
    if host is None or expires_at is None or expires_at <= (now or utcnow()):
        return False
    return not (host == HOST and pid is not None and not pid_alive(pid))


@dataclass(frozen=True)
class LeaseInfo:
    goal_id: str
    token: int
    host: str | None
    pid: int | None
    acquired_at: datetime | None
    heartbeat_at: datetime | None
    expires_at: datetime | None

    @property
    def live(self) -> bool:
        return lease_live(self.host, self.pid, self.expires_at)

    def describe(self) -> str:
        since = self.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self.acquired_at else "?"
        beat = f"{(utcnow() - self.heartbeat_at).total_seconds():.0f} s ago" if self.heartbeat_at else "never"
        return f"pid {self.pid} on host {self.host} (since {since}, last heartbeat {beat})"


@hot
def _lease_token() -> Any:
    # FOR SHARE on PostgreSQL makes a concurrent takeover wait until this write commits (SQLite: nothing to add).
    return select(GoalRow.lease_token).where(GoalRow.id == bindparam("gid")).with_for_update(read=True)


_COLS = (GoalRow.lease_token, GoalRow.lease_host, GoalRow.lease_pid, GoalRow.lease_acquired_at,
         GoalRow.lease_heartbeat_at, GoalRow.lease_expires_at)
_G = GoalRow.__table__


# The lease's statements, run without the ORM (see ``tenax.store.prepared``): a worker's start waits on them.
@hot
def _lease_row() -> Any:
    return select(*(_G.c[c.key] for c in _COLS)).where(_G.c.id == bindparam("gid")).with_for_update()


@hot
def _lease_take() -> Any:
    return update(_G).where(_G.c.id == bindparam("gid")).values(
        lease_token=bindparam("token"), lease_host=bindparam("host"), lease_pid=bindparam("pid"),
        lease_acquired_at=bindparam("now"), lease_heartbeat_at=bindparam("now"), lease_expires_at=bindparam("expires"))


@hot
def _lease_renew() -> Any:
    return update(_G).where(_G.c.id == bindparam("gid"), _G.c.lease_token == bindparam("token")).values(
        lease_heartbeat_at=bindparam("now"), lease_expires_at=bindparam("expires"))


@hot
def _lease_release() -> Any:
    return update(_G).where(_G.c.id == bindparam("gid"), _G.c.lease_token == bindparam("token")).values(
        lease_host=null(), lease_pid=null(), lease_expires_at=null())



class Lease:
    """A held lease (see the module docs). ``lost`` turns True once a heartbeat finds it taken over."""

    def __init__(self, store: "LeaseStore", goal_id: str, ttl_s: float):
        if not (isinstance(ttl_s, (int, float)) and 0.5 <= ttl_s <= 3600):
            raise ConfigError(f"a lease ttl must be between 0.5 and 3600 seconds, got {ttl_s!r}")
        self.store, self.goal_id, self.ttl_s = store, goal_id, float(ttl_s)
        self.token = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Lease":
        self.token = self.store._acquire_lease(self.goal_id, self.ttl_s)
        self._thread = threading.Thread(target=self._beat, name=f"tenax-lease-{self.goal_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.ttl_s)
        self.store._release_lease(self.goal_id, self.token)

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` ahead; LeaseLost if another runner took the goal over."""
        if not self.store._renew_lease(self.goal_id, self.token, self.ttl_s):
            self.lost = True
            raise LeaseLost(f"goal {self.goal_id}: this process lost its lease (now held by "
                            f"{self.store.lease_info(self.goal_id).describe()}); it must stop driving the goal")

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except LeaseLost:
                return
            except TenaxError as e:  # a busy or failing database: the next beat tries again
                _log.warning("goal %s: lease heartbeat failed: %s", self.goal_id, e)


class LeaseStore(StoreBase):
    """Lease methods of ``SqlStore``."""

    def __init__(self, engine: Any):
        super().__init__(engine)
        self._held: dict[str, int] = {}  # goal id -> fencing token of a lease this store holds

    def hold_lease(self, goal_id: str, ttl_s: float = 30) -> Lease:
        """A context manager that takes the goal's lease on entry (GoalBusy if a live owner has
        it), renews it from a daemon thread and releases it on exit."""
        return Lease(self, goal_id, ttl_s)

    def lease_info(self, goal_id: str) -> LeaseInfo:
        with self._read() as s:
            row = s.execute(select(*_COLS).where(GoalRow.id == goal_id)).one_or_none()
        if row is None:
            raise NotFound(f"no goal {goal_id!r}")
        return LeaseInfo(goal_id, *row)

    def _acquire_lease(self, goal_id: str, ttl_s: float) -> int:
        now = utcnow()
        with self._tx() as cur:
            rows = self._prepared(_lease_row).run(cur, gid=goal_id)
            if not rows:
                raise NotFound(f"no goal {goal_id!r}")
            info = LeaseInfo(goal_id, *rows[0])
            if lease_live(info.host, info.pid, info.expires_at, now):
                raise GoalBusy(
                    f"goal {goal_id} is being driven by {info.describe()}. Two runners would break its "
                    f"conversation: wait for that process to end or stop it (the lease expires "
                    f"{ttl_s:.0f} s after its last heartbeat if it died on another host)."
                )
            token = info.token + 1
            self._prepared(_lease_take).run(cur, gid=goal_id, token=token, host=HOST, pid=os.getpid(),
                                            now=now, expires=now + timedelta(seconds=ttl_s))
        self._held[goal_id] = token
        return token

    def _renew_lease(self, goal_id: str, token: int, ttl_s: float) -> bool:
        now = utcnow()
        with self._tx() as cur:
            return self._prepared(_lease_renew).run(
                cur, gid=goal_id, token=token, now=now, expires=now + timedelta(seconds=ttl_s)) == 1

    def _release_lease(self, goal_id: str, token: int) -> None:
        self._held.pop(goal_id, None)
        with self._tx() as cur:
            self._prepared(_lease_release).run(cur, gid=goal_id, token=token)

    def _fence(self, tx: Session | Any, goal_id: str) -> None:
        """Inside a write (an ORM session or a ``_tx`` cursor): LeaseLost unless this store still
        holds the lease it took on ``goal_id``."""
        token = self._held.get(goal_id)
        if token is None:
            return
        if isinstance(tx, Session):
            current = tx.scalar(_lease_token(), {"gid": goal_id})
        else:
            current = next(iter(self._prepared(_lease_token).run(tx, gid=goal_id)), (None,))[0]
        if current != token:
            raise LeaseLost(f"goal {goal_id} was taken over by another runner (lease {current}, ours {token}); "
                            "this process must stop driving it. Nothing was written.")
