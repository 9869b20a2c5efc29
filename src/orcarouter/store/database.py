"""Engines for the configured database: async for the gateway, sync for migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orcarouter.settings import ConfigError

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def _driver_url(database_url: str, drivers: dict[str, str]) -> str:
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in drivers:
        raise ConfigError(f"unsupported database URL scheme '{url.drivername}'")
    return url.set(drivername=drivers[backend]).render_as_string(hide_password=False)


def _prepare_sqlite_dir(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine_for(database_url: str) -> AsyncEngine:
    """The gateway's async engine, with SQLite tuned for one writer and many readers."""
    _prepare_sqlite_dir(database_url)
    engine = create_async_engine(_driver_url(database_url, _ASYNC_DRIVERS), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def migrate(database_url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision``."""
    _prepare_sqlite_dir(database_url)
    sync_url = _driver_url(database_url, {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"})
    config = Config()
    config.set_main_option("script_location", "orcarouter.store:migrations")
    engine = create_engine(sync_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
