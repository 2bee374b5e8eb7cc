"""Alembic environment for tenax.

Two ways in:
- programmatically (``tenax.store.open_store``): the caller passes an open connection, already
  inside a locked transaction, in ``config.attributes["connection"]``;
- the ``alembic`` CLI (``alembic -c tenax/store/migrations/alembic.ini upgrade head``): the URL comes from
  ``-x db=URL``, else ``sqlalchemy.url`` in the ini file, else ``$TENAX_DB`` / the default path.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

import tenax.store  # noqa: F401  (registers every model on Base.metadata)
from tenax.store.engine import make_engine, resolve_url
from tenax.store.memory import include_name
from tenax.store.migrate import migration_lock
from tenax.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str | None:
    x_db = context.get_x_argument(as_dictionary=True).get("db")
    return x_db or config.get_main_option("sqlalchemy.url") or None


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
        include_name=include_name,  # skip the FTS5 recall index (virtual table + shadow tables)
    )


def run_offline() -> None:
    context.configure(
        url=resolve_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = make_engine(resolve_url(_url()))
    try:
        with migration_lock(engine) as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
