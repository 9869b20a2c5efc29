"""The migrations on every backend and driver: the schema they build is the one the code uses,
they upgrade databases holding data, revert, repeat harmlessly and survive racing replicas."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from orcarouter.settings import ConfigError
from orcarouter.store import migrations
from orcarouter.store.database import async_url, create_engine_for, downgrade, migrate
from orcarouter.store.schema import metadata
from tests.unit.core.conftest import run_sql

VERSIONS = Path(migrations.__file__).parent / "versions"
HEAD = max(path.name.split("_")[0] for path in VERSIONS.glob("[0-9]*.py"))  # the newest


def _version(url: str) -> str | None:
    rows = run_sql(url, "SELECT version_num FROM alembic_version")
    return str(rows[0][0]) if rows else None


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine_for(url)
        try:
            async with engine.connect() as conn:
                names = await conn.run_sync(lambda c: inspect(c).get_table_names())
                return set(names)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _schema_differences(url: str) -> list[Any]:
    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async def read() -> list[Any]:
        engine = create_engine_for(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_the_migrated_schema_is_the_one_the_code_uses(database_url: str) -> None:
    migrate(database_url)
    assert _version(database_url) == HEAD
    assert _schema_differences(database_url) == []


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    migrate(database_url)
    run_sql(
        database_url,
        "INSERT INTO workspaces (id, name, created_at) VALUES ('ws', 'W', '2026-01-01')",
    )
    migrate(database_url)
    assert _version(database_url) == HEAD
    assert run_sql(database_url, "SELECT COUNT(*) FROM routers") == [(0,)]


def test_migrate_works_inside_a_running_event_loop(database_url: str) -> None:
    async def inside() -> None:
        migrate(database_url)

    asyncio.run(inside())
    assert _version(database_url) == HEAD


def test_0003_seeds_auto_for_workspaces_that_existed_before(database_url: str) -> None:
    migrate(database_url, "0002")
    run_sql(
        database_url,
        "INSERT INTO workspaces (id, name, created_at) VALUES "
        "('ws_old', 'Old', '2026-01-01 00:00:00'), ('ws_two', 'Two', '2026-01-02 00:00:00')",
    )
    migrate(database_url)
    rows = run_sql(
        database_url,
        "SELECT workspace_id, name, strategy, enabled, weights FROM routers ORDER BY workspace_id",
    )
    assert rows == [
        ("ws_old", "auto", "cheapest", True, "{}"),
        ("ws_two", "auto", "cheapest", True, "{}"),
    ]


def test_0002_gives_existing_keys_the_default_limits(database_url: str) -> None:
    migrate(database_url, "0001")
    run_sql(
        database_url,
        "INSERT INTO workspaces (id, name, created_at) VALUES ('ws', 'W', '2026-01-01 00:00:00')",
    )
    run_sql(
        database_url,
        "INSERT INTO api_keys (id, workspace_id, name, key_hash, display_prefix, role, status,"
        " created_at, updated_at) VALUES ('key_old', 'ws', 'old', 'h', 'p', 'member', 'active',"
        " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    )
    migrate(database_url, "0002")
    rows = run_sql(
        database_url,
        "SELECT model_limits_enabled, model_limits, allow_ips, usd_cap_micros FROM api_keys",
    )
    assert rows == [(False, "[]", "[]", None)]


def test_downgrade_to_base_and_up_again(database_url: str) -> None:
    migrate(database_url)
    downgrade(database_url, "0001")
    assert _version(database_url) == "0001"
    assert "routers" not in _tables(database_url)
    downgrade(database_url, "base")
    assert _tables(database_url) <= {"alembic_version"}
    migrate(database_url)
    assert _schema_differences(database_url) == []


_REPLICA = """
import sys
from orcarouter.store.database import migrate
print("ready", flush=True)
sys.stdin.readline()
migrate(sys.argv[1])
"""


def test_replicas_migrating_at_once_apply_each_revision_once(postgres_url: str) -> None:
    # Replicas are processes (Alembic's context is global to a process, so not threads). Each
    # imports first and then waits, so that all of them start migrating at the same moment.
    replicas = [
        subprocess.Popen(  # the URL is the test's own database
            [sys.executable, "-c", _REPLICA, postgres_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    for replica in replicas:
        assert replica.stdout is not None and replica.stdout.readline() == "ready\n"
    for replica in replicas:
        assert replica.stdin is not None
        replica.stdin.write("go\n")
        replica.stdin.flush()
    outputs = [replica.communicate(timeout=60)[0] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    assert _version(postgres_url) == HEAD
    assert _schema_differences(postgres_url) == []


# --- which driver a URL gets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "driver"),
    [
        ("postgresql://u:p@db:5432/orca", "postgresql+asyncpg"),
        ("postgres://u:p@db/orca", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u:p@db/orca", "postgresql+asyncpg"),
        ("postgresql+psycopg://u:p@db/orca", "postgresql+psycopg"),
        ("postgresql+psycopg_async://u:p@db/orca", "postgresql+psycopg"),
        ("sqlite:///data/orca.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///data/orca.db", "sqlite+aiosqlite"),
    ],
)
def test_each_url_gets_its_async_driver(configured: str, driver: str) -> None:
    url = async_url(configured)
    assert url.drivername == driver
    assert url.password in (None, "p")  # credentials are carried, not lost


@pytest.mark.parametrize(
    "configured",
    ["postgresql+psycopg2://u@db/orca", "postgresql+pg8000://u@db/orca", "mysql://u@db/orca"],
)
def test_unsupported_drivers_are_a_configuration_error(configured: str) -> None:
    with pytest.raises(ConfigError, match="unsupported"):
        async_url(configured)


def test_a_malformed_url_is_a_configuration_error_that_shows_no_password() -> None:
    with pytest.raises(ConfigError) as raised:
        async_url("not a url with secret-password")
    assert "secret-password" not in str(raised.value)
