"""Budgets shared through Redis: replicas never overspend together, charges count exactly once
after a read, dead replicas' holds expire, and an outage falls back per process, visibly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from orcarouter.accounts.keys import issue_key
from orcarouter.metering.shared_budgets import SharedBudgets
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.wallet import (
    BALANCE_TOO_LOW,
    CAP_REACHED,
    BudgetBook,
    Budgets,
    InsufficientFunds,
    Reservation,
)
from orcarouter.observability.metrics import Metrics
from orcarouter.state.redis import SharedStore
from orcarouter.store.ids import utcnow
from orcarouter.store.wallets import Charge, WalletRepository
from tests.support.gate import Gate
from tests.support.services import RedisSpace
from tests.support.tcp_proxy import TcpProxy
from tests.unit.core.conftest import Store

WS = "ws_shared"

Replicas = Callable[..., SharedBudgets]


@pytest.fixture
async def replica(redis_space: RedisSpace) -> AsyncIterator[Replicas]:
    """Makes gateway replicas' budgets over the test's Redis space (or another URL)."""
    stores: list[SharedStore] = []

    def make(url: str | None = None, **options: Any) -> SharedBudgets:
        metrics = Metrics()
        store = SharedStore(
            url or redis_space.url,
            prefix=redis_space.prefix,
            metrics=metrics,
            retry_interval=0.05,
            timeout=5.0,  # a burst of new connections on a busy test machine
        )
        stores.append(store)
        return SharedBudgets(store, metrics, **options)

    yield make
    for store in stores:
        await store.close()


async def _key(store: Store, cap: int | None = None) -> str:
    await store.workspaces.ensure(WS, "Shared")
    issued = await issue_key(store.keys, "k", workspace_id=WS)
    if cap is not None:
        store.execute(f"UPDATE api_keys SET usd_cap_micros = {cap} WHERE id = '{issued.row.id}'")  # noqa: S608 (a generated id)
    return issued.row.id


async def _commit(
    wallets: WalletRepository,
    budgets: SharedBudgets,
    reservation: Reservation,
    key: str,
    cost: int,
) -> None:
    """What the usage writer does: the record and its charge in one transaction, then tell."""
    record = UsageRecord(reservation.request_id, utcnow(), WS, key, "openai.chat", False)
    record.cost_micros = cost
    record.status_code = 200
    charge = Charge(record.request_id, WS, key, cost)
    await wallets.write_usage([record.as_row()], [charge])
    held = (reservation.workspace_id is not None, reservation.key_id is not None)
    budgets.written(WS, key, cost, held, request_id=record.request_id)


async def _holds(
    budgets: list[SharedBudgets], count: int, amount: int, key: str, ttl: float = 60.0
) -> list[Reservation]:
    """``count`` concurrent holds spread over the replicas; the ones that succeeded."""

    async def one(n: int) -> Reservation | None:
        try:
            return await budgets[n % len(budgets)].hold(f"req_{n}", WS, key, amount, ttl)
        except InsufficientFunds:
            return None

    results = await asyncio.gather(*(one(n) for n in range(count)))
    return [r for r in results if r is not None]


def _degraded(budgets: SharedBudgets, reason: str) -> float:
    value = budgets._metrics.registry.get_sample_value(
        "orcarouter_degraded_decisions_total", {"component": "budget", "reason": reason}
    )
    return value or 0.0


async def test_two_replicas_never_hold_more_than_the_wallet(
    any_store: Store, replica: Replicas
) -> None:
    wallets = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await wallets.top_up(WS, 57_500, "admin")
    a, b = replica(), replica()
    await a.refresh(wallets)
    await b.refresh(wallets)

    held = await _holds([a, b], 200, 1_000, key)
    assert len(held) == 57  # exactly what fits, whichever replica asked
    assert {r.shared for r in held} == {True}
    assert await a.shared_available(WS) == 500
    assert _degraded(a, "redis unavailable") == _degraded(b, "redis unavailable") == 0

    owner = {r.request_id: (a if int(r.request_id[4:]) % 2 == 0 else b) for r in held}
    for r in held:
        owner[r.request_id].settle(r, 600)  # each cost less than it held
    await a.flush()
    await b.flush()
    assert await b.shared_available(WS) == 57_500 - 57 * 600  # settled, not yet written

    for r in held:
        await _commit(wallets, owner[r.request_id], r, key, 600)
    await a.flush()
    await b.flush()
    balance = await wallets.balance(WS)
    assert balance == 57_500 - 57 * 600 >= 0
    assert await b.shared_available(WS) == balance  # old figures, the commits still counted
    await a.refresh(wallets)
    await b.refresh(wallets)
    assert await a.shared_available(WS) == await b.shared_available(WS) == balance

    assert balance is not None
    with pytest.raises(InsufficientFunds) as refused:
        await a.hold("req_big", WS, key, balance + 1)
    assert refused.value.reason == BALANCE_TOO_LOW
    assert refused.value.available == balance
    last = await b.hold("req_last", WS, key, balance)  # the freed money, on the other replica
    assert last.shared and last.workspace_id == WS and last.key_id is None


async def test_key_caps_are_shared_and_exact(sqlite_store: Store, replica: Replicas) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store, cap=10_000)
    a, b = replica(), replica()
    await a.refresh(wallets)
    await b.refresh(wallets)
    assert a.metered(WS, key) and not a.has_wallet(WS)

    held = await _holds([a, b], 50, 300, key)
    assert len(held) == 33
    assert {(r.workspace_id, r.key_id) for r in held} == {(None, key)}
    for n, r in enumerate(held):
        budgets = (a, b)[n % 2]
        budgets.settle(r, 200)
        await _commit(wallets, budgets, r, key, 200)
    await a.flush()
    await b.flush()
    assert await wallets.caps() == {key: (10_000, 33 * 200)}
    await b.refresh(wallets)
    with pytest.raises(InsufficientFunds) as refused:
        await b.hold("req_over", WS, key, 10_000 - 6_600 + 1)
    assert (refused.value.reason, refused.value.available) == (CAP_REACHED, 3_400)
    await a.hold("req_rest", WS, key, 3_400)  # a's figures are older: still exact


async def test_a_hold_takes_the_wallet_and_the_cap_together_or_neither(
    sqlite_store: Store, replica: Replicas
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store, cap=5_000)
    await wallets.top_up(WS, 100_000, "admin")
    a = replica()
    await a.refresh(wallets)
    with pytest.raises(InsufficientFunds) as refused:
        await a.hold("req_a", WS, key, 6_000)
    assert refused.value.reason == CAP_REACHED
    assert await a.shared_available(WS) == 100_000  # the wallet was not touched
    both = await a.hold("req_b", WS, key, 5_000)
    assert (both.workspace_id, both.key_id) == (WS, key)
    assert await a.shared_available(WS) == 95_000
    a.settle(both, 0)  # free: the holds go, nothing is charged
    await a.flush()
    assert await a.shared_available(WS) == 100_000
    await a.hold("req_c", WS, key, 5_000)


async def test_a_charge_counts_twice_at_most_until_the_next_read(
    sqlite_store: Store, replica: Replicas
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store)
    await wallets.top_up(WS, 10_000, "admin")
    a, b = replica(), replica()
    await a.refresh(wallets)
    await b.refresh(wallets)
    hold = await a.hold("req_1", WS, key, 4_000)
    a.settle(hold, 3_000)
    await a.flush()
    record = UsageRecord("req_1", utcnow(), WS, key, "openai.chat", False)
    record.cost_micros = 3_000
    await wallets.write_usage([record.as_row()], [Charge("req_1", WS, key, 3_000)])
    # Committed, but the mark has not reached Redis: a read now sees the charge in the balance
    # and as unwritten, so it counts twice (too little is available, never too much) ...
    await b.refresh(wallets)
    assert await b.shared_available(WS) == 4_000
    a.written(WS, key, 3_000, (True, False), request_id="req_1")
    await a.flush()
    assert await b.shared_available(WS) == 4_000  # marked after that read: still counted
    await b.refresh(wallets)  # ... until the next read, which began after the mark
    assert await b.shared_available(WS) == 7_000 == await wallets.balance(WS)


async def test_a_dead_replicas_holds_expire(sqlite_store: Store, replica: Replicas) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store)
    await wallets.top_up(WS, 5_000, "admin")
    dead, alive = replica(), replica()
    await dead.refresh(wallets)
    await alive.refresh(wallets)
    await dead.hold("req_lost", WS, key, 5_000, ttl=0.3)  # and the replica never comes back
    with pytest.raises(InsufficientFunds):
        await alive.hold("req_1", WS, key, 1)
    await asyncio.sleep(0.4)
    await alive.hold("req_2", WS, key, 5_000)


async def test_committed_charges_linger_and_old_figures_are_not_used(
    sqlite_store: Store, replica: Replicas, redis_space: RedisSpace
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store)
    await wallets.top_up(WS, 10_000, "admin")
    a, b = replica(linger=0.5), replica(linger=0.5)
    await a.refresh(wallets)
    await b.refresh(wallets)
    hold = await a.hold("req_1", WS, key, 2_000)
    a.settle(hold, 2_000)
    await _commit(wallets, a, hold, key, 2_000)
    await a.flush()
    done = f"{redis_space.prefix}budget:w:d:{WS}"
    with redis.Redis.from_url(redis_space.url) as client:
        assert client.zcard(done) == 1
    assert await b.shared_available(WS) == 8_000  # b's figures predate the charge

    await asyncio.sleep(0.6)  # b's figures are now older than the linger: not used
    assert await b.shared_available(WS) == 10_000  # (its local view: reads were missed)
    local = await b.hold("req_2", WS, key, 1_000)
    assert not local.shared and _degraded(b, "stale figures") == 1
    b.settle(local, 0)

    await a.refresh(wallets)
    await b.refresh(wallets)
    shared = await b.hold("req_3", WS, key, 8_000)  # exact again, the committed entry gone
    assert shared.shared and _degraded(b, "stale figures") == 1
    with redis.Redis.from_url(redis_space.url) as client:
        assert client.zcard(done) == 0
        holders = [k for k in client.keys(redis_space.prefix + "*") if b":h:" in k]
        assert holders and all(client.pttl(k) > 0 for k in holders)  # nothing kept for ever


async def test_without_redis_each_replica_decides_alone_and_says_so(
    sqlite_store: Store, replica: Replicas
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store, cap=100_000)
    await wallets.top_up(WS, 10_000, "admin")
    budgets = replica("redis://127.0.0.1:1/0")
    await budgets.refresh(wallets)  # the database answers; only the local figures load
    assert budgets.metered(WS, key) and budgets.has_wallet(WS)
    held = [await budgets.hold(f"req_{n}", WS, key, 3_000) for n in range(3)]
    with pytest.raises(InsufficientFunds) as refused:
        await budgets.hold("req_x", WS, key, 3_000)
    assert (refused.value.reason, refused.value.available) == (BALANCE_TOO_LOW, 1_000)
    assert _degraded(budgets, "redis unavailable") == 4  # one per decision
    assert {r.shared for r in held} == {False}
    budgets.settle(held[0], 1_000)
    await _commit(wallets, budgets, held[0], key, 1_000)
    assert budgets.available(WS) == 10_000 - 1_000 - 6_000
    await budgets.refresh(wallets)
    assert await wallets.balance(WS) == 9_000
    assert budgets.available(WS) == 9_000 - 6_000  # the two holds still open
    assert budgets.pending > 0
    await budgets.close(grace=0.1)  # gives up, saying so
    assert budgets.pending > 0


async def test_recovery_sends_the_local_holds_then_decides_shared_again(
    sqlite_store: Store, replica: Replicas, redis_space: RedisSpace
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store)
    await wallets.top_up(WS, 10_000, "admin")
    with TcpProxy.for_url(redis_space.url) as proxy:
        a, b = replica(proxy.url_for(redis_space.url)), replica()
        sender = asyncio.create_task(a.run())
        try:
            await a.refresh(wallets)
            await b.refresh(wallets)
            before = await a.hold("req_0", WS, key, 1_000)
            proxy.cut()
            local = await a.hold("req_1", WS, key, 4_000)
            assert not local.shared and _degraded(a, "redis unavailable") == 1
            a.settle(before, 1_000)  # queued while Redis is away
            assert a.available(WS) == 10_000 - 1_000 - 4_000  # the local view counts both
            await asyncio.sleep(0.2)
            assert a.pending > 0

            proxy.restore()
            await asyncio.sleep(0.06)  # past the retry interval
            await a.refresh(wallets)
            shared = await a.hold("req_2", WS, key, 500)
            assert shared.shared and _degraded(a, "redis unavailable") == 1
            assert await b.shared_available(WS) == 10_000 - 1_000 - 4_000 - 500
            for _ in range(100):
                if a.pending == 0:
                    break
                await asyncio.sleep(0.02)
            assert a.pending == 0  # the background task sent the rest
        finally:
            sender.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sender
            await a.close(grace=0.5)


async def test_changes_being_sent_are_pending_until_redis_takes_them(
    sqlite_store: Store, replica: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store)
    await wallets.top_up(WS, 10_000, "admin")
    budgets = replica()
    await budgets.refresh(wallets)
    budgets.settle(await budgets.hold("req_1", WS, key, 1_000), 600)
    queued = budgets.pending
    assert queued > 0

    sending = Gate(monkeypatch, budgets._store, "run_script")
    flushing = asyncio.create_task(budgets.flush())
    await sending.entered.wait()
    assert budgets.pending == queued  # out of the queue, not yet in Redis
    sending.release()
    await flushing
    assert budgets.pending == 0
    await budgets.close(grace=0.5)


def _either(shared: SharedBudgets, local: Budgets) -> list[BudgetBook]:
    return [shared, local]  # mypy checks that both have the interface the app uses


async def test_the_local_budgets_share_the_interface(sqlite_store: Store) -> None:
    wallets = WalletRepository(sqlite_store.engine)
    key = await _key(sqlite_store, cap=3_000)
    await wallets.top_up(WS, 10_000, "admin")
    budgets = Budgets()
    await budgets.refresh(wallets)
    assert budgets.metered(WS, key) and budgets.has_cap(key)
    hold = await budgets.hold("req_1", WS, key, 2_000)
    assert not hold.shared
    with pytest.raises(InsufficientFunds):
        await budgets.hold("req_2", WS, key, 1_001)
    budgets.settle(hold, 1_500)
    await wallets.write_usage([], [Charge("req_1", WS, key, 1_500)])
    budgets.written(WS, key, 1_500, (True, True), request_id="req_1")
    await budgets.refresh(wallets)
    assert budgets.available(WS) == 8_500
    await budgets.hold("req_3", WS, key, 1_500)
