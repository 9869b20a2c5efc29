"""The batched usage writer against a real database: nothing lost, nothing written twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from orcarouter.accounts.keys import DEFAULT_WORKSPACE, issue_key
from orcarouter.canonical import Usage
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.writer import UsageWriter
from orcarouter.store.repositories import as_utc

if TYPE_CHECKING:
    from tests.unit.core.conftest import Store

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _record(n: int, *, key_id: str | None = None, at: datetime | None = None) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{n:04d}",
        created_at=at or T0 + timedelta(seconds=n),
        workspace_id=DEFAULT_WORKSPACE,
        key_id=key_id,
        endpoint="chat",
        stream=n % 2 == 0,
        model_requested="gpt-4o-mini",
        model_served="openai/gpt-4o-mini",
        upstream_model="gpt-4o-mini-2024-07-18",
        provider_id="openai",
        status_code=200,
        usage=Usage(
            input_tokens=100, output_tokens=10 + n, cache_read_tokens=n, reasoning_tokens=1
        ),
        latency_ms=300 + n,
        ttft_ms=40,
    )


def _break(store: Store) -> None:
    store.execute("ALTER TABLE usage_records RENAME TO usage_records_away")


def _repair(store: Store) -> None:
    store.execute("ALTER TABLE usage_records_away RENAME TO usage_records")


def _stored_ids(store: Store) -> list[str]:
    return sorted(str(row[0]) for row in store.execute("SELECT request_id FROM usage_records"))


async def _eventually(condition: Callable[[], bool]) -> None:
    """Poll the writer's state (it offers nothing to await) for up to ten seconds."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 10 s")


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Background tasks a test starts; cancelled at the end whatever happened."""
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_flush_writes_every_record_with_its_columns(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    for n in range(3):
        writer.submit(_record(n))
    assert writer.pending == 3
    await writer.flush()
    assert writer.pending == 0
    rows = await any_store.usage.all()
    assert [r["request_id"] for r in rows] == ["req_0000", "req_0001", "req_0002"]
    last = rows[-1]
    assert (last["prompt_tokens"], last["completion_tokens"], last["total_tokens"]) == (
        102,
        12,
        114,
    )
    assert (last["cache_read_tokens"], last["reasoning_tokens"]) == (2, 1)
    assert last["stream"] is True
    assert (last["latency_ms"], last["ttft_ms"]) == (302, 40)
    assert as_utc(last["created_at"]) == T0 + timedelta(seconds=2)


async def test_flush_writes_more_records_than_one_batch(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, max_batch=7)
    for n in range(30):
        writer.submit(_record(n))
    await writer.flush()
    assert writer.pending == 0
    assert _stored_ids(any_store) == [f"req_{n:04d}" for n in range(30)]


async def test_flush_with_nothing_queued_is_harmless(any_store: Store) -> None:
    await UsageWriter(any_store.usage, any_store.keys).flush()
    assert _stored_ids(any_store) == []


async def test_a_record_without_usage_is_stored_with_empty_token_columns(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    failed = UsageRecord("req_err", T0, None, None, "messages", False, status_code=502)
    writer.submit(failed)
    await writer.flush()
    row = await any_store.usage.get("req_err")
    assert row is not None
    assert row["total_tokens"] is None and row["prompt_tokens"] is None
    assert row["status_code"] == 502


async def test_a_record_submitted_twice_is_stored_once(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    writer.submit(_record(1))
    writer.submit(_record(1))  # same request id within one batch
    await writer.flush()
    writer.submit(_record(1))  # and again in a later batch
    writer.submit(_record(2))
    await writer.flush()
    assert writer.pending == 0
    assert _stored_ids(any_store) == ["req_0001", "req_0002"]


async def test_a_refused_batch_stays_queued_and_is_written_once_later(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, max_batch=4)
    writer.submit(_record(0))
    await writer.flush()
    for n in range(1, 11):
        writer.submit(_record(n))
    _break(any_store)
    with pytest.raises(DBAPIError):
        await writer.flush()
    assert writer.pending == 10
    with pytest.raises(DBAPIError):
        await writer.flush()
    assert writer.pending == 10
    _repair(any_store)
    await writer.flush()
    assert writer.pending == 0
    assert _stored_ids(any_store) == [f"req_{n:04d}" for n in range(11)]
    counts = any_store.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage_records")
    assert counts == [(11, 11)]


async def test_records_submitted_while_the_database_is_down_are_kept_in_order(
    any_store: Store,
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    writer.submit(_record(1))
    _break(any_store)
    with pytest.raises(DBAPIError):
        await writer.flush()
    writer.submit(_record(2))
    assert writer.pending == 2
    _repair(any_store)
    await writer.flush()
    assert _stored_ids(any_store) == ["req_0001", "req_0002"]


async def test_run_keeps_retrying_and_eventually_writes(
    any_store: Store, running: list[asyncio.Task[None]]
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01)
    _break(any_store)
    for n in range(5):
        writer.submit(_record(n))
    running.append(asyncio.create_task(writer.run()))
    await _eventually(lambda: writer.failures >= 2)
    assert writer.pending == 5
    _repair(any_store)
    await _eventually(lambda: writer.pending == 0)
    assert _stored_ids(any_store) == [f"req_{n:04d}" for n in range(5)]


async def test_run_writes_records_submitted_while_it_runs(
    any_store: Store, running: list[asyncio.Task[None]]
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01, max_batch=3)
    running.append(asyncio.create_task(writer.run()))
    for n in range(10):
        writer.submit(_record(n))
        await asyncio.sleep(0)
    await _eventually(lambda: writer.pending == 0)
    assert len(_stored_ids(any_store)) == 10
    assert writer.failures == 0


async def test_close_drains_the_queue(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, max_batch=2)
    for n in range(5):
        writer.submit(_record(n))
    await writer.close()
    assert writer.pending == 0
    assert len(_stored_ids(any_store)) == 5


async def test_close_waits_for_the_database_within_its_grace(any_store: Store) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    writer.submit(_record(7))
    _break(any_store)
    closing = asyncio.create_task(writer.close(grace=10.0))
    await asyncio.sleep(0.3)
    assert not closing.done()
    _repair(any_store)
    await asyncio.wait_for(closing, timeout=10.0)
    assert writer.pending == 0
    assert _stored_ids(any_store) == ["req_0007"]


async def test_close_gives_up_after_its_grace_without_dropping_the_queue(
    any_store: Store,
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    writer.submit(_record(1))
    writer.submit(_record(2))
    _break(any_store)
    await asyncio.wait_for(writer.close(grace=0.3), timeout=5.0)
    assert writer.pending == 2
    _repair(any_store)
    assert _stored_ids(any_store) == []


async def test_last_used_at_of_keys_is_updated(any_store: Store) -> None:
    await any_store.workspaces.ensure(DEFAULT_WORKSPACE, "Default")
    used = await issue_key(any_store.keys, "used")
    idle = await issue_key(any_store.keys, "idle")
    writer = UsageWriter(any_store.usage, any_store.keys)
    writer.submit(_record(1, key_id=used.row.id, at=T0))
    writer.submit(_record(2, key_id=used.row.id, at=T0 + timedelta(minutes=5)))
    writer.submit(_record(3, key_id=None))
    await writer.flush()
    by_id = {row.id: row for row in await any_store.keys.list()}
    assert by_id[used.row.id].last_used_at == T0 + timedelta(minutes=5)
    assert by_id[idle.row.id].last_used_at is None


async def test_a_busy_key_is_touched_once_a_second_at_most(any_store: Store) -> None:
    await any_store.workspaces.ensure(DEFAULT_WORKSPACE, "Default")
    key = await issue_key(any_store.keys, "busy")
    writer = UsageWriter(any_store.usage, any_store.keys)

    async def last_used_after(n: int, at: datetime) -> datetime | None:
        writer.submit(_record(n, key_id=key.row.id, at=at))
        await writer.flush()
        return {row.id: row for row in await any_store.keys.list()}[key.row.id].last_used_at

    assert await last_used_after(1, T0) == T0
    # Within the second: the stored time stands (one transaction a second for a busy key).
    assert await last_used_after(2, T0 + timedelta(milliseconds=400)) == T0
    assert await last_used_after(3, T0 + timedelta(milliseconds=999)) == T0
    assert await last_used_after(4, T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=1)
    assert await last_used_after(5, T0 + timedelta(minutes=3)) == T0 + timedelta(minutes=3)


async def test_a_failed_last_used_update_does_not_block_the_ledger(any_store: Store) -> None:
    await any_store.workspaces.ensure(DEFAULT_WORKSPACE, "Default")
    key = await issue_key(any_store.keys, "k")
    any_store.execute("ALTER TABLE api_keys RENAME TO api_keys_away")
    try:
        writer = UsageWriter(any_store.usage, any_store.keys)
        writer.submit(_record(1, key_id=key.row.id))
        await writer.flush()
        assert writer.pending == 0
        assert _stored_ids(any_store) == ["req_0001"]
    finally:
        any_store.execute("ALTER TABLE api_keys_away RENAME TO api_keys")


async def test_open_rows_share_a_commit_and_are_replaced_when_settled(
    any_store: Store, running: list[asyncio.Task[None]]
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01)
    running.append(asyncio.create_task(writer.run()))
    records = [_record(n) for n in range(5)]
    opened = await asyncio.gather(*(writer.open(r) for r in records))
    assert opened == [True] * 5
    rows = await any_store.usage.all()
    assert [r["outcome"] for r in rows] == ["open"] * 5
    for record in records:
        writer.submit(record)
    await _eventually(lambda: writer.pending == 0)
    rows = await any_store.usage.all()
    assert [r["outcome"] for r in rows] == ["ok"] * 5  # each open row replaced, none added
    assert rows[-1]["prompt_tokens"] == 104


async def test_an_open_the_database_refuses_does_not_stop_the_request(
    any_store: Store, running: list[asyncio.Task[None]]
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01)
    writer.open_timeout = 0.5
    running.append(asyncio.create_task(writer.run()))
    _break(any_store)
    try:
        assert await writer.open(_record(1)) is False
    finally:
        _repair(any_store)


async def test_the_sweep_settles_only_rows_older_than_the_cutoff(any_store: Store) -> None:
    old, fresh = _record(1, at=T0), _record(2, at=T0 + timedelta(minutes=20))
    await any_store.usage.insert_many(
        [{**old.as_row(), "outcome": "open"}, {**fresh.as_row(), "outcome": "open"}]
    )
    assert await any_store.usage.sweep_open(T0 + timedelta(minutes=10)) == 1
    rows = {r["request_id"]: r for r in await any_store.usage.all()}
    assert rows["req_0001"]["outcome"] == "interrupted"
    assert rows["req_0001"]["error_type"] == "gateway_stopped"
    assert rows["req_0002"]["outcome"] == "open"  # may still be in flight elsewhere


async def test_the_sweep_reads_the_open_rows_through_their_index(any_store: Store) -> None:
    """The sweep runs every minute: a scan of the whole table would hold SQLite's write lock
    for as long as the table is big. Its own statement, with its own parameters, explained."""
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith("UPDATE USAGE_RECORDS"):
            return
        if any_store.backend == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        else:  # the planner's choice on a table this small would be a scan anyway
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, parameters)
        plans.append(" ".join(str(part) for row in cursor.fetchall() for part in row))

    await any_store.usage.insert_many([{**_record(1, at=T0).as_row(), "outcome": "open"}])
    event.listen(Engine, "before_cursor_execute", explain)  # whichever engine runs it
    try:
        assert await any_store.usage.sweep_open(T0 + timedelta(minutes=10)) == 1
    finally:
        event.remove(Engine, "before_cursor_execute", explain)
    assert len(plans) == 1
    assert "ix_usage_records_open" in plans[0], plans[0]


async def test_open_rows_database_still_commits_open_rows_beside_the_journal(
    any_store: Store, running: list[asyncio.Task[None]], tmp_path: Path
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01)
    writer.use_journal(tmp_path, fsync="never", open_rows="database")
    running.append(asyncio.create_task(writer.run()))
    record = _record(1)
    assert await writer.open(record) is True
    assert [r["outcome"] for r in await any_store.usage.all()] == ["open"]
    assert writer.journal is not None and writer.journal.in_flight == 0  # not journaled
    writer.submit(record)
    await _eventually(lambda: writer.pending == 0)
    assert [r["outcome"] for r in await any_store.usage.all()] == ["ok"]


async def test_a_tick_leaves_records_that_arrive_during_its_write_for_the_next(
    any_store: Store,
) -> None:
    """At a steady trickle, batches stay whole: a write does not chase each new arrival with
    a transaction of its own (which at 200 req/s made hundreds of one-record commits)."""
    writer = UsageWriter(any_store.usage, any_store.keys, max_batch=10)
    written: list[int] = []
    write = writer._write

    async def write_and_trickle(records: list[UsageRecord]) -> None:
        written.append(len(records))
        await write(records)
        if len(written) < 6:  # bounded, so a writer that chases arrivals still ends
            writer.submit(_record(100 + len(written)))  # one arrives during each write

    writer._write = write_and_trickle  # type: ignore[method-assign]
    for n in range(3):
        writer.submit(_record(n))
    await writer.flush(whole_batches=True)
    assert (written, writer.pending) == ([3], 1)  # the newcomer waits for the next tick
    for n in range(3, 15):
        writer.submit(_record(n))
    await writer.flush(whole_batches=True)
    # 13 waited: a full batch goes at once; the 3 left and a newcomer wait for the next tick.
    assert (written, writer.pending) == ([3, 10], 4)
    writer._write = write  # type: ignore[method-assign]
    await writer.flush()  # a flush (shutdown, tests) still writes everything
    assert writer.pending == 0 and len(_stored_ids(any_store)) == 3 + 12 + 2
