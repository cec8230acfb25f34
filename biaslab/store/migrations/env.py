"""Alembic environment for the store; `biaslab.store.migrate` configures it in code.

`migrate.upgrade` passes an open connection in `config.attributes["connection"]`.
Without one (the `alembic` command line), the URL comes from the
`sqlalchemy.url` option or, when that is unset, from `Settings`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from biaslab.settings import Settings
from biaslab.store.db import make_engine
from biaslab.store.models import Base

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it; batch mode writes the copy for us.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def run_migrations_offline() -> None:
    """Write the migration SQL for `_database_url()` instead of running it."""
    context.configure(
        url=_database_url(),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
