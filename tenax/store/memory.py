"""The memory ledger's durable half: plan items, notes, the steering queue and the recall index.

Tables (migration ``0003_memory``):

- ``plan_items``    the model's plan (``update_plan``), one row per item, with status;
- ``memory_notes``  pitfalls / decisions / facts (``note``), verbatim;
- ``steering``      messages a user queued with ``tenax steer``; the running loop journals each one
                    as a user step (``why="steering"``) and marks it consumed;
- ``memory_docs``   what ``recall`` searches: archived transcript steps and notes. On SQLite an
                    FTS5 table ``memory_fts`` (external content = ``memory_docs``) indexes it;
                    other backends fall back to ``LIKE``.

``MemoryLedger`` is mixed into ``SqlStore``; every method is one short transaction that commits
before it returns (a ``kill -9`` right after loses nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import ForeignKey, Index, Integer, String, Text, bindparam, delete, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from tenax.core.errors import ConfigError
from tenax.store.base import StoreBase, fetch
from tenax.store.models import Base, GoalRow, UTCDateTime, utcnow
from tenax.store.prepared import hot

PLAN_STATUSES = ("pending", "in_progress", "done", "blocked", "dropped")
NOTE_KINDS = ("pitfall", "decision", "fact")


class _GoalOwned:
    """A row of a goal's memory: numbered in insertion order, looked up by goal (index
    ``ix_<table>_goal_id``, named by the metadata's convention), deleted with the goal."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True, sort_order=-1)
    goal_id: Mapped[str] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"), index=True, sort_order=-1)


class PlanItemRow(_GoalOwned, Base):
    __tablename__ = "plan_items"

    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NoteRow(_GoalOwned, Base):
    __tablename__ = "memory_notes"

    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="model")
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    step_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SteeringRow(_GoalOwned, Base):
    __tablename__ = "steering"

    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MemoryDocRow(_GoalOwned, Base):
    __tablename__ = "memory_docs"

    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    step_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_memory_docs_goal_step", "goal_id", "session_id", "step_seq", "kind", unique=True),)


@hot
def _select_pending_steering() -> Any:
    t = SteeringRow.__table__
    return (select(t.c.id, t.c.text, t.c.created_at)
            .where(t.c.goal_id == bindparam("gid"), t.c.consumed_at.is_(None)).order_by(t.c.id))


def include_name(name: str | None, type_: str, parent_names: Any = None) -> bool:
    """Alembic ``include_name`` hook: the FTS5 table and its shadow tables (``memory_fts_data``,
    ``_idx``, ``_docsize``, ``_config``) are not models; schema comparison must skip them."""
    return not (type_ == "table" and name is not None and name.startswith("memory_fts"))


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanItem:
    text: str
    status: str
    position: int


@dataclass(frozen=True)
class Note:
    id: int
    kind: str
    text: str
    source: str
    step_seq: int | None
    created_at: datetime


@dataclass(frozen=True)
class Steering:
    id: int
    text: str
    created_at: datetime
    consumed: bool


@dataclass(frozen=True)
class Hit:
    kind: str
    step_seq: int | None
    session_id: str | None
    snippet: str


def _clean_status(status: Any) -> str:
    s = str(status or "pending").strip().lower().replace(" ", "_").replace("-", "_")
    if s not in PLAN_STATUSES:
        raise ConfigError(f"plan item status {status!r} is not one of: {', '.join(PLAN_STATUSES)}")
    return s


def parse_plan_items(items: Any) -> list[tuple[str, str]]:
    """Accepts ``[{"text", "status"}]`` or plain strings; returns (text, status) pairs."""
    if not isinstance(items, list) or not items:
        raise ConfigError("items must be a non-empty list of {text, status} objects")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise ConfigError(f"plan item #{i + 1} must be an object with 'text' and 'status'")
        txt = item.get("text")
        if not isinstance(txt, str) or not txt.strip():
            raise ConfigError(f"plan item #{i + 1} needs a non-empty 'text'")
        out.append((txt.strip(), _clean_status(item.get("status"))))
    return out


