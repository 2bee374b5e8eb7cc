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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from tenax.store.engine import is_sqlite_memory


class Prepared:
    """One statement compiled for ``dialect``: ``run(cursor, **params)`` binds, executes and hands
    back the processed rows (for a SELECT or RETURNING) or the cursor's rowcount."""

    def __init__(self, statement: ClauseElement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        binds = {name: bp for bp, name in compiled.bind_names.items()}
        self.procs = {name: bp.type.dialect_impl(dialect).bind_processor(dialect) for name, bp in binds.items()}
        self.order = compiled.positiontup if compiled.positional else None
        columns = statement.exported_columns  # a SELECT's columns, or what a DML statement RETURNs
        self.columns = [c.key for c in columns]
        self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]

    def _bind(self, params: Mapping[str, Any]) -> Any:
        def value(name: str) -> Any:
            proc = self.procs.get(name)
            return proc(params[name]) if proc is not None else params[name]

        if self.order is not None:
            return tuple(value(n) for n in self.order)
        return {n: value(n) for n in self.procs}

    def run(self, cursor: Any, **params: Any) -> Any:
        cursor.execute(self.sql, self._bind(params))
        if not self.columns:
            return cursor.rowcount
        procs = self.results
        return [tuple(v if p is None else p(v) for p, v in zip(procs, row)) for row in cursor.fetchall()]

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
        self._opened: list[Any] = []  # connections this process detached, closed by close()
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
                self._opened.append((local.pid, fairy))
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

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for pid, fairy in opened:
            if pid == os.getpid():  # never close a parent's connection in a forked child
                fairy.close()
        self._local = threading.local()
