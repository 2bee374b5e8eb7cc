"""Bring a database's schema to the current revision, safely under concurrent openers.

The Alembic migrations ship inside the package (``tenax/store/migrations``) and run whenever a
store is opened: an older database is upgraded to head; a database stamped with a revision this
code does not know (written by a newer tenax) is refused with a clear error, never touched.
Opening a database that is already at head reads its stamp with plain SQL and never imports
Alembic (about 11 MB of a goal process's memory); anything else goes through Alembic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tenax.core.errors import ConfigError
from tenax.store.base import store_fault
from tenax.store.engine import url_for_display, write_engine

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_LOCK_KEY = 0x7E4A_0001  # arbitrary constant for pg_advisory_xact_lock
_REVISION = re.compile(r"""^(down_revision|revision)(?::[^=\n]*)? = (?:(["'])([^"'\n]*)\2|None)$""", re.M)


def alembic_config(connection: Connection | None = None):  # -> alembic Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory():  # -> alembic ScriptDirectory
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def script_head() -> str:
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - a broken install
        raise ConfigError(f"tenax's schema migrations are missing from {MIGRATIONS_DIR}; reinstall tenax")
    return head


def shipped_head() -> str | None:
    """The head revision read from the migration files without Alembic: the one revision no other
    names as its down_revision (None when the files do not show exactly one: ask Alembic)."""
    revisions, downs = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("[!_]*.py"):
        found = {key: value for key, _quote, value in _REVISION.findall(path.read_text(encoding="utf-8"))}
        if len(found) != 2:  # a form this reader does not know (a merge's tuple): ask Alembic
            return None
        revisions.add(found["revision"])
        downs.add(found["down_revision"] or None)
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def stamped_revision(conn: Connection) -> str | None:
    """The database's revision read with plain SQL (None: no stamp, or not exactly one)."""
    try:
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:
        return None
    return rows[0][0] if len(rows) == 1 else None


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds the database-wide write/migration lock:
    ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL. A second
    process opening the same database waits here, then finds the schema already current.

    On SQLite, foreign keys are switched off around the transaction (SQLite's documented
    procedure for rebuilding a table, which batch migrations do): dropping the old ``goals``
    table would otherwise cascade-delete every session and step. The keys are checked before
    the commit, so a migration can never leave a dangling reference behind."""
    with write_engine(engine).connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # on the raw connection, outside any transaction (inside one it is a no-op)
            raw = conn.connection.driver_connection
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                yield conn
                if sqlite and (bad := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise ConfigError(f"a schema migration left dangling references {bad[:5]}; nothing was changed")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


def _refuse_unknown(engine: Engine, current: str | None) -> None:
    if current is None:
        return
    try:
        known = script_directory().get_revision(current) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        known = False
    if not known:
        raise ConfigError(
            f"the database at {url_for_display(engine.url)} has schema revision {current!r}, which this tenax "
            f"(schema {script_head()!r}) does not know: it was written by a newer tenax. Upgrade tenax "
            "(pip install -U tenax), or point TENAX_DB at another database."
        )


def ensure_schema(engine: Engine) -> str:
    """Upgrade ``engine``'s database to the newest shipped revision; returns it."""
    head = shipped_head()
    if head is not None:  # fast path without Alembic: already current
        with engine.connect() as conn:
            if stamped_revision(conn) == head:
                return head
    head = script_head()
    with engine.connect() as conn:  # already current by Alembic's reading: no write lock needed
        current = current_revision(conn)
    if current == head:
        return head
    _refuse_unknown(engine, current)

    from alembic import command

    with migration_lock(engine) as conn:
        current = current_revision(conn)  # another opener may have moved it meanwhile
        _refuse_unknown(engine, current)
        if current != head:
            try:
                command.upgrade(alembic_config(conn), "head")
            except SQLAlchemyError as e:
                if (fault := store_fault(e, engine.url)) is not None:
                    raise fault from None
                raise ConfigError(
                    f"cannot upgrade the database at {url_for_display(engine.url)} from schema {current!r} to "
                    f"{head!r}: {getattr(e, 'orig', None) or e}. The database was left unchanged; fix the data the "
                    "message names, or point TENAX_DB at another database."
                ) from None
        return current_revision(conn) or ""
