"""Workspace provider credentials (BYOK) as stored: ciphertext, key version and a hint.

Nothing here encrypts or decrypts (``accounts/credentials.py`` does); the repository never sees
a plaintext key. Every query about one credential takes the workspace id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.database import Transactions
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import as_utc, read_version, version_query
from orcarouter.store.schema import provider_credentials

_table = provider_credentials


class CredentialConflict(Exception):
    """Another writer changed the credential at the same moment; read it again and retry."""


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """One stored credential; ``ciphertext`` is opaque here and left out of ``repr``."""

    id: str
    workspace_id: str
    provider_id: str
    ciphertext: str = field(repr=False)
    key_version: str
    hint: str
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None


# Re-encrypts one row: its new (ciphertext, key_version), or None to leave it as it is.
Reseal = Callable[[CredentialRow], tuple[str, str] | None]


def _row(row: Any) -> CredentialRow:
    return CredentialRow(
        id=row.id,
        workspace_id=row.workspace_id,
        provider_id=row.provider_id,
        ciphertext=row.ciphertext,
        key_version=row.key_version,
        hint=row.hint,
        created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow(),
        created_by=row.created_by,
    )


class CredentialRepository:
    """Provider credentials; reads of one workspace and writes are scoped to it."""

    def __init__(self, engine: AsyncEngine, writes: Transactions | None = None) -> None:
        """``writes``: where ``version`` (polled every second) runs, shared with the other
        repositories' background work; its own otherwise."""
        self._engine = engine
        self._writes = writes or Transactions(engine)
        self._version = version_query(_table)

    async def all(self) -> list[CredentialRow]:
        """Every credential of every workspace (the in-memory cache's load, the CLI list)."""
        query = select(_table).order_by(_table.c.workspace_id, _table.c.provider_id)
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(query)]

    async def version(self) -> tuple[int, datetime | None]:
        """How many credentials exist and the newest change: moves whenever the set changes."""
        return await read_version(self._writes, self._version)

    async def list(self, workspace_id: str) -> list[CredentialRow]:
        """The workspace's credentials by provider id."""
        query = (
            select(_table)
            .where(_table.c.workspace_id == workspace_id)
            .order_by(_table.c.provider_id)
        )
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(query)]

    async def get(self, workspace_id: str, provider_id: str) -> CredentialRow | None:
        """The workspace's credential for one provider."""
        query = select(_table).where(
            _table.c.workspace_id == workspace_id, _table.c.provider_id == provider_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row(row) if row is not None else None

    async def save(self, row: CredentialRow) -> None:
        """Store ``row``: replace the stored one of the same id, or add it when none exists.

        ``CredentialConflict`` when the workspace meanwhile got another row for the provider
        (its ciphertext is bound to its id, so the caller seals again for that id).
        """
        changes = {
            "ciphertext": row.ciphertext,
            "key_version": row.key_version,
            "hint": row.hint,
            "updated_at": row.updated_at,
        }
        try:
            async with self._engine.begin() as conn:
                replaced = await conn.execute(
                    update(_table)
                    .where(
                        _table.c.id == row.id,
                        _table.c.workspace_id == row.workspace_id,
                        _table.c.provider_id == row.provider_id,
                    )
                    .values(**changes)
                )
                if not replaced.rowcount:
                    await conn.execute(
                        insert(_table).values(
                            id=row.id,
                            workspace_id=row.workspace_id,
                            provider_id=row.provider_id,
                            created_at=row.created_at,
                            created_by=row.created_by,
                            **changes,
                        )
                    )
        except IntegrityError:
            raise CredentialConflict(row.provider_id) from None

    async def delete(self, workspace_id: str, provider_id: str) -> bool:
        """Delete the workspace's credential for the provider; False when there is none."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(_table).where(
                    _table.c.workspace_id == workspace_id, _table.c.provider_id == provider_id
                )
            )
        return bool(result.rowcount)

    async def reseal_all(self, reseal: Reseal) -> tuple[int, int]:
        """Re-encrypt every row in one transaction: all of them or, if ``reseal`` raises or a
        row changed meanwhile (``CredentialConflict``), none. Returns (changed, total).

        ``updated_at`` stays: the credential is the same, only the key that wraps it changed,
        so running gateways keep serving the keys they already decrypted.
        """
        async with self._engine.begin() as conn:
            query = select(_table).order_by(_table.c.id).with_for_update()
            rows = [_row(r) for r in await conn.execute(query)]
            changed = 0
            for row in rows:
                sealed = reseal(row)
                if sealed is None:
                    continue
                result = await conn.execute(
                    update(_table)
                    .where(_table.c.id == row.id, _table.c.ciphertext == row.ciphertext)
                    .values(ciphertext=sealed[0], key_version=sealed[1])
                )
                if result.rowcount != 1:
                    raise CredentialConflict(row.id)
                changed += 1
        return changed, len(rows)
