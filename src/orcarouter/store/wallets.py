"""Wallets, the ledger and key spend: every money movement is one ledger row.

Charges are written with their usage records in one transaction (``write_usage``, which
replaces a record's open row with the settled one): the ledger
row is keyed by the request id, and the wallet and key spend move only when that row is new,
so a batch written twice charges once, and the ledger always sums to the recorded costs.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orcarouter.store.repositories import insert_ignoring_conflicts, upsert, utcnow
from orcarouter.store.schema import api_keys, key_spend, ledger_entries, usage_records, wallets


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request cost its workspace (and its key), in micro-dollars."""

    request_id: str
    workspace_id: str
    key_id: str | None
    cost_micros: int


def new_entry_id() -> str:
    """A ledger entry id."""
    return "led_" + secrets.token_hex(12)


class WalletRepository:
    """Balances, top-ups, the ledger, and usage written together with its charges."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def balances(self) -> dict[str, int]:
        """Every wallet's balance by workspace id."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(wallets.c.workspace_id, wallets.c.balance_micros))
            return {row.workspace_id: int(row.balance_micros) for row in rows}

    async def caps(self) -> dict[str, tuple[int, int]]:
        """(cap, lifetime spend) of every active key that has a USD cap."""
        query = (
            select(api_keys.c.id, api_keys.c.usd_cap_micros, key_spend.c.spent_micros)
            .select_from(api_keys.outerjoin(key_spend, key_spend.c.key_id == api_keys.c.id))
            .where(api_keys.c.usd_cap_micros.is_not(None), api_keys.c.status == "active")
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return {row.id: (int(row.usd_cap_micros), int(row.spent_micros or 0)) for row in rows}

    async def balance(self, workspace_id: str) -> int | None:
        """One workspace's balance (None: it has no wallet)."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(wallets.c.balance_micros).where(wallets.c.workspace_id == workspace_id)
            )
            return int(value) if value is not None else None

    async def top_up(
        self, workspace_id: str, amount_micros: int, actor: str, note: str | None = None
    ) -> int:
        """Add money (negative: take it back) and return the new balance; opens the wallet."""
        now = utcnow()
        async with self._engine.begin() as conn:
            await conn.execute(
                insert_ignoring_conflicts(self._engine, wallets, "workspace_id").values(
                    workspace_id=workspace_id, balance_micros=0, updated_at=now
                )
            )
            balance = await _move(conn, workspace_id, amount_micros, now)
            assert balance is not None
            await conn.execute(
                ledger_entries.insert().values(
                    id=new_entry_id(),
                    workspace_id=workspace_id,
                    created_at=now,
                    kind="topup" if amount_micros >= 0 else "adjustment",
                    amount_micros=amount_micros,
                    balance_after_micros=balance,
                    actor=actor,
                    note=note,
                )
            )
            return balance

    async def ledger(self, workspace_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The workspace's newest ledger entries."""
        query = (
            select(ledger_entries)
            .where(ledger_entries.c.workspace_id == workspace_id)
            .order_by(ledger_entries.c.created_at.desc(), ledger_entries.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def write_usage(self, rows: Sequence[dict[str, Any]], charges: Sequence[Charge]) -> None:
        """Usage records and their charges, in one transaction, each at most once."""
        if not rows and not charges:
            return
        now = utcnow()
        async with self._engine.begin() as conn:
            if rows:
                await conn.execute(upsert(self._engine, usage_records, "request_id"), list(rows))
            for charge in charges:
                await self._charge(conn, charge, now)

    async def _charge(self, conn: AsyncConnection, charge: Charge, now: Any) -> None:
        entry_id = new_entry_id()
        inserted = await conn.execute(
            insert_ignoring_conflicts(self._engine, ledger_entries, "request_id")
            .values(
                id=entry_id,
                workspace_id=charge.workspace_id,
                created_at=now,
                kind="charge",
                amount_micros=-charge.cost_micros,
                request_id=charge.request_id,
                key_id=charge.key_id,
            )
            .returning(ledger_entries.c.id)
        )
        if inserted.first() is None:
            return  # charged already (a batch written again)
        balance = await _move(conn, charge.workspace_id, -charge.cost_micros, now)
        if balance is not None:
            await conn.execute(
                update(ledger_entries)
                .where(ledger_entries.c.id == entry_id)
                .values(balance_after_micros=balance)
            )
        if charge.key_id is not None:
            spent = await conn.execute(
                update(key_spend)
                .where(key_spend.c.key_id == charge.key_id)
                .values(spent_micros=key_spend.c.spent_micros + charge.cost_micros)
            )
            if spent.rowcount == 0:
                await conn.execute(
                    key_spend.insert().values(key_id=charge.key_id, spent_micros=charge.cost_micros)
                )


async def _move(conn: AsyncConnection, workspace_id: str, amount: int, now: Any) -> int | None:
    """Change a wallet's balance atomically; the new balance, or None without a wallet."""
    result = await conn.execute(
        update(wallets)
        .where(wallets.c.workspace_id == workspace_id)
        .values(balance_micros=wallets.c.balance_micros + amount, updated_at=now)
        .returning(wallets.c.balance_micros)
    )
    row = result.first()
    return int(row.balance_micros) if row is not None else None
