"""Alembic migrations of tenax's store (run by ``tenax.store.migrate.ensure_schema``)."""
