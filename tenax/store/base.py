"""The store's plumbing: short read/write transactions, database faults turned into clear errors,
and a periodic WAL checkpoint. ``SqlStore`` and its ledger mixins build on ``StoreBase``."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from tenax.core.errors import ConfigError, TenaxError
from tenax.store.engine import BUSY_TIMEOUT_MS, JsonText, dump_json, url_for_display, write_engine
from tenax.store.errors import NotFound, StoreBusy, StoreError
from tenax.store.prepared import HOT_PATHS, Connections, Prepared

R = TypeVar("R")

CHECKPOINT_EVERY = 100  # write transactions between two WAL checkpoints (SQLite files)
TRUNCATE_WAL_ABOVE = 4 * 2**20  # bytes: a WAL grown past this (a long reader pinned it) is truncated

# SQLite primary result codes (sqlite3 exceptions carry their name) -> what to tell the user.
_SQLITE_FAULTS = {
    "SQLITE_FULL": "the disk (or quota) holding the database is full: free some space and retry",
    "SQLITE_CORRUPT": "the database file is corrupted: move it aside and restore a backup (tenax creates a new one)",
    "SQLITE_NOTADB": "the file is not an SQLite database: point TENAX_DB at tenax's database, or move the file aside",
    "SQLITE_IOERR": "an I/O error hit the database file: check the disk and the file system",
    "SQLITE_READONLY": "the database is read-only: check the permissions of the file and its directory",
    "SQLITE_CANTOPEN": "the database file cannot be opened: check that its directory exists and is writable",
}


def store_fault(e: BaseException, url: Any) -> TenaxError | None:
    """The clear error for a database fault, or None when ``e`` is not one (e.g. a constraint)."""
    if not isinstance(e, DBAPIError) or isinstance(e, IntegrityError):
        return None
    name = (getattr(e.orig, "sqlite_errorname", None) or "").split("_")
    code = "_".join(name[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    where = url_for_display(url)
    if code in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return StoreBusy(
            f"the database at {where} stayed locked by another process for over {BUSY_TIMEOUT_MS // 1000} s; "
            "nothing was written. Retry when the other tenax process is done, or stop it."
        )
    if code in _SQLITE_FAULTS:
        return StoreError(f"database {where}: {_SQLITE_FAULTS[code]} ({e.orig}); nothing was written.")
    return None


def fetch(s: Session, row_class: type[R], key: Any, what: str) -> R:
    """The ``row_class`` row with primary key ``key``, or ``NotFound`` ("no {what} 'key'")."""
    row = s.get(row_class, key)
    if row is None:
        raise NotFound(f"no {what} {key!r}")
    return row


def encode_json(name: str, value: Any) -> JsonText:
    """``value`` as strict JSON text (no NaN or infinity), ready for a JSON column; else ConfigError."""
    try:
        return JsonText(dump_json(value))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} is not JSON-serializable: {e}") from None


def check_json(name: str, value: Any) -> Any:
    """``value``, once it is known to serialize as strict JSON (no NaN or infinity); else ConfigError."""
    encode_json(name, value)
    return value


class StoreBase:
    """An engine and the short transactions every store method runs in."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.url = engine.url
        self._write_engine = write_engine(engine)
        self._commits = itertools.count(1)
        self.writes = 0  # write transactions this store committed (benches report them per turn)
        self._checkpoints = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
        self._connections = Connections(engine)
        self._statements: dict[Callable[[], ClauseElement], Prepared] = {}
        self._session_goals: dict[str, str] = {}  # session id -> its goal's id (never changes)

    @contextmanager
    def _faults(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as e:
            fault = store_fault(e, self.url)
            if fault is None:
                raise
            raise fault from None

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        with self._faults(), Session(engine, expire_on_commit=False) as s, s.begin():
            yield s

    def _prepared(self, build: Callable[[], ClauseElement]) -> Prepared:
        """The statement ``build()`` makes, compiled once for this store's dialect (see ``prepared``)."""
        stmt = self._statements.get(build)
        if stmt is None:
            stmt = self._statements[build] = Prepared(build(), self.engine.dialect)
        return stmt

    def prepare(self) -> None:
        """Compile the hot paths' statements now (a daemon's spare worker does, before it has a goal,
        so a goal's start does not wait on it)."""
        for build in HOT_PATHS:
            self._prepared(build)

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Any]:
        """A DB-API cursor in one short transaction (the hot paths; see ``prepared``): a write takes
        the lock up front and commits when the block ends, exactly like ``_write``."""
        with self._faults(), self._connections.transaction(write=write) as cursor:
            yield cursor
        if write:
            self._committed()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._session(self.engine) as s:
            yield s

    def _get(self, record: type[R], row_class: type, key: Any, what: str) -> R:
        """The ``record`` snapshot of one row, or ``NotFound``."""
        with self._read() as s:
            return record.model_validate(fetch(s, row_class, key, what), from_attributes=True)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite); it commits when the block ends."""
        with self._session(self._write_engine) as s:
            yield s
        self._committed()

    def _committed(self) -> None:
        self.writes = n = next(self._commits)
        if self._checkpoints and n % CHECKPOINT_EVERY == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the SQLite WAL into the database, so it cannot grow without bound while readers keep
        coming. A passive checkpoint lets the WAL be reused in place (re-growing a truncated file
        costs every commit after it); a WAL larger than ``TRUNCATE_WAL_ABOVE`` is truncated.
        Best effort: a checkpoint that cannot finish now is retried later."""
        try:
            wal = os.path.getsize(f"{self.engine.url.database}-wal")
        except OSError:
            wal = None  # not a plain file path (e.g. a file: URI): truncate, to be safe
        mode = "PASSIVE" if wal is not None and wal <= TRUNCATE_WAL_ABOVE else "TRUNCATE"
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                raw.execute("PRAGMA busy_timeout=50")  # never stall the writer behind a long reader
                try:
                    raw.execute(f"PRAGMA wal_checkpoint({mode})")
                finally:
                    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except Exception:  # noqa: BLE001 - best effort, by design
            pass

    def close(self) -> None:
        self._connections.close()
        self.engine.dispose()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