class MemoryLedger(StoreBase):
    """Memory-ledger methods of ``SqlStore``: the plan, notes, the steering queue, the recall index."""

    # -- plan -----------------------------------------------------------------------------------
    def set_plan(self, goal_id: str, items: Iterable[tuple[str, str]]) -> list[PlanItem]:
        """Replace the plan. Items of the previous plan that the new one omits are kept, marked
        ``dropped`` (unless done), so nothing planned is ever silently forgotten."""
        items = list(items)
        new_texts = {t for t, _ in items}
        now = utcnow()
        with self._write() as s:
            old = s.scalars(select(PlanItemRow).where(PlanItemRow.goal_id == goal_id).order_by(PlanItemRow.position)).all()
            kept = [(r.text, r.status if r.status == "done" else "dropped") for r in old if r.text not in new_texts]
            s.execute(delete(PlanItemRow).where(PlanItemRow.goal_id == goal_id))
            for pos, (txt, status) in enumerate(items + kept):
                s.add(PlanItemRow(goal_id=goal_id, position=pos, text=txt, status=status, updated_at=now))
        return self.plan_items(goal_id)

    def plan_items(self, goal_id: str) -> list[PlanItem]:
        with self._read() as s:
            rows = s.scalars(select(PlanItemRow).where(PlanItemRow.goal_id == goal_id).order_by(PlanItemRow.position))
            return [PlanItem(text=r.text, status=r.status, position=r.position) for r in rows]

    # -- notes ----------------------------------------------------------------------------------
    def add_note(self, goal_id: str, kind: str, text_: str, *, source: str = "model",
                 session_id: str | None = None, step_seq: int | None = None) -> Note:
        if kind not in NOTE_KINDS:
            raise ConfigError(f"note kind {kind!r} is not one of: {', '.join(NOTE_KINDS)}")
        if not isinstance(text_, str) or not text_.strip():
            raise ConfigError("note text must be a non-empty string")
        now = utcnow()
        with self._write() as s:
            row = NoteRow(goal_id=goal_id, kind=kind, text=text_.strip(), source=source, session_id=session_id,
                          step_seq=step_seq, created_at=now)
            s.add(row)
            s.flush()
            note = Note(id=row.id, kind=kind, text=row.text, source=source, step_seq=step_seq, created_at=now)
            _index(s, goal_id, [(None, -note.id, f"note:{kind}", note.text)])
        return note

    def notes(self, goal_id: str, kind: str | None = None) -> list[Note]:
        q = select(NoteRow).where(NoteRow.goal_id == goal_id)
        if kind is not None:
            q = q.where(NoteRow.kind == kind)
        with self._read() as s:
            return [Note(id=r.id, kind=r.kind, text=r.text, source=r.source, step_seq=r.step_seq,
                         created_at=r.created_at) for r in s.scalars(q.order_by(NoteRow.id))]

    # -- steering -------------------------------------------------------------------------------
    def push_steering(self, goal_id: str, text_: str) -> int:
        """Queue a steering message for a (running or later resumed) goal; returns its id."""
        if not isinstance(text_, str) or not text_.strip():
            raise ConfigError("the steering message is empty")
        with self._write() as s:
            fetch(s, GoalRow, goal_id, "goal")
            row = SteeringRow(goal_id=goal_id, text=text_, created_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def steering(self, goal_id: str, *, pending_only: bool = False) -> list[Steering]:
        q = select(SteeringRow).where(SteeringRow.goal_id == goal_id)
        if pending_only:
            q = q.where(SteeringRow.consumed_at.is_(None))
        with self._read() as s:
            return [Steering(id=r.id, text=r.text, created_at=r.created_at, consumed=r.consumed_at is not None)
                    for r in s.scalars(q.order_by(SteeringRow.id))]

    def pending_steering(self, goal_id: str) -> list[Steering]:
        """Steering messages queued for the goal and not yet delivered, oldest first (read every turn)."""
        with self._tx(write=False) as cur:
            rows = self._prepared(_select_pending_steering).run(cur, gid=goal_id)
        return [Steering(id=i, text=t, created_at=at, consumed=False) for i, t, at in rows]

    def mark_steering_consumed(self, steering_id: int) -> None:
        with self._write() as s:
            s.execute(update(SteeringRow).where(SteeringRow.id == steering_id).values(consumed_at=utcnow()))

    # -- recall index ---------------------------------------------------------------------------
    def index_docs(self, goal_id: str, docs: Iterable[tuple[str | None, int | None, str, str]]) -> int:
        """Add archived transcript pieces to the recall index (idempotent per (session, seq, kind))."""
        with self._write() as s:
            return _index(s, goal_id, list(docs))

    def recall(self, goal_id: str, query: str, *, limit: int = 8) -> list[Hit]:
        """Full-text search over the archived transcript and the notes: all words first, then any."""
        words = _WORD.findall(query or "")[:12]
        if not words:
            return []
        limit = max(1, min(int(limit), 50))
        with self._read() as s:
            if _is_sqlite(s):
                for joiner in (" AND ", " OR "):
                    match = joiner.join('"' + w.replace('"', "") + '"' for w in words)
                    rows = s.execute(text(
                        "SELECT d.kind, d.step_seq, d.session_id, snippet(memory_fts, 0, '[', ']', ' ... ', 24) "
                        "FROM memory_fts JOIN memory_docs d ON d.id = memory_fts.rowid "
                        "WHERE memory_fts MATCH :m AND d.goal_id = :g ORDER BY rank LIMIT :n"),
                        {"m": match, "g": goal_id, "n": limit}).all()
                    if rows or len(words) == 1:
                        break
            else:
                q = select(MemoryDocRow.kind, MemoryDocRow.step_seq, MemoryDocRow.session_id, MemoryDocRow.body).where(
                    MemoryDocRow.goal_id == goal_id)
                for w in words:
                    q = q.where(MemoryDocRow.body.ilike(f"%{w}%"))
                rows = [(k, seq, sid, _like_snippet(body, words[0])) for k, seq, sid, body in
                        s.execute(q.order_by(MemoryDocRow.id.desc()).limit(limit)).all()]
        return [Hit(kind=k, step_seq=seq if (seq or 0) > 0 else None, session_id=sid, snippet=snip)
                for k, seq, sid, snip in rows]


def _is_sqlite(conn_or_session: Any) -> bool:
    return conn_or_session.get_bind().dialect.name == "sqlite"


def _index(s: Any, goal_id: str, docs: list[tuple[str | None, int | None, str, str]]) -> int:
    """Insert (session_id, step_seq, kind, body) docs once each; returns how many were new."""
    added = 0
    fts = _is_sqlite(s)
    for session_id, seq, kind, body in docs:
        if not body.strip():
            continue
        exists = s.scalar(select(MemoryDocRow.id).where(
            MemoryDocRow.goal_id == goal_id, MemoryDocRow.session_id.is_(None) if session_id is None
            else MemoryDocRow.session_id == session_id, MemoryDocRow.step_seq == seq, MemoryDocRow.kind == kind))
        if exists is not None:
            continue
        row = MemoryDocRow(goal_id=goal_id, session_id=session_id, step_seq=seq, kind=kind, body=body)
        s.add(row)
        s.flush()
        if fts:
            s.execute(text("INSERT INTO memory_fts(rowid, body) VALUES (:id, :body)"), {"id": row.id, "body": body})
        added += 1
    return added


_WORD = re.compile(r"\w+", re.UNICODE)


def _like_snippet(body: str, word: str, width: int = 160) -> str:
    i = body.lower().find(word.lower())
    start = max(0, i - width // 2)
    return ("... " if start else "") + body[start : start + width] + (" ..." if start + width < len(body) else "")
