"""SqlStore: tenax's durable state on any SQLAlchemy database (SQLite WAL by default).

Every write is its own short transaction and commits before the method returns: the store is
a journal, so a ``kill -9`` right after a call returns loses nothing. Methods hand back frozen
pydantic snapshots, never ORM objects attached to a session.

Durability (SQLite): WAL with ``synchronous=NORMAL`` by default - durable against ``kill -9`` and
any crash of tenax, not against a power loss, which may drop the last commits (never corrupt the
file). ``TENAX_DURABILITY=full`` selects ``synchronous=FULL``: every commit is fsynced. The WAL is
checkpointed every ``CHECKPOINT_EVERY`` writes (passively, so its file is reused in place; truncated
once it has grown past ``TRUNCATE_WAL_ABOVE``) and capped by ``journal_size_limit``.

Faults: a corrupted or foreign file is a ``ConfigError`` naming it at open; a write lock held by
another process beyond the busy timeout is ``StoreBusy``; a full disk or an I/O error is
``StoreError``. Each aborts the whole transaction, so nothing partial is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, case, delete, func, insert, literal_column, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from tenax.core.errors import ConfigError, ModelSwitchRefused, TenaxError
from tenax.core.messages import Attempt, Usage
from tenax.core.protocols import UsageEntry
from tenax.core.status import IllegalTransition, check_transition
from tenax.store.engine import make_engine, resolve_url, url_for_display
from tenax.store.migrate import ensure_schema
from tenax.store.models import (
    BUDGET_KEYS,
    GOAL_STATUSES,
    TERMINAL_GOAL_STATUSES,
    GoalRow,
    SessionRow,
    StepRow,
    UsageRow,
    new_id,
    utcnow,
)
from tenax.store.records import GoalRecord, SessionRecord, StepRecord, UsageRecord
from tenax.store.agents import AgentLedger
from tenax.store.prepared import hot
from tenax.store.base import check_json, encode_json, fetch, store_fault
from tenax.store.errors import NotFound, StoreBusy
from tenax.store.lease import LeaseStore
from tenax.store.memory import MemoryLedger

__all__ = ["NotFound", "SqlStore", "open_store"]


_TOTAL_INT_FIELDS = ("turns", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_TOTAL_FLOAT_FIELDS = ("cost_usd", "uncached_cost_usd", "elapsed_s")
_GOAL_UPDATABLE = frozenset(
    {
        "objective", "check_cmd", "model", "workspace", "status", "strategy", "network", "budgets",
        "config", "summary", "error", "finished_at", "control", "not_before", "after_goal_id", "background",
        "worker_attempts", "waiting_on", *_TOTAL_INT_FIELDS, *_TOTAL_FLOAT_FIELDS,
    }
)
_SESSION_UPDATABLE = frozenset({"status"})
_SESSION_FROZEN = frozenset({"model", "system", "tools"})
_HEX = re.compile(r"[0-9a-f]+")
_APPEND_RETRIES = 8


def _require_str(name: str, value: Any, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_status(status: Any) -> str:
    if status not in GOAL_STATUSES:
        raise ConfigError(f"invalid goal status {status!r}; expected one of: {', '.join(GOAL_STATUSES)}")
    return status


def _json_object(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a JSON object (dict), got {type(value).__name__}")
    return dict(value)


def _json_dict(name: str, value: Any) -> dict[str, Any]:
    return check_json(name, _json_object(name, value))


def _budgets(value: Any) -> dict[str, Any]:
    given = _json_dict("budgets", value or {})
    unknown = sorted(set(given) - set(BUDGET_KEYS))
    if unknown:
        raise ConfigError(f"unknown budget(s) {', '.join(unknown)}; known budgets: {', '.join(BUDGET_KEYS)}")
    out: dict[str, Any] = {k: None for k in BUDGET_KEYS}
    for k, v in given.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"budget {k} must be a non-negative number or null, got {v!r}")
        out[k] = v
    return out


def _tool_dicts(tools: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        out.append(_json_dict("tool spec", t))
    return out


def _goal(row: GoalRow) -> GoalRecord:
    return GoalRecord.model_validate(row, from_attributes=True)


# The hot paths' statements (compiled once per store, run without the ORM: see tenax.store.prepared).
_GOALS, _SESSIONS, _STEPS, _USAGE = GoalRow.__table__, SessionRow.__table__, StepRow.__table__, UsageRow.__table__
_TOTALS = (*_TOTAL_INT_FIELDS, *_TOTAL_FLOAT_FIELDS)
_STEP_FIELDS = tuple(StepRecord.model_fields)


@hot
def _select_goal() -> Any:
    return select(_GOALS).where(_GOALS.c.id == bindparam("gid"))


@hot
def _select_control() -> Any:
    return select(_GOALS.c.control).where(_GOALS.c.id == bindparam("gid"))


@hot
def _select_session_goal() -> Any:
    return select(_SESSIONS.c.goal_id).where(_SESSIONS.c.id == bindparam("sid"))


@hot
def _lock_session() -> Any:
    # FOR UPDATE serializes appenders per session on PostgreSQL (SQLite's BEGIN IMMEDIATE already did).
    return select(_SESSIONS.c.id).where(_SESSIONS.c.id == bindparam("sid")).with_for_update()


@hot
def _insert_step() -> Any:
    """The next seq of the session and the insert in one statement; the unique (session_id, seq)
    index is the backstop against a racing writer."""
    last = func.coalesce(func.max(_STEPS.c.seq), literal_column("0")) + literal_column("1")
    nxt = select(last).where(_STEPS.c.session_id == bindparam("sid")).scalar_subquery()
    return insert(_STEPS).values(id=bindparam("id"), session_id=bindparam("sid"), seq=nxt, kind=bindparam("kind"),
                                 payload=bindparam("payload"), created_at=bindparam("now")).returning(_STEPS.c.seq)


@hot
def _select_steps() -> Any:
    return (select(*(_STEPS.c[f] for f in _STEP_FIELDS))
            .where(_STEPS.c.session_id == bindparam("sid"), _STEPS.c.seq > bindparam("after")).order_by(_STEPS.c.seq))


@hot
def _insert_usage() -> Any:
    return insert(_USAGE).values({c.key: bindparam(c.key) for c in _USAGE.c})


@hot
def _increment_totals() -> Any:
    return (update(_GOALS).where(_GOALS.c.id == bindparam("gid"))
            .values({**{f: _GOALS.c[f] + bindparam(f"d_{f}") for f in _TOTALS}, "updated_at": bindparam("now")}))


def _session(row: SessionRow) -> SessionRecord:
    return SessionRecord.model_validate(row, from_attributes=True)


def _step(row: StepRow) -> StepRecord:
    return StepRecord.model_validate(row, from_attributes=True)


def _usage(row: UsageRow) -> UsageRecord:
    return UsageRecord.model_validate(row, from_attributes=True)


class SqlStore(AgentLedger, MemoryLedger, LeaseStore):
    """The reference ``tenax.core.protocols.Store``. Thread-safe; many processes may share one
    SQLite file (WAL; writers queue on the busy timeout)."""

    def __repr__(self) -> str:
        return f"SqlStore({url_for_display(self.url)!r})"

    # -- goals --------------------------------------------------------------------------

    def create_goal(
        self,
        *,
        objective: str,
        model: str,
        workspace: str,
        check_cmd: str | None = None,
        budgets: Mapping[str, Any] | BaseModel | None = None,
        network: str = "none",
        strategy: str = "continuous",
        config: Mapping[str, Any] | None = None,
        status: str = "pending",
    ) -> str:
        now = utcnow()
        values: dict[str, Any] = dict(
            objective=_require_str("objective", objective),
            check_cmd=None if check_cmd is None else _require_str("check_cmd", check_cmd, empty_ok=True) or None,
            model=_require_str("model", model),
            workspace=_require_str("workspace", workspace),
            status=_check_status(status),
            strategy=_require_str("strategy", strategy),
            network=_require_str("network", network),
            budgets=_budgets(budgets),
            config=_json_dict("config", config or {}),
            created_at=now,
            updated_at=now,
            finished_at=now if status in TERMINAL_GOAL_STATUSES else None,
            **{f: 0 for f in _TOTAL_INT_FIELDS},
            **{f: 0.0 for f in _TOTAL_FLOAT_FIELDS},
        )
        for _ in range(3):  # a 48-bit id collision is astronomically rare; retry anyway
            goal_id = new_id()
            try:
                with self._write() as s:
                    s.add(GoalRow(id=goal_id, **values))
                return goal_id
            except IntegrityError:
                continue
        raise TenaxError("could not allocate a unique goal id")

    def get_goal(self, goal_id: str) -> GoalRecord:
        """Look a goal up by its id or by a unique prefix of it."""
        key = (goal_id or "").strip().lower()
        if key:
            with self._tx(write=False) as cur:
                rows = self._prepared(_select_goal).dicts(cur, gid=key)
            if rows:  # validating a plain dict (pydantic-core) costs less than model_construct
                return GoalRecord.model_validate(rows[0])
        with self._read() as s:
            if not key or not _HEX.fullmatch(key):
                raise NotFound(f"no goal matches {goal_id!r}")
            cond = GoalRow.id.startswith(key, autoescape=True)
            n = s.scalar(select(func.count()).select_from(GoalRow).where(cond)) or 0
            if n == 0:
                raise NotFound(f"no goal matches {goal_id!r}")
            if n > 1:
                some = s.scalars(select(GoalRow.id).where(cond).order_by(GoalRow.id).limit(5)).all()
                raise NotFound(
                    f"ambiguous prefix {goal_id!r} matches {n} goals ({', '.join(some)}"
                    f"{', ...' if n > len(some) else ''}); give more characters"
                )
            return _goal(s.scalars(select(GoalRow).where(cond)).one())

    def goal_control(self, goal_id: str) -> str | None:
        """The goal's pending control request (``stop`` / ``pause``, or None): the one column a
        runner polls before each tool call and during waits (exact id; NotFound)."""
        with self._tx(write=False) as cur:
            rows = self._prepared(_select_control).run(cur, gid=goal_id)
        if not rows:
            raise NotFound(f"no goal {goal_id!r}")
        return rows[0][0]

    def list_goals(self, *, limit: int = 50, status: str | Iterable[str] | None = None,
                   background: bool | None = None) -> list[GoalRecord]:
        """Newest first. ``status`` may be one status or several; ``background`` keeps only the
        daemon's goals (True) or only the others (False). Read without the ORM (the daemon lists its
        queue on every tick: the ORM's loading cost ten times the query)."""
        q = select(_GOALS)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            for st in wanted:
                _check_status(st)
            q = q.where(_GOALS.c.status.in_(wanted))
        if background is not None:
            q = q.where(_GOALS.c.background.is_(bool(background)))
        q = q.order_by(_GOALS.c.created_at.desc(), _GOALS.c.id.desc())
        if limit is not None:
            q = q.limit(max(0, int(limit)))
        with self._read() as s:
            return [GoalRecord.model_validate(row) for row in s.execute(q).mappings()]

    def update_goal(self, goal_id: str, **fields: Any) -> None:
        """Set fields of a goal (exact id). Moving to a terminal status stamps ``finished_at``
        (unless given); moving back to pending/running clears it."""
        unknown = sorted(set(fields) - _GOAL_UPDATABLE)
        if unknown:
            raise ConfigError(
                f"cannot update goal field(s) {', '.join(unknown)}; updatable: {', '.join(sorted(_GOAL_UPDATABLE))}"
            )
        values: dict[str, Any] = dict(fields)
        if "status" in values:
            _check_status(values["status"])
            if "finished_at" not in values:
                values["finished_at"] = utcnow() if values["status"] in TERMINAL_GOAL_STATUSES else None
        for name in ("objective", "model", "workspace", "strategy", "network"):
            if name in values:
                _require_str(name, values[name])
        if "budgets" in values:
            values["budgets"] = _budgets(values["budgets"])
        if "config" in values:
            values["config"] = _json_dict("config", values["config"] or {})
        if "finished_at" in values and values["finished_at"] is not None and not isinstance(values["finished_at"], datetime):
            raise ConfigError(f"finished_at must be a datetime or None, got {values['finished_at']!r}")
        values["updated_at"] = utcnow()
        try:
            with self._write() as s:
                self._fence(s, goal_id)
                if "status" in values:
                    current = s.scalar(select(GoalRow.status).where(GoalRow.id == goal_id))
                    if current is None:
                        raise NotFound(f"no goal {goal_id!r}")
                    check_transition(current, values["status"])
                res = s.execute(update(GoalRow).where(GoalRow.id == goal_id).values(**values))
                if res.rowcount == 0:
                    raise NotFound(f"no goal {goal_id!r}")
        except IntegrityError as e:  # the database's own guard (a concurrent writer moved it first)
            raise IllegalTransition(f"goal {goal_id}: the database refused status {values['status']!r} ({e.orig})") from None

    def delete_goal(self, goal_id: str) -> None:
        """Delete a goal and (by cascade) its sessions, journal, usage, ledgers and memory."""
        with self._write() as s:
            if s.execute(delete(GoalRow).where(GoalRow.id == goal_id)).rowcount == 0:
                raise NotFound(f"no goal {goal_id!r}")

    def set_status(self, goal_id: str, status: str, *, error: str | None = None) -> None:
        """Move a goal to ``status`` (the state machine of ``tenax.core.status`` decides; an
        illegal move raises ``IllegalTransition``) and set its error text (None clears it)."""
        self.update_goal(goal_id, status=status, error=error)

    def add_to_goal_totals(
        self,
        goal_id: str,
        *,
        turns: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cost_usd: float = 0.0,
        uncached_cost_usd: float = 0.0,
        elapsed_s: float = 0.0,
    ) -> None:
        """Atomic increments (``UPDATE goals SET x = x + :v``): safe with concurrent writers."""
        deltas = dict(
            turns=turns,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            cost_usd=cost_usd,
            uncached_cost_usd=uncached_cost_usd,
            elapsed_s=elapsed_s,
        )
        with self._tx() as cur:
            self._increment(cur, goal_id, deltas)

    def _increment(self, cur: Any, goal_id: str, deltas: Mapping[str, float]) -> None:
        for k, v in deltas.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"goal total {k} increment must be a finite number, got {v!r}")
        if not self._prepared(_increment_totals).run(
                cur, gid=goal_id, now=utcnow(), **{f"d_{f}": deltas.get(f, 0) for f in _TOTALS}):
            raise NotFound(f"no goal {goal_id!r}")

    # -- sessions -----------------------------------------------------------------------

    def create_session(
        self,
        goal_id: str,
        *,
        role: str = "main",
        model: str,
        system: str,
        tools: Iterable[Mapping[str, Any] | BaseModel] = (),
        parent_session_id: str | None = None,
    ) -> str:
        """Start a session. ``system`` and ``tools`` are frozen from here on (cache-stable
        prefix); ``tools`` may be dicts or ``ToolSpec``s and are stored as given."""
        row = SessionRow(
            goal_id=goal_id,
            parent_session_id=parent_session_id,
            role=_require_str("role", role),
            model=_require_str("model", model),
            system=_require_str("system", system, empty_ok=True),
            tools=_tool_dicts(tools),
            status="active",
            created_at=utcnow(),
        )
        with self._write() as s:
            fetch(s, GoalRow, goal_id, "goal")
            if parent_session_id is not None:
                fetch(s, SessionRow, parent_session_id, "parent session")
            s.add(row)
        return row.id

    def get_session(self, session_id: str) -> SessionRecord:
        return self._get(SessionRecord, SessionRow, session_id, "session")

    def sessions_for_goal(self, goal_id: str) -> list[SessionRecord]:
        """Oldest first."""
        q = select(SessionRow).where(SessionRow.goal_id == goal_id).order_by(SessionRow.created_at, SessionRow.id)
        with self._read() as s:
            return [_session(r) for r in s.scalars(q)]

    def update_session(self, session_id: str, **fields: Any) -> None:
        """Only ``status`` may change. ``model``, ``system`` and ``tools`` are frozen for a
        session (changing them would break the prompt cache): passing the current value is a
        no-op, another value raises (ModelSwitchRefused for ``model``)."""
        unknown = sorted(set(fields) - _SESSION_UPDATABLE - _SESSION_FROZEN)
        if unknown:
            raise ConfigError(
                f"cannot update session field(s) {', '.join(unknown)}; updatable: {', '.join(sorted(_SESSION_UPDATABLE))}"
            )
        if "status" in fields:
            _require_str("status", fields["status"])
        with self._write() as s:
            row = fetch(s, SessionRow, session_id, "session")
            if "model" in fields and fields["model"] != row.model:
                raise ModelSwitchRefused(
                    f"session {session_id} runs {row.model!r}; switching it to {fields['model']!r} would "
                    "throw away its prompt cache. Start a new session instead."
                )
            if "system" in fields and fields["system"] != row.system:
                raise ConfigError(f"the system prompt of session {session_id} is frozen; start a new session")
            if "tools" in fields and _tool_dicts(fields["tools"]) != row.tools:
                raise ConfigError(f"the tools of session {session_id} are frozen; start a new session")
            if "status" in fields:
                row.status = fields["status"]

    # -- the journal --------------------------------------------------------------------

    def append_step(self, session_id: str, kind: str, payload: Mapping[str, Any], *,
                    usage: UsageEntry | None = None) -> int:
        """Append one journal entry and commit it; returns its seq (1, 2, 3, ... per session).
        With ``usage`` (a model call's accounting) the usage row and the goal's totals are written
        in the same transaction, so a crash can never keep the reply without its cost or the reverse.
        Concurrent appenders (threads or processes) never get the same seq."""
        _require_str("step kind", kind)
        if len(kind) > 64:
            raise ConfigError(f"step kind is too long ({len(kind)} > 64 chars)")
        data = encode_json("step payload", _json_object("step payload", payload))
        insert_step = self._prepared(_insert_step)
        last_error: IntegrityError | None = None
        for _ in range(_APPEND_RETRIES):
            goal_id = self._goal_of(session_id)
            try:
                with self._tx() as cur:
                    if not self._connections.sqlite:
                        self._prepared(_lock_session).run(cur, sid=session_id)
                    self._fence(cur, goal_id)
                    seq = insert_step.run(cur, id=new_id(), sid=session_id, kind=kind, payload=data, now=utcnow())[0][0]
                    if usage is not None:
                        self._add_usage(cur, session_id, goal_id, seq, usage)
                return seq
            except IntegrityError as e:  # a racing writer took the seq, or the session is gone
                self._session_goals.pop(session_id, None)
                last_error = e
        raise TenaxError(f"could not append a step to session {session_id!r}: {last_error}")

    def _goal_of(self, session_id: str) -> str:
        """The goal of a session (it never changes: cached), or NotFound."""
        goal_id = self._session_goals.get(session_id)
        if goal_id is None:
            with self._tx(write=False) as cur:
                rows = self._prepared(_select_session_goal).run(cur, sid=session_id)
            if not rows:
                raise NotFound(f"no session {session_id!r}")
            goal_id = self._session_goals[session_id] = rows[0][0]
        return goal_id

    def steps(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[StepRecord]:
        """Steps with seq > after_seq, in seq order, optionally only the given kinds."""
        if kinds is None and limit is None:  # the engine's read, without the ORM
            with self._tx(write=False) as cur:
                rows = self._prepared(_select_steps).dicts(cur, sid=session_id, after=after_seq)
            return [StepRecord.model_validate(r) for r in rows]
        q = select(StepRow).where(StepRow.session_id == session_id, StepRow.seq > after_seq)
        if kinds is not None:
            q = q.where(StepRow.kind.in_([kinds] if isinstance(kinds, str) else list(kinds)))
        q = q.order_by(StepRow.seq)
        if limit is not None:
            q = q.limit(max(0, int(limit)))
        with self._read() as s:
            return [_step(r) for r in s.scalars(q)]

    def last_seq(self, session_id: str) -> int:
        """The highest seq in a session (0 when empty)."""
        with self._read() as s:
            return s.scalar(select(func.max(StepRow.seq)).where(StepRow.session_id == session_id)) or 0

    def recent_steps(self, goal_id: str, limit: int = 20) -> list[StepRecord]:
        """The goal's latest ``limit`` steps across all its sessions, newest last."""
        limit = max(0, int(limit))
        if limit == 0:
            return []
        rows: list[StepRow] = []
        with self._read() as s:
            session_ids = s.scalars(select(SessionRow.id).where(SessionRow.goal_id == goal_id)).all()
            for sid in session_ids:  # each one walks the (session_id, seq) index backwards
                q = select(StepRow).where(StepRow.session_id == sid).order_by(StepRow.seq.desc()).limit(limit)
                rows.extend(s.scalars(q))
            recs = [_step(r) for r in rows]
        recs.sort(key=lambda r: (r.created_at, r.seq, r.session_id))
        return recs[-limit:]

    # -- usage --------------------------------------------------------------------------

    def record_usage(
        self,
        session_id: str,
        *,
        step_seq: int | None,
        provider: str,
        model: str,
        usage: Usage | Mapping[str, Any],
        cost_usd: float,
        uncached_cost_usd: float = 0.0,
        attempts: Iterable[Attempt | Mapping[str, Any]] = (),
        duration_s: float = 0.0,
        add_to_totals: bool = False,
        turns: int = 0,
        estimated: bool = False,
    ) -> None:
        """Record one model call that has no journal step of its own. With ``add_to_totals=True``
        the goal's token and cost totals (and ``turns``) are incremented in the same transaction."""
        entry = UsageEntry(
            provider=provider, model=model, usage=usage if isinstance(usage, Usage) else Usage.model_validate(usage),
            cost_usd=cost_usd, uncached_cost_usd=uncached_cost_usd, duration_s=duration_s, turns=turns, estimated=estimated,
            attempts=[a.model_dump(mode="json") if isinstance(a, BaseModel) else Attempt.model_validate(a).model_dump(mode="json")
                      for a in attempts],
        )
        goal_id = self._goal_of(session_id)
        with self._tx() as cur:
            self._fence(cur, goal_id)
            self._add_usage(cur, session_id, goal_id, step_seq, entry, totals=add_to_totals)

    def _add_usage(self, cur: Any, session_id: str, goal_id: str, step_seq: int | None, e: UsageEntry, *,
                   totals: bool = True) -> None:
        for name in ("cost_usd", "uncached_cost_usd", "duration_s"):
            v = getattr(e, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
        u = e.usage
        self._prepared(_insert_usage).run(
            cur, id=new_id(), session_id=session_id, goal_id=goal_id, step_seq=step_seq,
            provider=_require_str("provider", e.provider), model=_require_str("model", e.model),
            input_tokens=u.input_tokens, output_tokens=u.output_tokens, cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens, cost_usd=float(e.cost_usd), uncached_cost_usd=float(e.uncached_cost_usd),
            attempts=max(1, len(e.attempts)), attempts_json=encode_json("usage attempts", list(e.attempts)),
            duration_s=float(e.duration_s), estimated=bool(e.estimated), created_at=utcnow(),
        )
        if totals:
            self._increment(cur, goal_id, dict(
                turns=e.turns, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                cost_usd=float(e.cost_usd), uncached_cost_usd=float(e.uncached_cost_usd), elapsed_s=float(e.elapsed_s),
            ))

    def usage_for_goal(self, goal_id: str) -> list[UsageRecord]:
        """Oldest first."""
        q = select(UsageRow).where(UsageRow.goal_id == goal_id).order_by(UsageRow.created_at, UsageRow.id)
        with self._read() as s:
            return [_usage(r) for r in s.scalars(q)]

    def goal_usage_totals(self, goal_id: str) -> dict[str, Any]:
        """Sums over the goal's recorded model calls: ``calls``, ``attempts``, the four token
        counts, ``cost_usd``, ``uncached_cost_usd``, ``duration_s``, ``estimated_calls`` (calls whose
        tokens were estimated locally), and ``by_model``
        (model name -> the same sums)."""
        cols = (
            func.count(UsageRow.id),
            func.coalesce(func.sum(UsageRow.attempts), 0),
            func.coalesce(func.sum(UsageRow.input_tokens), 0),
            func.coalesce(func.sum(UsageRow.output_tokens), 0),
            func.coalesce(func.sum(UsageRow.cache_read_tokens), 0),
            func.coalesce(func.sum(UsageRow.cache_write_tokens), 0),
            func.coalesce(func.sum(UsageRow.cost_usd), 0.0),
            func.coalesce(func.sum(UsageRow.uncached_cost_usd), 0.0),
            func.coalesce(func.sum(UsageRow.duration_s), 0.0),
            func.coalesce(func.sum(case((UsageRow.estimated, 1), else_=0)), 0),
        )
        names = ("calls", "attempts", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_write_tokens", "cost_usd", "uncached_cost_usd", "duration_s", "estimated_calls")

        def as_dict(row: Any) -> dict[str, Any]:
            d: dict[str, Any] = {}
            for n, v in zip(names, row):
                d[n] = float(v) if n in ("cost_usd", "uncached_cost_usd", "duration_s") else int(v)
            return d

        with self._read() as s:
            total = as_dict(s.execute(select(*cols).where(UsageRow.goal_id == goal_id)).one())
            by_model = {
                r[0]: as_dict(r[1:])
                for r in s.execute(
                    select(UsageRow.model, *cols).where(UsageRow.goal_id == goal_id).group_by(UsageRow.model)
                )
            }
        total["by_model"] = by_model
        return total


def open_store(url: str | None = None) -> SqlStore:
    """Open (creating and migrating as needed) the store at ``url``, else ``$TENAX_DB``, else
    ``~/.local/share/tenax/tenax.db``. Raises ConfigError for a bad URL or unreachable database."""
    resolved = resolve_url(url)
    engine = make_engine(resolved)
    try:
        ensure_schema(engine)
    except DBAPIError as e:
        engine.dispose()
        fault = store_fault(e, resolved)
        if isinstance(fault, StoreBusy):
            raise fault from None
        why = f"{fault}" if fault is not None else f"cannot open the database at {url_for_display(resolved)}: {e.orig}"
        raise ConfigError(why) from None
    except BaseException:
        engine.dispose()
        raise
    return SqlStore(engine)
