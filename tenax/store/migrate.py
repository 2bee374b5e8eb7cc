"""Bring a database's schema to the current revision, safely under concurrent openers.

The migrations live in the repository's root ``alembic/`` directory. When they cannot be
found (e.g. a non-editable install that did not ship them) the schema is created from the
models' metadata and stamped with ``HEAD_REVISION`` so a later Alembic run continues from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.engine import Connection, Engine

from tenax.core.errors import ConfigError
from tenax.store.engine import url_for_display, write_engine
from tenax.store.models import Base

HEAD_REVISION = "0003_memory"  # keep equal to the newest alembic/versions revision
VERSION_TABLE = "alembic_version"
_PG_LOCK_KEY = 0x7E4A_0001  # arbitrary constant for pg_advisory_xact_lock


def find_migrations_dir() -> Path | None:
    """The root ``alembic/`` dir next to the ``tenax`` package (editable/source checkout)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "alembic", here.parent / "alembic"):
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    return None


def alembic_config(script_location: Path, connection: Connection | None = None):  # -> alembic Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_head(script_location: Path) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(script_location)).get_current_head()


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds the database-wide write/migration lock:
    ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL. A second
    process opening the same database waits here, then finds the schema already current."""
    with write_engine(engine).connect() as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            yield conn


def ensure_schema(engine: Engine, script_location: Path | None | bool = True) -> str:
    """Upgrade ``engine``'s database to head. ``script_location=True`` means "find it";
    ``None``/``False`` forces the metadata fallback. Returns the resulting revision."""
    if script_location is True:
        script_location = find_migrations_dir()
    if not script_location:
        return _create_all_and_stamp(engine)

    head = script_head(script_location)
    with engine.connect() as conn:  # fast path: already current, no write lock needed
        if current_revision(conn) == head:
            return head or ""

    from alembic import command
    from alembic.util import CommandError

    with migration_lock(engine) as conn:
        try:
            command.upgrade(alembic_config(script_location, conn), "head")
        except CommandError as e:
            raise ConfigError(
                f"cannot upgrade the database schema at {url_for_display(engine.url)}: {e}. "
                "It may have been created by a newer tenax; upgrade tenax or point TENAX_DB elsewhere."
            ) from None
        return current_revision(conn) or ""


def _create_all_and_stamp(engine: Engine) -> str:
    version = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32), primary_key=True))
    with migration_lock(engine) as conn:
        version.create(conn, checkfirst=True)
        current = conn.execute(select(version.c.version_num)).scalars().all()
        if current and current != [HEAD_REVISION]:
            raise ConfigError(
                f"the database at {url_for_display(engine.url)} is at schema revision {current}, but this "
                f"tenax install ships no migrations (expected {HEAD_REVISION!r}); reinstall tenax from source "
                "or point TENAX_DB elsewhere."
            )
        Base.metadata.create_all(conn, checkfirst=True)
        if not current:
            conn.execute(version.insert().values(version_num=HEAD_REVISION))
    return HEAD_REVISION
