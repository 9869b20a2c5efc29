"""Budgets exact across processes through the database (no Redis): two processes never hold
more than a wallet or a cap has, charges land exactly, dead processes' holds expire, queued
changes drain, and a database outage falls back per process, visibly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.keys import issue_key
from orcarouter.metering.database_budgets import DatabaseBudgets
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.wallet import (
    BALANCE_TOO_LOW,
    CAP_REACHED,
    BudgetBook,
    InsufficientFunds,
    Reservation,
)
from orcarouter.observability.metrics import Metrics
from orcarouter.store.database import create_engine_for
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import as_utc
from orcarouter.store.schema import budget_holds
from orcarouter.store.wallets import (
    HOLD_GONE,
    HOLD_OPEN,
    HOLD_SETTLED,
    Charge,
    HoldChange,
    HoldRepository,
    Room,
    WalletRepository,
)
from tests.support.gate import Gate
from tests.unit.core.conftest import Store

WS = "ws_db"

Processes = Callable[..., DatabaseBudgets]


@pytest.fixture
async def process(any_store: Store) -> AsyncIterator[Processes]:
    """Makes gateway processes' budgets: each on an engine (a connection pool) of its own."""
    engines: list[AsyncEngine] = []
    made: list[DatabaseBudgets] = []

    def make(**options: Any) -> DatabaseBudgets:
        engine = create_engine_for(any_store.url)
        engines.append(engine)
        made.append(DatabaseBudgets(engine, Metrics(), **options))
        return made[-1]

    yield make
    for budgets in made:
        await budgets.holds.close()
    for engine in engines:
        await engine.dispose()


async def _key(store: Store, cap: int | None = None) -> str:
    await store.workspaces.ensure(WS, "Database budgets")
    issued = await issue_key(store.keys, "k", workspace_id=WS)
    if cap is not None:
        store.execute(f"UPDATE api_keys SET usd_cap_micros = {cap} WHERE id = '{issued.row.id}'")  # noqa: S608 (a generated id)
    return issued.row.id


async def _commit(
    wallets: WalletRepository,
    budgets: DatabaseBudgets,
    reservation: Reservation,
    key: str,
    cost: int,
    *,
    release: bool = False,
) -> None:
    """What the usage writer does: the record and its charge in one transaction (with
    ``release``, the hold's deletion too), then tell the budgets."""
    record = UsageRecord(reservation.request_id, utcnow(), WS, key, "openai.chat", False)
    record.cost_micros = cost
    record.status_code = 200
    charge = Charge(record.request_id, WS, key, cost)
    holds = [record.request_id] if release else []
    await wallets.write_usage([record.as_row()], [charge], release_holds=holds)
    held = (reservation.workspace_id is not None, reservation.key_id is not None)
    budgets.written(WS, key, cost, held, request_id=record.request_id)


async def _holds(
    budgets: list[DatabaseBudgets], count: int, amount: int, key: str, clients: int = 0
) -> list[tuple[DatabaseBudgets, Reservation]]:
    """``count`` holds spread over the processes, all at once, or by ``clients`` concurrent
    clients each asking in turn (so that every process keeps deciding while the others do);
    the ones that succeeded."""

    async def one(n: int) -> tuple[DatabaseBudgets, Reservation] | None:
        owner = budgets[n % len(budgets)]
        try:
            return owner, await owner.hold(f"req_{n}", WS, key, amount)
        except InsufficientFunds as refused:
            assert refused.reason in (CAP_REACHED, BALANCE_TOO_LOW)
            return None

    async def client(first: int) -> list[tuple[DatabaseBudgets, Reservation] | None]:
        return [await one(n) for n in range(first, count, clients)]

    if clients:
        waves = await asyncio.gather(*(client(c) for c in range(clients)))
        results = [r for wave in waves for r in wave]
    else:
        results = await asyncio.gather(*(one(n) for n in range(count)))
    return [r for r in results if r is not None]


def _degraded(budgets: DatabaseBudgets) -> float:
    value = budgets._metrics.registry.get_sample_value(
        "orcarouter_degraded_decisions_total",
        {"component": "budget", "reason": "database unavailable"},
    )
    return value or 0.0


def _holds_in(store: Store) -> dict[str, tuple[str, int]]:
    rows = store.execute("SELECT request_id, state, amount_micros FROM budget_holds")
    return {str(r[0]): (str(r[1]), int(str(r[2]))) for r in rows}


