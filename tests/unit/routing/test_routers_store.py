"""Routers on a real migrated SQLite database: seeding, CRUD scoped to a workspace, the table."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.bootstrap import bootstrap
from orcarouter.accounts.keys import DEFAULT_WORKSPACE
from orcarouter.routing.table import RouterTable
from orcarouter.store.accounts import UserRepository, UserRow, WorkspaceRow
from orcarouter.store.database import create_engine_for, migrate
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.routers import RouterExists, RouterRepository, RouterRow, new_router_id

ADMIN = "sk-orca-provided-admin-0123456789abcdefghijklmnop"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{tmp_path / 'routers.db'}"
    migrate(url)
    engine = create_engine_for(url)
    yield engine
    await engine.dispose()


async def _names(repo: RouterRepository, workspace: str) -> list[str]:
    return [r.name for r in await repo.list(workspace)]


async def test_bootstrap_seeds_auto_once_and_a_deleted_auto_stays_deleted(
    engine: AsyncEngine,
) -> None:
    repo = RouterRepository(engine)
    workspaces, keys = WorkspaceRepository(engine), KeyRepository(engine)
    await bootstrap(workspaces, keys, ADMIN, repo)
    auto = await repo.get(DEFAULT_WORKSPACE, "auto")
    assert auto is not None
    assert (auto.strategy, auto.allowed_models, auto.default_model, auto.enabled) == (
        "cheapest",
        (),
        None,
        True,
    )
    await bootstrap(workspaces, keys, ADMIN, repo)  # idempotent
    assert await _names(repo, DEFAULT_WORKSPACE) == ["auto"]
    assert await repo.delete(DEFAULT_WORKSPACE, "auto")
    await bootstrap(workspaces, keys, ADMIN, repo)
    assert await _names(repo, DEFAULT_WORKSPACE) == []


async def test_a_registered_workspace_gets_auto(engine: AsyncEngine) -> None:
    users = UserRepository(engine)
    now = utcnow()
    await users.register(
        UserRow("usr_1", "a@example.com", "hash", now), WorkspaceRow("ws_1", "A", now), "admin"
    )
    await users.create_workspace(WorkspaceRow("ws_2", "B", now), "usr_1", "admin")
    repo = RouterRepository(engine)
    assert await _names(repo, "ws_1") == ["auto"]
    assert await _names(repo, "ws_2") == ["auto"]


def test_the_migration_seeds_auto_for_workspaces_that_existed_before(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    migrate(url, "0002")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_old', 'Old', '2026-01-01')"
        )
        conn.commit()
    migrate(url)
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT workspace_id, name, strategy FROM routers").fetchall()
        columns = [c[1] for c in conn.execute("PRAGMA table_info(usage_records)")]
    assert rows == [("ws_old", "auto", "cheapest")]
    assert "route_reason" in columns


async def test_crud_is_scoped_to_the_workspace(engine: AsyncEngine) -> None:
    await WorkspaceRepository(engine).ensure("ws_a", "A")
    await WorkspaceRepository(engine).ensure("ws_b", "B")
    repo = RouterRepository(engine)
    row = RouterRow(
        new_router_id(),
        "ws_a",
        "coding",
        "priority",
        allowed_models=("openai/*",),
        priority=("openai/gpt-4o",),
        weights={"openai/gpt-4o": 2},
        quality_scores={"openai/*": 70},
        quality_bar=55,
    )
    await repo.create(row)
    with pytest.raises(RouterExists):
        await repo.create(RouterRow(new_router_id(), "ws_a", "coding", "cheapest"))
    await repo.create(RouterRow(new_router_id(), "ws_b", "coding", "cheapest"))  # other workspace
    stored = await repo.get("ws_a", "coding")
    assert stored is not None
    assert (
        stored.priority,
        dict(stored.weights),
        dict(stored.quality_scores),
        stored.quality_bar,
    ) == (
        ("openai/gpt-4o",),
        {"openai/gpt-4o": 2},
        {"openai/*": 70},
        55,
    )
    assert await repo.update("ws_b", "nope", {"enabled": False}) is None
    changed = await repo.update("ws_a", "coding", {"enabled": False, "name": "code"})
    assert changed is not None and (changed.name, changed.enabled) == ("code", False)
    assert (await repo.get("ws_b", "coding")) is not None  # untouched
    assert not await repo.delete("ws_b", "code")
    assert await repo.delete("ws_a", "code")


async def test_the_table_serves_from_memory_and_follows_changes(engine: AsyncEngine) -> None:
    await WorkspaceRepository(engine).ensure("ws_a", "A")
    repo = RouterRepository(engine)
    table = RouterTable(repo)
    await table.refresh()
    assert table.healthy and table.get("ws_a", "r") is None
    await repo.create(RouterRow(new_router_id(), "ws_a", "r", "quality", allowed_models=("A/*",)))
    await table.refresh()
    router = table.get("ws_a", "r")
    assert router is not None and router.strategy == "quality" and router.admits("a/x")
    await repo.update("ws_a", "r", {"strategy": "fastest"})
    await table.refresh()
    assert table.get("ws_a", "r").strategy == "fastest"  # type: ignore[union-attr]
    await repo.delete("ws_a", "r")
    await table.refresh()
    assert table.get("ws_a", "r") is None


async def test_the_table_keeps_serving_when_the_database_fails(engine: AsyncEngine) -> None:
    await WorkspaceRepository(engine).ensure("ws_a", "A")
    repo = RouterRepository(engine)
    await repo.create(RouterRow(new_router_id(), "ws_a", "r", "cheapest"))
    table = RouterTable(repo)
    await table.refresh()
    await engine.dispose()
    with closing(sqlite3.connect(str(engine.url.database))) as conn:
        conn.execute("ALTER TABLE routers RENAME TO routers_away")
        conn.commit()
    await table.refresh(force=True)
    assert not table.healthy
    assert table.get("ws_a", "r") is not None
