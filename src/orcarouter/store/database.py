"""Engines for the configured database: SQLite by default, PostgreSQL when configured.

``ORCAROUTER_DATABASE_URL`` picks the database:

- ``sqlite:///path/to/file.db`` (the default) runs on aiosqlite; migrations use ``sqlite3``.
- ``postgresql://user:password@host:5432/db`` runs on asyncpg, as does an explicit
  ``postgresql+asyncpg://``; ``postgresql+psycopg://`` runs on psycopg 3 (async). Migrations run
  over the same driver and URL as the gateway, so a driver-specific query parameter (asyncpg's
  ``ssl=require``, psycopg's ``sslmode=require``, asyncpg's ``prepared_statement_cache_size=0``
  behind PgBouncer in transaction mode) applies to both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from orcarouter.settings import ConfigError

# The async driver per PostgreSQL driver name in the URL; no name means the default, asyncpg.
_POSTGRES_DRIVERS = {
    "": "asyncpg",
    "asyncpg": "asyncpg",
    "psycopg": "psycopg",
    "psycopg_async": "psycopg",
}
_POSTGRES_SCHEMES = ("postgresql", "postgres")

# Pool per gateway process. Requests never touch the database (keys, routers and the catalog
# are served from memory; usage is written in batches), so the pool serves the background
# writer, the cache refreshes and the management API: a few connections, and a bounded total
# when many replicas share one server (replicas x (pool_size + max_overflow) <= max_connections).
POOL_SIZE = 5
MAX_OVERFLOW = 5
POOL_TIMEOUT = 10.0  # seconds to wait for a free connection before failing the operation
POOL_RECYCLE = 1800  # seconds; under the idle timeouts of load balancers and poolers
APPLICATION_NAME = "orcarouter"  # shown in pg_stat_activity

T = TypeVar("T")


def async_url(database_url: str) -> URL:
    """The URL with the async driver the gateway uses; ``ConfigError`` when unsupported."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ConfigError("the database URL is not a valid URL") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in _POSTGRES_SCHEMES:
        chosen = _POSTGRES_DRIVERS.get(driver)
        if chosen is None:
            raise ConfigError(
                f"unsupported PostgreSQL driver '{driver}': use postgresql:// or "
                "postgresql+asyncpg:// (asyncpg) or postgresql+psycopg:// (psycopg 3)"
            )
        return url.set(drivername=f"postgresql+{chosen}")
    raise ConfigError(f"unsupported database URL scheme '{url.drivername}'")


def _prepare_sqlite_dir(url: URL) -> None:
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


def _sqlite_sync_engine(url: URL, **options: Any) -> Engine:
    """A synchronous engine on the plain ``sqlite3`` driver, with the gateway's pragmas."""
    engine = create_engine(url.set(drivername="sqlite"), **options)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _postgres_connect_args(url: URL) -> dict[str, Any]:
    if url.get_driver_name() == "asyncpg":
        # asyncpg takes run-time parameters as server_settings (the URL cannot carry them).
        return {"server_settings": {"application_name": APPLICATION_NAME}}
    if "application_name" in url.query:
        return {}
    return {"application_name": APPLICATION_NAME}


def create_engine_for(
    database_url: str,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = MAX_OVERFLOW,
) -> AsyncEngine:
    """The gateway's async engine: SQLite tuned for one writer and many readers, PostgreSQL
    with a small bounded pool of checked, recycled connections."""
    url = async_url(database_url)
    if url.get_backend_name() == "sqlite":
        _prepare_sqlite_dir(url)
        # No pre-ping: a SQLite connection is a file handle, it cannot go stale the way a
        # network connection does, and a ping costs a hand-off to aiosqlite's thread on every
        # checkout (the background refreshes check out several connections a second).
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=POOL_TIMEOUT,
        pool_recycle=POOL_RECYCLE,
        pool_pre_ping=True,
        connect_args=_postgres_connect_args(url),
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "orcarouter.store:migrations")
    return config


Operation = Callable[[Config, str], None]


def _run_operation(
    connection: Connection, config: Config, operation: Operation, revision: str
) -> None:
    config.attributes["connection"] = connection
    operation(config, revision)


def migrate(database_url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision``, in one transaction.

    On PostgreSQL the migrations run over the configured async driver, and replicas starting
    together take turns (env.py holds an advisory lock), so each revision is applied once.
    """
    _apply(database_url, command.upgrade, revision)


def downgrade(database_url: str, revision: str) -> None:
    """Revert the migrations down to ``revision`` (``base`` for an empty database)."""
    _apply(database_url, command.downgrade, revision)


def _apply(database_url: str, operation: Operation, revision: str) -> None:
    url = async_url(database_url)
    config = _alembic_config()
    if url.get_backend_name() != "sqlite":
        _run_to_completion(lambda: _apply_async(url, config, operation, revision))
        return
    _prepare_sqlite_dir(url)
    engine = _sqlite_sync_engine(url)
    try:
        with engine.begin() as connection:
            _run_operation(connection, config, operation, revision)
    finally:
        engine.dispose()


async def _apply_async(url: URL, config: Config, operation: Operation, revision: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, connect_args=_postgres_connect_args(url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_operation, config, operation, revision)
    finally:
        await engine.dispose()


def _run_to_completion(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` to its end from synchronous code, even when called inside a running event
    loop (a test, an embedding application): then on a thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(work())
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="orcarouter-migrate") as pool:
        pool.submit(lambda: asyncio.run(work())).result()


class Transactions:
    """Runs a synchronous transaction body (SQLAlchemy Core on a ``Connection``) for the
    background work, in one hand-off per transaction: the usage writer's writes, and the
    once-a-second reads that keep keys, routers, credentials and balances current.

    On a SQLite file the body runs on a thread of its own over a plain ``sqlite3`` connection:
    aiosqlite hands every statement, cursor and commit to its thread and back (about 20 hand-offs
    for a 10-record batch with its charges), and each wakes the event loop and contends for the
    GIL with it (a small ``SELECT`` made alone, as the once-a-second polls are: 1.7 to 2.4 ms of
    CPU through aiosqlite, 1.0 to 1.2 here; back to back, 0.7 to 1.4 against 0.2 to 0.3). The
    polls wait behind a writer's transaction: at most one, tens of milliseconds for a full
    500-record batch. Elsewhere (PostgreSQL, an in-memory SQLite that only the async engine's
    connection can see) the body runs through the async engine (``run_sync``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        url = engine.url
        self._file = url.get_backend_name() == "sqlite" and url.database not in (
            None,
            "",
            ":memory:",
        )
        self._local: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction: committed when it returns, rolled back if it raises."""
        if not self._file:
            async with self._engine.begin() as conn:
                return await conn.run_sync(work)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orcarouter-sql")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread, work)

    def _in_thread(self, work: Callable[[Connection], T]) -> T:
        if self._local is None:  # one connection, only ever used on this thread
            self._local = _sqlite_sync_engine(self._engine.url, poolclass=StaticPool)
        with self._local.begin() as conn:
            return work(conn)

    async def close(self) -> None:
        """Close the thread's connection and the thread (a later ``run`` opens them again)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        await asyncio.get_running_loop().run_in_executor(thread, self._dispose)
        thread.shutdown()

    def _dispose(self) -> None:
        if self._local is not None:
            self._local.dispose()
            self._local = None
