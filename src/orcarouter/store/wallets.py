"""Wallets, the ledger and key spend: every money movement is one ledger row.

Charges are written with their usage records in one transaction (``write_usage``, which
replaces a record's open row with the settled one): the ledger
row is keyed by the request id, and the wallet and key spend move only when that row is new,
so a batch written twice charges once, and the ledger always sums to the recorded costs.

Budget holds (``HoldRepository``, table ``budget_holds``) are what requests hold against those
balances and caps until their charges are committed, when every process must see them (no
Redis); ``write_usage`` can delete them in the charges' own transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.database import Transactions
from orcarouter.store.ids import ordered_id, utcnow
from orcarouter.store.repositories import (
    BulkUpsert,
    Prepared,
    dialect_insert,
    insert_ignoring_conflicts,
)
from orcarouter.store.schema import (
    api_keys,
    budget_holds,
    key_spend,
    ledger_entries,
    usage_records,
    wallets,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request cost its workspace (and its key), in micro-dollars."""

    request_id: str
    workspace_id: str
    key_id: str | None
    cost_micros: int


def new_entry_id() -> str:
    """A ledger entry id (ordered by time, see ``ordered_id``)."""
    return ordered_id("led_")


class WalletRepository:
    """Balances, top-ups, the ledger, and usage written together with its charges."""

    def __init__(self, engine: AsyncEngine, writes: Transactions | None = None) -> None:
        """``writes``: where the transactions run (``store.database.Transactions``), shared
        with the other repositories the usage writer uses; its own otherwise."""
        self._engine = engine
        self._settle = BulkUpsert(engine, usage_records, "request_id")
        self._writes = writes or Transactions(engine)
        self._balances = select(wallets.c.workspace_id, wallets.c.balance_micros)
        self._caps = (
            select(api_keys.c.id, api_keys.c.usd_cap_micros, key_spend.c.spent_micros)
            .select_from(api_keys.outerjoin(key_spend, key_spend.c.key_id == api_keys.c.id))
            .where(api_keys.c.usd_cap_micros.is_not(None), api_keys.c.status == "active")
        )
        self._ledger = BulkUpsert(engine, ledger_entries, "request_id", ignore=True)
        spend = dialect_insert(engine, key_spend)
        self._spend = Prepared(
            engine.dialect,
            spend.on_conflict_do_update(
                index_elements=["key_id"],
                set_={"spent_micros": key_spend.c.spent_micros + spend.excluded.spent_micros},
            ),
        )
        self._move_wallet = Prepared(
            engine.dialect,
            update(wallets)
            .where(wallets.c.workspace_id == bindparam("workspace_id"))
            .values(
                balance_micros=wallets.c.balance_micros + bindparam("amount"),
                updated_at=bindparam("now"),
            )
            .returning(wallets.c.balance_micros),
        )

    async def balances(self) -> dict[str, int]:
        """Every wallet's balance by workspace id (polled every second, where the writes run)."""
        query = self._balances
        return await self._writes.run(
            lambda conn: {row.workspace_id: int(row.balance_micros) for row in conn.execute(query)}
        )

    async def caps(self) -> dict[str, tuple[int, int]]:
        """(cap, lifetime spend) of every active key that has a USD cap (polled every second)."""
        query = self._caps
        return await self._writes.run(
            lambda conn: {
                row.id: (int(row.usd_cap_micros), int(row.spent_micros or 0))
                for row in conn.execute(query)
            }
        )

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
        opening = insert_ignoring_conflicts(self._engine, wallets, "workspace_id").values(
            workspace_id=workspace_id, balance_micros=0, updated_at=now
        )

        def top_up(conn: Connection) -> int:
            conn.execute(opening)
            balance = self._move(conn, workspace_id, amount_micros, now)
            assert balance is not None
            conn.execute(
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

        return await self._writes.run(top_up)

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

    async def write_usage(
        self,
        rows: Sequence[dict[str, Any]],
        charges: Sequence[Charge],
        release_holds: Sequence[str] = (),
    ) -> None:
        """Usage records and their charges, in one transaction, each at most once.

        ``release_holds``: request ids whose budget holds (``budget_holds``, kept by
        ``metering.database_budgets``) are deleted in the same transaction, so a charge moves
        from its hold into the balance at once and is never counted twice (nor missed).
        """
        if not rows and not charges and not release_holds:
            return
        now = utcnow()

        def write(conn: Connection) -> None:
            if rows:
                self._settle.execute(conn, rows)
            if charges:
                self._charge(conn, charges, now)
            if release_holds:
                conn.execute(
                    delete(budget_holds).where(budget_holds.c.request_id.in_(list(release_holds)))
                )

        await self._writes.run(write)

    async def close(self) -> None:
        """Release what the writes hold (on SQLite, a connection and its thread)."""
        await self._writes.close()

    def _charge(self, conn: Connection, charges: Sequence[Charge], now: Any) -> None:
        """Charge a batch in a constant number of statements: each wallet once by the sum of
        its charges, then the ledger rows with their running balances (keyed by request id, so
        a charge already written is left alone), then each key's spend by the sum of its new
        charges. A batch written again (recovery after a crash) gives its wallets back what the
        ledger already had, and sets the new entries' running balances again."""
        first: dict[str, Charge] = {}  # a request twice in one batch is charged once
        for charge in charges:
            first.setdefault(charge.request_id, charge)
        by_workspace: dict[str, list[Charge]] = {}
        for charge in first.values():
            by_workspace.setdefault(charge.workspace_id, []).append(charge)
        # Sorted: two replicas' batches lock the same rows in the same order, never a deadlock.
        balances = {
            workspace_id: self._move(conn, workspace_id, -_total(by_workspace[workspace_id]), now)
            for workspace_id in sorted(by_workspace)
        }
        entries = [
            {
                "id": new_entry_id(),
                "workspace_id": workspace_id,
                "created_at": now,
                "kind": "charge",
                "amount_micros": -charge.cost_micros,
                "balance_after_micros": after,
                "request_id": charge.request_id,
                "key_id": charge.key_id,
                "actor": None,
                "note": None,
            }
            for workspace_id, batch in by_workspace.items()
            for charge, after in zip(batch, _running(batch, balances[workspace_id]), strict=True)
        ]
        new = set(self._ledger.execute(conn, entries))
        if len(new) < len(first):  # charged before: give it back, and renumber the new ones
            for workspace_id in sorted(by_workspace):
                batch = by_workspace[workspace_id]
                fresh = [charge for charge in batch if charge.request_id in new]
                if len(fresh) == len(batch):
                    continue
                old = _total(batch) - _total(fresh)
                balance = self._move(conn, workspace_id, old, now)
                if balance is not None and fresh:
                    conn.execute(_running_balances(fresh, balance))
        spent: dict[str, int] = {}
        for charge in first.values():
            if charge.key_id is not None and charge.request_id in new:
                spent[charge.key_id] = spent.get(charge.key_id, 0) + charge.cost_micros
        if spent:
            rows = [{"key_id": key, "spent_micros": spent[key]} for key in sorted(spent)]
            self._spend.execute_many(conn, rows)

    def _move(self, conn: Connection, workspace_id: str, amount: int, now: Any) -> int | None:
        """Change a wallet's balance atomically; the new balance, or None without a wallet."""
        row = self._move_wallet.execute(
            conn, {"workspace_id": workspace_id, "amount": amount, "now": now}
        ).first()
        return int(row[0]) if row is not None else None


def _total(batch: Sequence[Charge]) -> int:
    return sum(charge.cost_micros for charge in batch)


def _running(batch: Sequence[Charge], balance: int | None) -> list[int | None]:
    """Each entry's balance after it, in batch order, ending at ``balance`` (None without a
    wallet)."""
    if balance is None:
        return [None] * len(batch)
    running = balance + _total(batch)
    after: list[int | None] = []
    for charge in batch:
        running -= charge.cost_micros
        after.append(running)
    return after


def _running_balances(batch: Sequence[Charge], balance: int) -> Any:
    """Set each entry's balance after it, in batch order, ending at ``balance``."""
    after = {c.request_id: a for c, a in zip(batch, _running(batch, balance), strict=True)}
    return (
        update(ledger_entries)
        .where(ledger_entries.c.request_id.in_(list(after)))
        .values(balance_after_micros=case(after, value=ledger_entries.c.request_id))
    )


# --- budget holds --------------------------------------------------------------------------

HOLD_OPEN = "open"  # the request's worst case, until it settles
HOLD_SETTLED = "settled"  # the actual cost, until the charge is committed
HOLD_GONE = "gone"  # a change only: delete the hold


@dataclass(frozen=True, slots=True)
class Room:
    """What a workspace's wallet and a key's cap can still hold, in micro-dollars: the wallet
    balance, and the cap less lifetime spend, each less every other live hold. None: there is no
    wallet (the workspace is not metered in money), or the key has no cap."""

    wallet: int | None
    cap: int | None

    def fits(self, amount: int) -> bool:
        """Whether ``amount`` fits both (and there is something to hold it against)."""
        if self.wallet is None and self.cap is None:
            return False
        return (self.wallet is None or self.wallet >= amount) and (
            self.cap is None or self.cap >= amount
        )


@dataclass(frozen=True, slots=True)
class HoldAsk:
    """A request asking to hold ``amount`` on its workspace's wallet and its key's cap."""

    request_id: str
    workspace_id: str
    key_id: str
    amount: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class HoldChange:
    """A change to one hold: settle it at a cost (``HOLD_SETTLED``), delete it (``HOLD_GONE``),
    or, with ``insert``, store a hold decided without the database (it may not exist yet)."""

    request_id: str
    state: str
    amount_micros: int = 0
    expires_at: datetime | None = None
    insert: bool = False
    workspace_id: str | None = None
    key_id: str | None = None


class HoldRepository:
    """Budget holds every process sees (``budget_holds``), decided one transaction at a time
    per workspace.

    ``hold_many`` decides a batch of asks in one transaction that serializes with every other
    decision on the same wallets and caps. PostgreSQL: a transaction-scoped advisory lock on a
    hash of each workspace id (in sorted order, so two batches never deadlock), each in its own
    statement before the read, so that the read (READ COMMITTED, the default) sees every hold
    committed before the lock was granted; a key belongs to one workspace, so its cap is
    serialized too, and no row lock is taken that could deadlock with the usage writer. SQLite:
    ``BEGIN IMMEDIATE`` takes the database's write lock before the read.

    Every transaction runs whole in one hand-off (``Transactions``; on a SQLite file, on a
    thread and connection of the holds' own). Through the async engine each statement was a
    round trip through the event loop with SQLite's write lock held, so under load every
    process's writes waited for the busiest loop: with ``--workers 2`` and capped keys, 1,640
    requests a second then, 2,400 to 3,100 now, against 5,500 without a cap. Rows go as
    multi-row statements, never as an ``executemany`` (see ``BulkUpsert``).

    The figures are read in one statement (one snapshot): a charge committed together with the
    deletion of its hold (``WalletRepository.write_usage(..., release_holds=...)``) is seen
    either as the hold or in the balance, never both nor neither.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        # Transactions of this process queue here rather than in SQLite's busy handler (which
        # sleeps milliseconds).
        self._serial = asyncio.Lock() if not self._postgres else None
        self._writes = Transactions(engine)
        self._insert = BulkUpsert(engine, budget_holds, "request_id", ignore=True)
        self._upsert = BulkUpsert(engine, budget_holds, "request_id")
        self._settle = _Settles()

    async def _run(self, work: Callable[[Connection], _T]) -> _T:
        if self._serial is None:
            return await self._writes.run(work)
        async with self._serial:
            return await self._writes.run(work)

    async def close(self) -> None:
        """Release the holds' own connection and thread."""
        await self._writes.close()

    async def hold_many(self, asks: Sequence[HoldAsk], now: datetime) -> list[Room]:
        """Decide ``asks`` in order, storing those that fit (``Room.fits``) and nothing else;
        for each, the room it found (every live hold counted but its own, and before it only
        the batch's asks that fit). A hold already stored under an ask's id is kept as it is.
        """
        workspaces = sorted({ask.workspace_id for ask in asks})
        params = {
            "workspaces": workspaces,
            "keys": sorted({ask.key_id for ask in asks}),
            "now": now,
            "batch": [ask.request_id for ask in asks],
        }

        def decide(conn: Connection) -> list[Room]:
            if self._postgres:
                for lock in sorted({_lock_id(workspace) for workspace in workspaces}):
                    conn.execute(_LOCK, {"lock": lock})
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            wallet_room, cap_room = _rooms(conn.execute(_ROOMS, params))
            rooms: list[Room] = []
            stored: list[dict[str, Any]] = []
            for ask in asks:
                room = Room(wallet_room.get(ask.workspace_id), cap_room.get(ask.key_id))
                rooms.append(room)
                if not room.fits(ask.amount):
                    continue
                if room.wallet is not None:
                    wallet_room[ask.workspace_id] = room.wallet - ask.amount
                if room.cap is not None:
                    cap_room[ask.key_id] = room.cap - ask.amount
                stored.append(
                    {
                        "request_id": ask.request_id,
                        "workspace_id": ask.workspace_id,  # both stored: a hold counts
                        "key_id": ask.key_id,  # wherever a wallet or a cap exists
                        "amount_micros": ask.amount,
                        "state": HOLD_OPEN,
                        "expires_at": ask.expires_at,
                    }
                )
            if stored:
                self._insert.execute(conn, stored)
            return rooms

        return await self._run(decide)

    async def room(self, workspace_id: str, key_id: str | None, now: datetime) -> Room:
        """What the wallet and the key's cap can hold now, across every process."""
        params = {
            "workspaces": [workspace_id],
            "keys": [key_id] if key_id is not None else [],
            "now": now,
            "batch": [],
        }
        async with self._engine.connect() as conn:
            wallet_room, cap_room = _rooms(await conn.execute(_ROOMS, params))
        return Room(wallet_room.get(workspace_id), cap_room.get(key_id or ""))

    async def apply(self, changes: Sequence[HoldChange]) -> None:
        """Apply settle, delete and insert changes in one transaction. A settle or a delete of a
        hold that is gone changes nothing (its charge was committed meanwhile)."""
        inserts = [
            {
                "request_id": c.request_id,
                "workspace_id": c.workspace_id,
                "key_id": c.key_id,
                "amount_micros": c.amount_micros,
                "state": c.state,
                "expires_at": c.expires_at,
            }
            for c in changes
            if c.insert and c.state != HOLD_GONE
        ]
        settles = [c for c in changes if not c.insert and c.state == HOLD_SETTLED]
        gone = [c.request_id for c in changes if c.state == HOLD_GONE]
        if not changes:
            return

        def write(conn: Connection) -> None:
            if inserts:
                self._upsert.execute(conn, inserts)
            if settles:
                self._settle.execute(conn, settles)
            if gone:
                conn.execute(delete(budget_holds).where(budget_holds.c.request_id.in_(gone)))

        await self._run(write)

    async def purge(self, now: datetime) -> int:
        """Delete expired holds (they stopped counting at their expiry); how many."""
        statement = delete(budget_holds).where(budget_holds.c.expires_at <= now)
        return await self._run(lambda conn: int(conn.execute(statement).rowcount or 0))


class _Settles:
    """Settle holds (amount, state, expiry) by request id, up to ``PAGE`` in one ``UPDATE``
    whose values are chosen by ``CASE``: an ``executemany`` of a one-row ``UPDATE`` hands the
    GIL back and forth around every row. A page is padded to a power of two rows (its last
    row again), so only a few shapes are ever compiled."""

    PAGE = 64

    def __init__(self) -> None:
        self._statements: dict[int, Any] = {}

    def execute(self, conn: Connection, changes: Sequence[HoldChange]) -> None:
        """Settle ``changes`` (each ``HOLD_SETTLED``) in ``conn``'s transaction."""
        for start in range(0, len(changes), self.PAGE):
            page = list(changes[start : start + self.PAGE])
            size = 1 << (len(page) - 1).bit_length()
            page += [page[-1]] * (size - len(page))
            params: dict[str, Any] = {}
            for i, change in enumerate(page):
                params[f"r{i}"] = change.request_id
                params[f"a{i}"] = change.amount_micros
                params[f"e{i}"] = change.expires_at
            conn.execute(self._statement(size), params)

    def _statement(self, size: int) -> Any:
        statement = self._statements.get(size)
        if statement is None:
            column = budget_holds.c
            expiry = column.expires_at.type
            ids = [bindparam(f"r{i}", type_=column.request_id.type) for i in range(size)]
            statement = (
                update(budget_holds)
                .where(column.request_id.in_(ids))
                .values(
                    amount_micros=case(
                        *[
                            (column.request_id == r, bindparam(f"a{i}", type_=BigInteger))
                            for i, r in enumerate(ids)
                        ]
                    ),
                    state=HOLD_SETTLED,
                    expires_at=case(
                        *[
                            (column.request_id == r, bindparam(f"e{i}", type_=expiry))
                            for i, r in enumerate(ids)
                        ]
                    ),
                )
            )
            self._statements[size] = statement
        return statement


def _lock_id(workspace_id: str) -> int:
    """A stable signed 64-bit advisory lock key for the workspace's holds."""
    digest = hashlib.blake2b(b"orcarouter budget " + workspace_id.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _rooms_statement() -> Any:
    """One statement (one snapshot): a row per wallet (``w``: balance) and per capped key
    (``k``: cap, lifetime spend) asked for, each with the sum of its live holds outside the
    batch. Built once: only the parameters (``workspaces``, ``keys``, ``now``, ``batch``)
    change."""
    now = bindparam("now", type_=budget_holds.c.expires_at.type)
    batch = bindparam("batch", expanding=True, type_=String)

    def held(column: Any, holder: Any) -> Any:
        return (
            select(func.coalesce(func.sum(budget_holds.c.amount_micros), 0))
            .where(column == holder, budget_holds.c.expires_at > now)
            .where(budget_holds.c.request_id.not_in(batch))
            .scalar_subquery()
        )

    by_wallet = select(
        literal("w").label("kind"),
        wallets.c.workspace_id.label("holder"),
        wallets.c.balance_micros.label("figure"),
        literal(0, BigInteger).label("spent"),
        held(budget_holds.c.workspace_id, wallets.c.workspace_id).label("held"),
    ).where(wallets.c.workspace_id.in_(bindparam("workspaces", expanding=True, type_=String)))
    by_key = (
        select(
            literal("k"),
            api_keys.c.id,
            api_keys.c.usd_cap_micros,
            func.coalesce(key_spend.c.spent_micros, 0),
            held(budget_holds.c.key_id, api_keys.c.id),
        )
        .select_from(api_keys.outerjoin(key_spend, key_spend.c.key_id == api_keys.c.id))
        .where(api_keys.c.id.in_(bindparam("keys", expanding=True, type_=String)))
        .where(api_keys.c.usd_cap_micros.is_not(None))
    )
    return union_all(by_wallet, by_key)


def _rooms(rows: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Room by workspace (wallets) and by key (caps) from ``_ROOMS``' rows."""
    wallet_room: dict[str, int] = {}
    cap_room: dict[str, int] = {}
    for row in rows:
        room = int(row.figure) - int(row.spent) - int(row.held)
        (wallet_room if row.kind == "w" else cap_room)[row.holder] = room
    return wallet_room, cap_room


_ROOMS = _rooms_statement()
_LOCK = select(func.pg_advisory_xact_lock(bindparam("lock", type_=BigInteger)))
