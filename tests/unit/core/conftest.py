"""Real databases for the store, metering and accounts tests: SQLite always, and PostgreSQL
over both async drivers (asyncpg, psycopg 3) when the server is reachable.

Every PostgreSQL test gets a database of its own, named after the process and a random token,
created from ``template0`` and dropped afterwards, so concurrent test runs on one server never
see each other's tables. ``ORCAROUTER_TEST_POSTGRES_URL`` names the server (any database on it
to connect to; default ``postgresql://postgres@127.0.0.1:5432/test``); when it is unreachable the
PostgreSQL cases skip, unless ``ORCAROUTER_TEST_POSTGRES=require`` makes that a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.database import Transactions, create_engine_for, migrate
from orcarouter.store.repositories import KeyRepository, UsageRepository, WorkspaceRepository

POSTGRES_DRIVERS = ("asyncpg", "psycopg")
BACKENDS = ("sqlite", *POSTGRES_DRIVERS)


@dataclass
class Store:
    """One migrated database: its URL, async engine and repositories, plus raw SQL access."""

    url: str
    engine: AsyncEngine
    keys: KeyRepository
    usage: UsageRepository
    workspaces: WorkspaceRepository

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @property
    def driver(self) -> str:
        return self.engine.dialect.driver

    def execute(self, sql: str) -> list[tuple[object, ...]]:
        """Run one statement over a separate synchronous connection, outside the gateway."""
        return run_sql(self.url, sql)


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg is sync as well
    elif parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def run_sql(url: str, sql: str) -> list[tuple[object, ...]]:
    """Execute ``sql`` in its own transaction and return any rows it produced."""
    engine = create_engine(_sync_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def with_driver(url: str, driver: str) -> str:
    """``url`` with an explicit SQLAlchemy driver (``postgresql+asyncpg://…``)."""
    parsed = make_url(url)
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(False)


# --- every backend ----------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A database file inside its own directory, so a test can make the directory vanish."""
    return f"sqlite:///{(tmp_path / 'db' / 't.db').as_posix()}"


@pytest.fixture(params=POSTGRES_DRIVERS)
def postgres_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty PostgreSQL database, once per async driver (the URL names the driver)."""
    database: str = request.getfixturevalue("postgres_database")
    return with_driver(database, str(request.param))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database on each supported backend and driver, not yet migrated."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    return with_driver(request.getfixturevalue("postgres_database"), str(request.param))


async def open_store(url: str) -> Store:
    """Migrate the database at ``url`` and open the gateway's engine and repositories on it."""
    migrate(url)
    engine = create_engine_for(url)
    writes = Transactions(engine)  # as the gateway has it: one for the writer's repositories
    return Store(
        url,
        engine,
        KeyRepository(engine, writes),
        UsageRepository(engine, writes),
        WorkspaceRepository(engine),
    )


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    """A migrated SQLite database."""
    store = await open_store(sqlite_url)
    yield store
    await store.usage.close()
    await store.engine.dispose()


@pytest.fixture
async def any_store(database_url: str) -> AsyncIterator[Store]:
    """The same store on each supported backend and driver: SQLite, asyncpg, psycopg."""
    store = await open_store(database_url)
    yield store
    await store.usage.close()
    await store.engine.dispose()


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[Store]:
    """A migrated PostgreSQL database, once per async driver."""
    store = await open_store(postgres_url)
    yield store
    await store.engine.dispose()
