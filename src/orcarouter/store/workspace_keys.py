"""A workspace's API keys as the management API sees them: every query takes the workspace."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRow, key_row
from orcarouter.store.schema import api_keys

_JSON_LISTS = ("model_limits", "allow_ips")


class WorkspaceKeys:
    """Keys scoped to one workspace; creation goes through ``KeyRepository.add``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list(self, workspace_id: str) -> list[KeyRow]:
        """The workspace's keys, oldest first."""
        query = (
            select(api_keys)
            .where(api_keys.c.workspace_id == workspace_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        async with self._engine.connect() as conn:
            return [key_row(r) for r in await conn.execute(query)]

    async def get(self, workspace_id: str, key_id: str) -> KeyRow | None:
        """One key of the workspace (None for another workspace's key)."""
        query = select(api_keys).where(
            api_keys.c.workspace_id == workspace_id, api_keys.c.id == key_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
            return key_row(row) if row is not None else None

    async def update(self, workspace_id: str, key_id: str, values: dict[str, Any]) -> bool:
        """Change a key's fields (never its hash); False when the workspace has no such key."""
        stored = {k: v for k, v in values.items() if k not in ("key_hash", "id", "workspace_id")}
        for name in _JSON_LISTS:
            if name in stored:
                stored[name] = orjson.dumps(list(stored[name])).decode()
        stored["updated_at"] = utcnow()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.workspace_id == workspace_id, api_keys.c.id == key_id)
                .values(**stored)
            )
            return bool(result.rowcount)
