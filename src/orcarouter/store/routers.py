"""Named routers per workspace. Every query about one router takes the workspace id."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orcarouter.store.database import Transactions
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import as_utc, read_version, version_query
from orcarouter.store.schema import routers

AUTO_ROUTER = "auto"


class RouterExists(Exception):
    """The workspace already has a router of this name."""


def _empty() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RouterRow:
    """One router as stored."""

    id: str
    workspace_id: str
    name: str
    strategy: str
    allowed_models: tuple[str, ...] = ()
    default_model: str | None = None
    enabled: bool = True
    quality_bar: int | None = None
    priority: tuple[str, ...] = ()
    weights: Mapping[str, int] = field(default_factory=_empty)
    quality_scores: Mapping[str, int] = field(default_factory=_empty)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


_JSON_LISTS = ("allowed_models", "priority")
_JSON_MAPS = ("weights", "quality_scores")


def _list(raw: str | None) -> tuple[str, ...]:
    values = orjson.loads(raw) if raw else []
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


def _map(raw: str | None) -> Mapping[str, int]:
    values = orjson.loads(raw) if raw else {}
    if not isinstance(values, dict):
        return _empty()
    return MappingProxyType({str(k): int(v) for k, v in values.items() if isinstance(v, int)})


def _row(row: Any) -> RouterRow:
    return RouterRow(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        strategy=row.strategy,
        allowed_models=_list(row.allowed_models),
        default_model=row.default_model,
        enabled=bool(row.enabled),
        quality_bar=row.quality_bar,
        priority=_list(row.priority),
        weights=_map(row.weights),
        quality_scores=_map(row.quality_scores),
        created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow(),
    )


def _encoded(changes: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(changes)
    for name in _JSON_LISTS:
        if name in values:
            values[name] = orjson.dumps(list(values[name])).decode()
    for name in _JSON_MAPS:
        if name in values:
            values[name] = orjson.dumps(dict(values[name])).decode()
    return values


def _values(row: RouterRow) -> dict[str, Any]:
    return _encoded({name: getattr(row, name) for name in RouterRow.__slots__})


def new_router_id() -> str:
    """A fresh router id (``rtr_…``)."""
    return f"rtr_{secrets.token_hex(12)}"


def auto_router(workspace_id: str) -> RouterRow:
    """``orcarouter/auto`` as seeded: cheapest, every chat model, no default."""
    return RouterRow(new_router_id(), workspace_id, AUTO_ROUTER, "cheapest")


async def insert_auto_router(conn: AsyncConnection, workspace_id: str) -> None:
    """Seed ``orcarouter/auto`` inside the caller's transaction (the workspace's creation)."""
    await conn.execute(insert(routers).values(**_values(auto_router(workspace_id))))


class RouterRepository:
    """Routers; writes are scoped to one workspace."""

    def __init__(self, engine: AsyncEngine, writes: Transactions | None = None) -> None:
        """``writes``: where ``version`` (polled every second) runs, shared with the other
        repositories' background work; its own otherwise."""
        self._engine = engine
        self._writes = writes or Transactions(engine)
        self._version = version_query(routers)

    async def all(self) -> list[RouterRow]:
        """Every router of every workspace (the in-memory table's load)."""
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(select(routers))]

    async def version(self) -> tuple[int, datetime | None]:
        """How many routers exist and the newest change: moves whenever the set changes."""
        return await read_version(self._writes, self._version)

    async def list(self, workspace_id: str) -> list[RouterRow]:
        """The workspace's routers by name."""
        query = select(routers).where(routers.c.workspace_id == workspace_id)
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(query.order_by(routers.c.name))]

    async def get(self, workspace_id: str, name: str) -> RouterRow | None:
        """One router of the workspace."""
        query = select(routers).where(
            routers.c.workspace_id == workspace_id, routers.c.name == name
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row(row) if row is not None else None

    async def create(self, row: RouterRow) -> None:
        """Store a new router; ``RouterExists`` when the name is taken in the workspace."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(routers).values(**_values(row)))
        except IntegrityError:
            raise RouterExists(row.name) from None

    async def update(
        self, workspace_id: str, name: str, changes: Mapping[str, Any]
    ) -> RouterRow | None:
        """Change fields of a router; None when it does not exist, ``RouterExists`` on a
        rename onto a taken name."""
        values = {**_encoded(changes), "updated_at": utcnow()}
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    update(routers)
                    .where(routers.c.workspace_id == workspace_id, routers.c.name == name)
                    .values(**values)
                )
        except IntegrityError:
            raise RouterExists(str(changes.get("name", name))) from None
        if not result.rowcount:
            return None
        return await self.get(workspace_id, str(changes.get("name", name)))

    async def delete(self, workspace_id: str, name: str) -> bool:
        """Delete a router; False when it does not exist."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(routers).where(
                    routers.c.workspace_id == workspace_id, routers.c.name == name
                )
            )
        return bool(result.rowcount)

    async def seed_auto(self, workspace_id: str) -> bool:
        """Create ``orcarouter/auto`` unless the workspace has a router of that name."""
        try:
            async with self._engine.begin() as conn:
                await insert_auto_router(conn, workspace_id)
        except IntegrityError:
            return False
        return True
