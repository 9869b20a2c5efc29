"""Real databases for the store, metering and accounts tests: SQLite always, PostgreSQL when
its drivers are installed."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.database import create_engine_for, migrate
from orcarouter.store.repositories import KeyRepository, UsageRepository, WorkspaceRepository

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
_POSTGRES_DRIVERS = ("asyncpg", "psycopg")
_POSTGRES_TABLES = (
    "audit_log",
    "auth_sessions",
    "workspace_members",
    "users",
    "usage_records",
    "usage_records_away",
    "api_keys",
    "api_keys_away",
    "workspaces",
)


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

    def execute(self, sql: str) -> list[tuple[object, ...]]:
        """Run one statement over a separate synchronous connection, outside the gateway."""
        return run_sql(self.url, sql)


def _sync_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def run_sql(url: str, sql: str) -> list[tuple[object, ...]]:
    """Execute ``sql`` in its own transaction and return any rows it produced."""
    engine = create_engine(_sync_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _require_postgres_drivers() -> None:
    for name in _POSTGRES_DRIVERS:
        try:
            importlib.import_module(name)
        except ImportError:
            pytest.skip(
                f"PostgreSQL store tests need the '{name}' driver "
                f"({' and '.join(_POSTGRES_DRIVERS)}); it is not installed"
            )


def _reset_postgres() -> None:
    for table in _POSTGRES_TABLES:
        run_sql(POSTGRES_URL, f"DROP TABLE IF EXISTS {table} CASCADE")
    run_sql(POSTGRES_URL, "DROP TABLE IF EXISTS alembic_version")


async def _open(url: str) -> Store:
    migrate(url)
    engine = create_engine_for(url)
    return Store(
        url, engine, KeyRepository(engine), UsageRepository(engine), WorkspaceRepository(engine)
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A database file inside its own directory, so a test can make the directory vanish."""
    return f"sqlite:///{(tmp_path / 'db' / 't.db').as_posix()}"


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    """A migrated SQLite database."""
    store = await _open(sqlite_url)
    yield store
    await store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Store]:
    """The same store on each supported backend."""
    if request.param == "postgresql":
        _require_postgres_drivers()
        _reset_postgres()
        url = POSTGRES_URL
    else:
        url = sqlite_url
    store = await _open(url)
    yield store
    await store.engine.dispose()
