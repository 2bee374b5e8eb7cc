"""The store's hot paths without the ORM: SQLAlchemy Core statements compiled once for the engine's
dialect and run on the DB-API connection, with SQLAlchemy's own bind and result processing (JSON,
UTC datetimes, booleans), inside short transactions that keep every guarantee of ``StoreBase``.

Each journal append, goal read and steering poll of a turn used to cost milliseconds in the
Session, the unit of work and statement compilation; here it is the database's own work plus a few
microseconds. On an SQLite file each thread keeps one connection (taken from the engine, so it has
the engine's PRAGMAs, then detached from the pool): a pool checkout per call costs as much as the
insert. Other databases take a pooled connection per transaction.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Callable

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from tenax.store.engine import is_sqlite_memory


HOT_PATHS: list[Callable[[], ClauseElement]] = []  # the builders of the statements a goal's run uses


def hot(build: Callable[[], ClauseElement]) -> Callable[[], ClauseElement]:
    """Mark a statement builder as a hot path's (``StoreBase.prepare`` compiles them all ahead)."""
    HOT_PATHS.append(build)
    return build


class Prepared:
    """One statement compiled for ``dialect``: ``run(cursor, **params)`` binds, executes and hands
    back the processed rows (for a SELECT or RETURNING) or the cursor's rowcount."""

    def __init__(self, statement: ClauseElement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        binds = {name: bp for bp, name in compiled.bind_names.items()}
        procs = {name: bp.type.dialect_impl(dialect).bind_processor(dialect) for name, bp in binds.items()}
        self.positional = compiled.positional
        self.binders = [(n, procs[n]) for n in (compiled.positiontup if self.positional else procs)]
        columns = statement.exported_columns  # a SELECT's columns, or what a DML statement RETURNs
        self.columns = [c.key for c in columns]
        self._dialect = dialect
        self._types = [c.type.dialect_impl(dialect) for c in columns]
        self._results: list[Any] | None = None  # the result processors, once the driver's column types are known

    def _bind(self, params: Mapping[str, Any]) -> Any:
        values = [params[n] if p is None else p(params[n]) for n, p in self.binders]
        return values if self.positional else dict(zip((n for n, _ in self.binders), values))

    def run(self, cursor: Any, **params: Any) -> Any:
        cursor.execute(self.sql, self._bind(params))
        if not self.columns:
            return cursor.rowcount
        rows = cursor.fetchall()
        if self._results is None:  # some depend on the driver's type code (e.g. PostgreSQL numerics)
            self._results = [t.result_processor(self._dialect, d[1]) for t, d in zip(self._types, cursor.description)]
        procs = self._results
        if not any(procs):
            return rows
        return [tuple(v if p is None else p(v) for p, v in zip(procs, row)) for row in rows]

    def dicts(self, cursor: Any, **params: Any) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.run(cursor, **params)]


class Connections:
    """DB-API transactions on ``engine``: ``transaction(write=True)`` takes SQLite's write lock up
    front (``BEGIN IMMEDIATE``), commits when the block ends and rolls back on any error. DB-API
    errors come out as SQLAlchemy's (``IntegrityError``, ``OperationalError``...), as from Core."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.held = self.sqlite and not is_sqlite_memory(engine.url)
        self._local = threading.local()
        self._opened: list[tuple[int, Any, Any]] = []  # (pid, thread, connection) as weak references
        self._lock = threading.Lock()

    def _connection(self) -> tuple[Any, bool]:
        """(a DB-API connection, whether it goes back to the pool after use)."""
        if not self.held:
            return self.engine.raw_connection(), True
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # first use in this thread, or a forked child
            fairy = self.engine.raw_connection()
            fairy.detach()
            local.fairy, local.pid = fairy, os.getpid()
            with self._lock:
                self._opened = [o for o in self._opened if o[2]() is not None]  # a thread that ended closed its own
                self._opened.append((local.pid, weakref.ref(threading.current_thread()), weakref.ref(fairy)))
        return local.fairy, False

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Any]:
        conn, pooled = self._connection()
        raw = conn.dbapi_connection
        try:
            cursor = raw.cursor()
            try:
                if write and self.sqlite:
                    cursor.execute("BEGIN IMMEDIATE")  # a read is one statement: its own snapshot
                yield cursor
                raw.commit()
            except BaseException:
                try:
                    raw.rollback()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
                raise
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as e:
            raise DBAPIError.instance(None, None, e, self.engine.dialect.loaded_dbapi.Error) from e
        finally:
            if pooled:
                conn.close()

    def held_count(self) -> int:
        """How many threads of this process hold a connection now (a thread that ended holds none)."""
        return sum(1 for pid, _, ref in self._opened if pid == os.getpid() and ref() is not None)

    def close(self) -> None:
        """Close this thread's connection and those of threads that ended; another live thread's is
        dropped here and closed when that thread is done with it (never under a running statement).
        A forked child never closes its parent's."""
        with self._lock:
            opened, self._opened = self._opened, []
        me = threading.current_thread()
        for pid, thread, ref in opened:
            fairy, owner = ref(), thread()
            if fairy is not None and pid == os.getpid() and (owner is me or owner is None or not owner.is_alive()):
                fairy.close()
        self._local = threading.local()