async def test_two_processes_never_hold_more_than_the_wallet(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 57_500, "admin")
    a, b = process(), process()
    await a.refresh(wallets)
    await b.refresh(wallets)

    held = await _holds([a, b], 200, 1_000, key, clients=20)
    assert len(held) == 57  # exactly what fits, whichever process asked
    assert {(r.workspace_id, r.key_id, r.shared) for _, r in held} == {(WS, None, True)}
    assert await a.shared_available(WS) == await b.shared_available(WS) == 500
    assert _degraded(a) == _degraded(b) == 0
    assert len(_holds_in(any_store)) == 57

    for owner, r in held:
        owner.settle(r, 600)  # each cost less than it held
    await a.flush()
    await b.flush()
    assert await b.shared_available(WS) == 57_500 - 57 * 600  # settled, not yet written
    assert {state for state, _ in _holds_in(any_store).values()} == {"settled"}

    for owner, r in held:
        await _commit(wallets, owner, r, key, 600)
    await a.flush()
    await b.flush()
    balance = await wallets.balance(WS)
    assert balance == 57_500 - 57 * 600 >= 0  # exact to the micro-dollar, never below zero
    assert _holds_in(any_store) == {}
    assert await a.shared_available(WS) == await b.shared_available(WS) == balance

    with pytest.raises(InsufficientFunds) as refused:
        await a.hold("req_big", WS, key, balance + 1)
    assert (refused.value.reason, refused.value.available) == (BALANCE_TOO_LOW, balance)
    last = await b.hold("req_last", WS, key, balance)  # the freed money, on the other process
    assert (last.workspace_id, last.key_id) == (WS, None)


async def test_two_processes_never_hold_more_than_a_key_cap(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store, cap=30_500)
    a, b = process(), process()
    await a.refresh(wallets)
    await b.refresh(wallets)
    assert a.metered(WS, key) and not a.has_wallet(WS)

    held = await _holds([a, b], 200, 1_000, key)
    assert len(held) == 30
    assert {(r.workspace_id, r.key_id) for _, r in held} == {(None, key)}
    with pytest.raises(InsufficientFunds) as refused:
        await b.hold("req_over", WS, key, 501)
    assert (refused.value.reason, refused.value.available) == (CAP_REACHED, 500)

    for owner, r in held:  # charged with the deletion of its hold, as one transaction
        owner.settle(r, 700)
        await _commit(wallets, owner, r, key, 700, release=True)
    assert _holds_in(any_store) == {}  # before any queued change was applied
    assert await wallets.caps() == {key: (30_500, 30 * 700)}
    room = 30_500 - 30 * 700
    with pytest.raises(InsufficientFunds) as refused:
        await a.hold("req_over_2", WS, key, room + 1)
    assert refused.value.available == room
    await b.hold("req_rest", WS, key, room)  # the freed money, exactly
    await a.close()
    await b.close()
    assert a.pending == b.pending == 0
    assert set(_holds_in(any_store)) == {"req_rest"}  # the late settles changed nothing


async def test_a_hold_takes_the_wallet_and_the_cap_together_or_neither(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store, cap=5_000)
    await wallets.top_up(WS, 100_000, "admin")
    a = process()
    await a.refresh(wallets)
    with pytest.raises(InsufficientFunds) as refused:
        await a.hold("req_a", WS, key, 6_000)
    assert refused.value.reason == CAP_REACHED
    assert await a.shared_available(WS) == 100_000  # the wallet was not touched
    assert _holds_in(any_store) == {}  # the refused hold was rolled back
    both = await a.hold("req_b", WS, key, 5_000)
    assert (both.workspace_id, both.key_id) == (WS, key)
    assert await a.holds.room(WS, key, utcnow()) == Room(95_000, 0)
    a.settle(both, 0)  # free: the hold goes, nothing is charged
    await a.flush()
    assert await a.holds.room(WS, key, utcnow()) == Room(100_000, 5_000)
    await a.hold("req_c", WS, key, 5_000)


async def test_a_charge_counts_twice_at_most_until_its_hold_is_deleted(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 10_000, "admin")
    a, b = process(), process()
    await a.refresh(wallets)
    hold = await a.hold("req_1", WS, key, 4_000)
    a.settle(hold, 3_000)
    await a.flush()
    record = UsageRecord("req_1", utcnow(), WS, key, "openai.chat", False)
    record.cost_micros = 3_000
    await wallets.write_usage([record.as_row()], [Charge("req_1", WS, key, 3_000)])
    # Committed, its hold still there: counted twice (too little available, never too much).
    assert await b.shared_available(WS) == 4_000
    a.written(WS, key, 3_000, (True, False), request_id="req_1")
    assert await b.shared_available(WS) == 4_000  # the deletion is queued
    await a.flush()
    assert await b.shared_available(WS) == 7_000 == await wallets.balance(WS)


