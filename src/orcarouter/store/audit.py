"""The audit log of management actions: who, what, when, on what. Never a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import as_utc
from orcarouter.store.schema import audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One management action."""

    id: str
    workspace_id: str | None
    actor_type: str
    actor_id: str
    action: str
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    client_ip: str | None = None
    created_at: datetime = field(default_factory=utcnow)


class AuditRepository:
    """Append and read audit entries; reads are always of one workspace."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, entry: AuditEntry) -> None:
        """Append one entry."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(audit_log).values(
                    id=entry.id,
                    created_at=entry.created_at,
                    workspace_id=entry.workspace_id,
                    actor_type=entry.actor_type,
                    actor_id=entry.actor_id,
                    action=entry.action,
                    target_type=entry.target_type,
                    target_id=entry.target_id,
                    detail=orjson.dumps(entry.detail).decode(),
                    client_ip=entry.client_ip,
                )
            )

    async def list(self, workspace_id: str, limit: int = 100) -> list[AuditEntry]:
        """The workspace's newest entries first."""
        query = (
            select(audit_log)
            .where(audit_log.c.workspace_id == workspace_id)
            .order_by(audit_log.c.created_at.desc(), audit_log.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [
            AuditEntry(
                id=r.id,
                workspace_id=r.workspace_id,
                actor_type=r.actor_type,
                actor_id=r.actor_id,
                action=r.action,
                target_type=r.target_type,
                target_id=r.target_id,
                detail=orjson.loads(r.detail or "{}"),
                client_ip=r.client_ip,
                created_at=as_utc(r.created_at) or utcnow(),
            )
            for r in rows
        ]
