"""Replicas starting together on one database bootstrap it exactly once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.bootstrap import ADMIN_ROLE, bootstrap
from orcarouter.store.database import create_engine_for, migrate
from orcarouter.store.locks import exclusive, lock_id
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.routers import RouterRepository

ADMIN_KEY = "sk-orca-bootstrap-race-0123456789abcdefghijklmnop"
REPLICAS = 6


async def _start_replicas(url: str, admin_key: str | None) -> list[str | None]:
    """``REPLICAS`` processes' worth of bootstraps at once, each on its own engine."""
    engines = [create_engine_for(url) for _ in range(REPLICAS)]
    try:
        return await asyncio.gather(
            *(
                bootstrap(WorkspaceRepository(e), KeyRepository(e), admin_key, RouterRepository(e))
                for e in engines
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()


async def _admin_keys(url: str) -> list[str]:
    engine = create_engine_for(url)
    try:
        rows = await KeyRepository(engine).list()
        return [r.key_hash for r in rows if r.role == ADMIN_ROLE and r.status == "active"]
    finally:
        await engine.dispose()


async def test_replicas_with_a_configured_admin_key_create_it_once(database_url: str) -> None:
    migrate(database_url)
    secrets = await _start_replicas(database_url, ADMIN_KEY)
    assert secrets == [None] * REPLICAS
    assert len(await _admin_keys(database_url)) == 1


async def test_replicas_without_an_admin_key_generate_exactly_one(database_url: str) -> None:
    migrate(database_url)
    secrets = await _start_replicas(database_url, None)
    generated = [s for s in secrets if s is not None]
    assert len(generated) == 1
    assert len(await _admin_keys(database_url)) == 1


async def test_the_lock_admits_one_holder_at_a_time(database_url: str) -> None:
    migrate(database_url)
    engines = [create_engine_for(database_url) for _ in range(3)]
    inside = 0
    most = 0

    async def hold(engine: AsyncEngine) -> None:
        nonlocal inside, most
        async with exclusive(engine, "test"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    try:
        await asyncio.gather(*(hold(e) for e in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    assert most == 1


@pytest.mark.parametrize("name", ["bootstrap", "x"])
def test_lock_ids_are_stable_signed_64_bit(name: str) -> None:
    assert lock_id(name) == lock_id(name)
    assert -(2**63) <= lock_id(name) < 2**63