async def test_a_dead_process_holds_stop_counting_at_their_expiry(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 5_000, "admin")
    later = timedelta(seconds=0)

    def clock() -> datetime:
        return utcnow() + later

    dead, alive = process(), process(now=clock)
    await dead.refresh(wallets)
    await dead.hold("req_lost", WS, key, 3_000, ttl=60)  # and the process never comes back
    settled = await dead.hold("req_settled", WS, key, 2_000, ttl=60)
    dead.settle(settled, 1_500)
    await dead.flush()
    with pytest.raises(InsufficientFunds) as refused:
        await alive.hold("req_1", WS, key, 1_000)
    assert refused.value.available == 500

    later = timedelta(seconds=61)  # the open hold expired; the settled one counts an hour
    assert await alive.shared_available(WS) == 3_500
    await alive.hold("req_2", WS, key, 3_500)
    assert await alive.purge() == 1
    assert set(_holds_in(any_store)) == {"req_settled", "req_2"}

    later = timedelta(hours=1, seconds=1)  # a charge never written stops counting too
    assert await alive.shared_available(WS) == 5_000
    assert await alive.purge() == 2
    assert _holds_in(any_store) == {}


async def test_close_drains_the_queue_and_run_applies_it(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 100_000, "admin")
    a = process(max_batch=7)
    await a.refresh(wallets)
    held = [await a.hold(f"req_{n}", WS, key, 1_000) for n in range(20)]
    for n, r in enumerate(held):
        a.settle(r, n)  # req_0 is free: its hold is deleted
    a.written(WS, key, 19, (True, False), request_id="req_19")
    a.settle(held[19], 19)  # late and repeated: never brings a deleted hold back
    assert a.pending == 20
    await a.close()
    assert a.pending == 0
    holds = _holds_in(any_store)
    assert holds == {f"req_{n}": ("settled", n) for n in range(1, 19)}

    sender = asyncio.create_task(a.run())
    try:
        for r in held[1:10]:
            a.written(WS, key, 0, (True, False), request_id=r.request_id)
        for _ in range(200):
            if a.pending == 0 and len(_holds_in(any_store)) == 9:
                break
            await asyncio.sleep(0.02)
        assert a.pending == 0 and set(_holds_in(any_store)) == {f"req_{n}" for n in range(10, 19)}
    finally:
        sender.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sender


async def test_settles_of_many_holds_each_get_their_own_figures(any_store: Store) -> None:
    """Settles go as multi-row statements (a page of up to 64, padded): each hold gets its own
    amount and expiry, across pages, and a hold already gone is not brought back."""
    await any_store.workspaces.ensure(WS, "Database budgets")
    holds = HoldRepository(any_store.engine)
    now = utcnow().replace(microsecond=0)
    count = 70  # a full page and a padded one
    try:
        await holds.apply(
            [
                HoldChange(f"req_{n}", HOLD_OPEN, 10_000, now + timedelta(hours=1), True, WS)
                for n in range(count)
            ]
        )
        await holds.apply([HoldChange("req_5", HOLD_GONE), HoldChange("req_66", HOLD_GONE)])
        await holds.apply(
            [
                HoldChange(f"req_{n}", HOLD_SETTLED, n * 3, now + timedelta(seconds=n))
                for n in range(count)
            ]
        )
    finally:
        await holds.close()
    async with any_store.engine.connect() as conn:
        rows = (await conn.execute(select(budget_holds))).all()
    found = {r.request_id: (r.state, r.amount_micros, as_utc(r.expires_at)) for r in rows}
    assert found == {
        f"req_{n}": (HOLD_SETTLED, n * 3, now + timedelta(seconds=n))
        for n in range(count)
        if n not in (5, 66)
    }


async def test_a_hold_its_request_gave_up_on_is_not_left_behind(
    any_store: Store, process: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 10_000, "admin")
    a = process()
    transaction = Gate(monkeypatch, a.holds, "hold_many")
    in_flight = asyncio.create_task(a.hold("req_in_flight", WS, key, 4_000))
    await transaction.entered.wait()  # its transaction is running
    waiting = asyncio.create_task(a.hold("req_waiting", WS, key, 4_000))
    await asyncio.sleep(0)
    assert [asked.ask.request_id for asked in a._asks] == ["req_waiting"]
    deciding = a._deciding
    assert deciding is not None
    for task in (waiting, in_flight):  # the requests go away (a client disconnected)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert a._asks == []  # the waiting ask is dropped, never decided
    transaction.release()
    await deciding  # the hold in flight is stored, then its deletion queued
    await a.flush()
    assert _holds_in(any_store) == {} and a.pending == 0
    assert await a.shared_available(WS) == 10_000


