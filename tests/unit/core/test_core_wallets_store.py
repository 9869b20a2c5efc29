"""Wallets, ledger and key spend on every backend: charges land once, with their usage."""

from __future__ import annotations

import asyncio
from typing import Any

from orcarouter.accounts.keys import issue_key
from orcarouter.metering.usage import UsageRecord
from orcarouter.store.ids import utcnow
from orcarouter.store.wallets import Charge, WalletRepository
from tests.unit.core.conftest import Store


def _row(request_id: str, workspace: str, key: str, cost: int) -> dict[str, Any]:
    record = UsageRecord(request_id, utcnow(), workspace, key, "openai.chat", False)
    record.cost_micros = cost
    record.status_code = 200
    return record.as_row()


async def _key(store: Store, workspace: str = "ws_default") -> str:
    await store.workspaces.ensure(workspace, "W")
    issued = await issue_key(store.keys, "k", workspace_id=workspace)
    return issued.row.id


async def test_top_ups_open_a_wallet_and_land_in_the_ledger(any_store: Store) -> None:
    repo = WalletRepository(any_store.engine)
    await any_store.workspaces.ensure("ws_a", "A")
    assert await repo.balance("ws_a") is None
    assert await repo.top_up("ws_a", 5_000_000, "admin", "first") == 5_000_000
    assert await repo.top_up("ws_a", -1_000_000, "admin", "refund") == 4_000_000
    assert await repo.balances() == {"ws_a": 4_000_000}
    entries = await repo.ledger("ws_a")
    assert [(e["kind"], e["amount_micros"], e["balance_after_micros"]) for e in entries] == [
        ("adjustment", -1_000_000, 4_000_000),
        ("topup", 5_000_000, 5_000_000),
    ]


async def test_charges_are_written_once_with_their_usage(any_store: Store) -> None:
    repo = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await repo.top_up("ws_default", 1_000_000, "admin")
    rows = [_row(f"req_{n}", "ws_default", key, 1_000 * (n + 1)) for n in range(3)]
    charges = [Charge(r["request_id"], "ws_default", key, r["cost_micros"]) for r in rows]
    await repo.write_usage(rows, charges)
    await repo.write_usage(rows, charges)  # the same batch again: nothing doubles
    assert await repo.balance("ws_default") == 1_000_000 - 6_000
    ledger = await repo.ledger("ws_default")
    charged = [e for e in ledger if e["kind"] == "charge"]
    assert sorted(-e["amount_micros"] for e in charged) == [1_000, 2_000, 3_000]
    recorded = [await any_store.usage.get(f"req_{n}") for n in range(3)]
    assert sum(-e["amount_micros"] for e in charged) == sum(
        r["cost_micros"] for r in recorded if r is not None
    )
    assert await repo.caps() == {}  # no cap on this key: spend is tracked all the same
    spent = any_store.execute(f"SELECT spent_micros FROM key_spend WHERE key_id = '{key}'")  # noqa: S608 (a generated id)
    assert spent == [(6_000,)]


async def test_charges_without_a_wallet_count_for_the_key_cap(any_store: Store) -> None:
    repo = WalletRepository(any_store.engine)
    key = await _key(any_store)
    any_store.execute(f"UPDATE api_keys SET usd_cap_micros = 50000 WHERE id = '{key}'")  # noqa: S608
    await repo.write_usage([], [Charge("req_x", "ws_default", key, 7_000)])
    assert await repo.caps() == {key: (50_000, 7_000)}
    (entry,) = await repo.ledger("ws_default")
    assert entry["balance_after_micros"] is None  # no wallet: only the cap moved


async def test_concurrent_charges_all_land(any_store: Store) -> None:
    repo = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await repo.top_up("ws_default", 100_000, "admin")
    batches = [
        [Charge(f"req_{b}_{n}", "ws_default", key, 100) for n in range(10)] for b in range(5)
    ]
    for batch in batches:  # SQLite serializes writers; PostgreSQL takes them in parallel
        await repo.write_usage([], batch)
    await asyncio.gather(
        *(repo.write_usage([], [Charge(f"req_p{n}", "ws_default", key, 100)]) for n in range(5))
    )
    assert await repo.balance("ws_default") == 100_000 - 55 * 100


