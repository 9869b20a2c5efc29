"""Alembic environment: runs the project's migrations on the configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from orcarouter.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    """Apply migrations over a real connection (the only mode the project uses)."""
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