async def test_without_the_database_a_process_decides_alone_and_says_so(
    any_store: Store, process: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 10_000, "admin")
    elapsed = 0.0
    a, b = process(clock=lambda: 1_000.0 + elapsed), process()
    await a.refresh(wallets)
    asked = 0

    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        nonlocal asked
        asked += 1
        raise OperationalError("INSERT", {}, ConnectionRefusedError("database down"))

    with monkeypatch.context() as patch:
        patch.setattr(a.holds, "hold_many", unreachable)
        patch.setattr(a.holds, "apply", unreachable)
        local = await a.hold("req_local", WS, key, 6_000)
        assert not local.shared and local.workspace_id == WS and _degraded(a) == 1
        with pytest.raises(InsufficientFunds):  # the local view still counts its holds
            await a.hold("req_local_2", WS, key, 4_001)
        assert asked == 1  # for a second after a failure, holds do not wait for the database
        assert a.available(WS) == 4_000 and a.pending == 1

    other = await b.hold("req_other", WS, key, 6_000)  # b cannot see a's local hold
    assert other.shared
    elapsed = 1.0  # the database is asked again; a's local hold is stored before the
    with pytest.raises(InsufficientFunds) as refused:  # decision, so it counts there again
        await a.hold("req_back", WS, key, 1)
    assert refused.value.available == 10_000 - 6_000 - 6_000
    assert set(_holds_in(any_store)) == {"req_local", "req_other"}
    assert _degraded(a) == 2  # the refused local decision counted too; this one did not
    a.settle(local, 5_000)
    await a.flush()
    assert _holds_in(any_store)["req_local"] == ("settled", 5_000)


async def test_a_process_without_its_database_falls_back_and_gives_up_at_close(
    sqlite_store: Store,
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store)
    await wallets.top_up(WS, 10_000, "admin")
    gone = create_engine_for("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        budgets = DatabaseBudgets(gone, Metrics(), interval=0.01)
        await budgets.refresh(wallets)  # the figures come from the working database
        reservation = await budgets.hold("req_1", WS, key, 3_000)
        assert not reservation.shared and _degraded(budgets) == 1
        budgets.settle(reservation, 1_000)
        assert budgets.pending == 1
        await budgets.close(grace=0.1)  # gives up, saying so
        assert budgets.pending == 1
    finally:
        await gone.dispose()


def _book(budgets: DatabaseBudgets) -> BudgetBook:
    return budgets  # mypy checks that it has the interface the app uses


async def test_the_database_budgets_share_the_interface(
    any_store: Store, process: Processes
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store, cap=3_000)
    other = await _key(any_store)
    budgets = _book(process())
    assert not budgets.metered(WS, other)  # answered without the database
    await budgets.refresh(wallets)
    assert budgets.metered(WS, key) and not budgets.metered(WS, other)
    assert not budgets.has_wallet(WS) and budgets.available(WS) is None
    balance = await wallets.top_up(WS, 10_000, "admin")
    budgets.credit(WS, 10_000, balance)  # this process's top-up opens the wallet at once
    assert budgets.has_wallet(WS) and budgets.metered(WS, other)
    hold = await budgets.hold("req_1", WS, key, 2_000)
    assert budgets.available(WS) == 8_000  # this process's view
    assert budgets.expire() == []
    budgets.settle(hold, 1_000)
    budgets.settle(hold, 1_000)  # twice is harmless
    assert budgets.available(WS) == 9_000


async def test_a_recovered_charge_releases_the_hold_its_stopped_process_left(
    any_store: Store, process: Processes
) -> None:
    from orcarouter.metering.writer import UsageWriter

    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 10_000, "admin")
    stopped, survivor = process(), process()
    await stopped.refresh(wallets)
    hold = await stopped.hold("req_1", WS, key, 4_000)
    stopped.settle(hold, 3_000)
    await stopped.flush()  # then the process dies: its hold stays, settled at 3,000
    assert await survivor.shared_available(WS) == 7_000

    writer = UsageWriter(any_store.usage, any_store.keys, wallets=wallets)
    writer.release_holds = True
    record = UsageRecord("req_1", utcnow(), WS, key, "openai.chat", False)  # not held here
    record.cost_micros, record.status_code = 3_000, 200
    writer.submit(record)  # as recovery from the stopped process's journal does
    await writer.flush()
    assert await wallets.balance(WS) == 7_000
    assert await survivor.shared_available(WS) == 7_000  # charged once, its hold gone
