"""Database URL resolution (``TENAX_DB``) and engine construction."""

from __future__ import annotations

import json
import os
import re
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from tenax.config import tenax_home
from tenax.core.errors import ConfigError

ENV_VAR = "TENAX_DB"
DURABILITY_VAR = "TENAX_DURABILITY"
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
WAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes the WAL is truncated back to after a checkpoint
BUSY_TIMEOUT_MS = 10_000
_EXAMPLES = "sqlite:////abs/path/tenax.db or postgresql+psycopg://user@host/db"
_PATH_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")  # 2+ chars, so C:\x.db is a path


class JsonText(str):
    """JSON text already encoded (strictly) for a JSON column: the engine's serializer keeps it as
    is, so a hot path encodes a payload once, to check it and to store it."""


def dump_json(value: Any) -> str:
    """The engines' JSON serializer: strict JSON (no NaN or infinity); ``JsonText`` passes through."""
    return value if isinstance(value, JsonText) else json.dumps(value, allow_nan=False)


def _mask(raw: str) -> str:
    """Hide a password in a (possibly malformed) URL before it goes into an error message."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", raw)


def _bad(raw: str, source: str, why: str) -> ConfigError:
    where = f"{ENV_VAR}={_mask(raw)!r}" if source == ENV_VAR else f"database URL {_mask(raw)!r}"
    return ConfigError(
        f"{where}: {why}. Set {ENV_VAR} (or pass a URL) to an SQLAlchemy database URL such as "
        f"{_EXAMPLES}, or to a file path ending in .db."
    )


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


def resolve_url(url: str | None = None) -> URL:
    """Turn an explicit URL, ``$TENAX_DB`` or the default location into an SQLAlchemy URL.

    Raises ConfigError for a malformed URL or an unknown driver. For a SQLite file the path is
    made absolute (``~`` expanded) and its directory is created.
    """
    source = "argument"
    if url is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            url, source = env, ENV_VAR
        else:
            url = str(tenax_home() / "tenax.db")
    raw = url.strip()
    if not raw:
        raise _bad(url, source, "it is empty")

    if "://" not in raw:
        if raw.lower().endswith(_PATH_SUFFIXES) and not _SCHEME_RE.match(raw):
            path = Path(raw).expanduser().resolve()
            parsed = URL.create("sqlite", database=str(path))
        else:
            raise _bad(raw, source, "this is not a database URL (expected scheme://...)")
    else:
        try:
            parsed = make_url(raw)
        except (ArgumentError, ValueError) as e:
            raise _bad(raw, source, f"cannot parse it ({e})") from None

    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        hint = " (use 'postgresql+psycopg://', not 'postgres://')" if parsed.drivername.startswith("postgres:") or parsed.drivername == "postgres" else ""
        raise _bad(raw, source, f"unknown database driver {parsed.drivername!r}{hint}") from None
    except Exception as e:  # noqa: BLE001 - a broken dialect plugin is still a config problem
        raise _bad(raw, source, f"cannot load driver {parsed.drivername!r} ({e})") from None

    if parsed.get_backend_name() == "sqlite" and not is_sqlite_memory(parsed):
        db = str(parsed.database)
        if db.startswith("file:"):
            return parsed  # URI filename; sqlite resolves it
        path = Path(db).expanduser().resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _bad(raw, source, f"cannot create directory {str(path.parent)!r} ({e.strerror})") from None
        parsed = parsed.set(database=str(path))
    return parsed


def url_for_display(url: URL) -> str:
    return url.render_as_string(hide_password=True)


# Engines to reset in a forked child: pooled connections must never be shared across processes.
_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for eng in list(_ENGINES):
        eng.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


WRITE_OPTION = "tenax_write"


def synchronous_mode() -> str:
    """``$TENAX_DURABILITY``: ``normal`` (default; WAL + synchronous=NORMAL survives ``kill -9`` and
    any crash of tenax, but a power loss may drop the last commits) or ``full`` (synchronous=FULL:
    every commit is fsynced, also safe against power loss, several times slower)."""
    raw = os.environ.get(DURABILITY_VAR, "").strip().lower() or "normal"
    if raw not in _SYNCHRONOUS:
        raise ConfigError(f"{DURABILITY_VAR}={raw!r} is not a durability level; use 'normal' (default) or 'full'")
    return _SYNCHRONOUS[raw]


def make_engine(url: URL | str) -> Engine:
    """Create an engine. For SQLite: WAL, synchronous=NORMAL (FULL with TENAX_DURABILITY=full), a
    bounded WAL size, busy_timeout, foreign keys, and
    real transactions (``BEGIN``, or ``BEGIN IMMEDIATE`` on connections carrying the
    ``tenax_write`` execution option, so that writers queue on the busy timeout instead of
    failing with SQLITE_BUSY when upgrading a read lock)."""
    if isinstance(url, str):
        url = make_url(url)
    kwargs: dict[str, Any] = {"json_serializer": dump_json}
    sqlite = url.get_backend_name() == "sqlite"
    synchronous = synchronous_mode()
    memory = sqlite and is_sqlite_memory(url)
    if memory:
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif not sqlite:
        kwargs.update(pool_pre_ping=True)
    try:
        engine = create_engine(url, **kwargs)
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise ConfigError(
            f"database URL {url_for_display(url)!r} needs the Python driver {missing!r}, which is not "
            f"installed (pip install it into tenax's environment), or set {ENV_VAR} to e.g. {_EXAMPLES}."
        ) from None

    if sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module (see SQLAlchemy's
            # "Transactions with SQLite" docs) so DDL is transactional and BEGIN is ours.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                if not memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute("PRAGMA foreign_keys=ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            if conn.get_execution_options().get(WRITE_OPTION):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

    _ENGINES.add(engine)
    return engine


def write_engine(engine: Engine) -> Engine:
    """The same engine (shared pool) whose transactions take the write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})