async def test_a_batch_charges_each_wallet_once_with_running_balances(any_store: Store) -> None:
    repo = WalletRepository(any_store.engine)
    key_a, key_b = await _key(any_store, "ws_a"), await _key(any_store, "ws_b")
    await repo.top_up("ws_a", 10_000, "admin")
    await repo.write_usage([], [Charge("req_old", "ws_a", key_a, 500)])
    batch = [
        Charge("req_1", "ws_a", key_a, 1_000),
        Charge("req_2", "ws_b", key_b, 2_000),  # no wallet: only its key's spend moves
        Charge("req_old", "ws_a", key_a, 500),  # charged already: skipped
        Charge("req_3", "ws_a", key_a, 3_000),
    ]
    await repo.write_usage([], batch)
    assert await repo.balance("ws_a") == 10_000 - 500 - 1_000 - 3_000
    charged = {
        e["request_id"]: (e["amount_micros"], e["balance_after_micros"])
        for e in await repo.ledger("ws_a")
        if e["kind"] == "charge"
    }
    assert charged == {"req_old": (-500, 9_500), "req_1": (-1_000, 8_500), "req_3": (-3_000, 5_500)}
    (entry,) = await repo.ledger("ws_b")
    assert (entry["request_id"], entry["balance_after_micros"]) == ("req_2", None)
    spent = {
        row[0]: row[1] for row in any_store.execute("SELECT key_id, spent_micros FROM key_spend")
    }
    assert spent == {key_a: 4_500, key_b: 2_000}


async def test_a_request_twice_in_one_batch_is_charged_once(any_store: Store) -> None:
    repo = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await repo.top_up("ws_default", 10_000, "admin")
    twice = Charge("req_1", "ws_default", key, 1_000)
    await repo.write_usage([], [twice, Charge("req_2", "ws_default", key, 2_000), twice])
    assert await repo.balance("ws_default") == 7_000
    charged = [e for e in await repo.ledger("ws_default") if e["kind"] == "charge"]
    assert sorted(e["balance_after_micros"] for e in charged) == [7_000, 9_000]
    spent = any_store.execute(f"SELECT spent_micros FROM key_spend WHERE key_id = '{key}'")  # noqa: S608 (a generated id)
    assert spent == [(3_000,)]


async def test_a_large_batch_is_written_whole_with_some_of_it_charged_before(
    any_store: Store,
) -> None:
    repo = WalletRepository(any_store.engine)
    key = await _key(any_store)
    await repo.top_up("ws_default", 1_000_000, "admin")
    charges = [Charge(f"req_{n:03d}", "ws_default", key, n + 1) for n in range(100)]
    rows = [_row(c.request_id, c.workspace_id, key, c.cost_micros) for c in charges]
    before = charges[10:30:3]  # written by an earlier batch (a crash before its commit mark)
    await repo.write_usage([], before)
    await repo.write_usage(rows, charges)  # 100 rows: several statements on SQLite
    total = sum(c.cost_micros for c in charges)
    assert await repo.balance("ws_default") == 1_000_000 - total
    ledger = [e for e in await repo.ledger("ws_default", 1000) if e["kind"] == "charge"]
    assert len(ledger) == 100
    # The new entries' running balances count down, in batch order, to the final balance.
    fresh = [c for c in charges if c not in before]
    after = {e["request_id"]: e["balance_after_micros"] for e in ledger}
    expected, running = {}, 1_000_000 - total + sum(c.cost_micros for c in fresh)
    for charge in fresh:
        running -= charge.cost_micros
        expected[charge.request_id] = running
    assert {r: after[r] for r in expected} == expected
    stored = any_store.execute("SELECT count(*) FROM usage_records")
    assert stored == [(100,)]
    spent = any_store.execute(f"SELECT spent_micros FROM key_spend WHERE key_id = '{key}'")  # noqa: S608 (a generated id)
    assert spent == [(total,)]
