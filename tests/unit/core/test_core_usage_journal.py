"""The usage journal: what a process appends survives its death and the database's absence,
recovery writes it exactly once, and a live process's segments are never touched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import pytest
from sqlalchemy.exc import DBAPIError

from orcarouter.accounts.keys import DEFAULT_WORKSPACE, issue_key
from orcarouter.canonical import Usage
from orcarouter.metering.journal import SUFFIX, UsageJournal, replay, settled_record
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.writer import UsageWriter
from orcarouter.settings import UsageConfig
from orcarouter.store.wallets import WalletRepository

if TYPE_CHECKING:
    from tests.unit.core.conftest import Store

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _record(n: int, *, key_id: str | None = None, cost: int | None = None) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{n:04d}",
        created_at=T0 + timedelta(seconds=n),
        workspace_id=DEFAULT_WORKSPACE,
        key_id=key_id,
        endpoint="chat",
        stream=n % 2 == 0,
        model_requested="gpt-4o-mini",
        model_served="openai/gpt-4o-mini",
        upstream_model="gpt-4o-mini-2024-07-18",
        provider_id="openai",
        status_code=200,
        usage=Usage(input_tokens=100, output_tokens=10 + n, cache_read_tokens=n),
        latency_ms=300 + n,
        ttft_ms=40,
        cost_micros=cost,
    )


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def _writer(store: Store, directory: Path, **options: int) -> UsageWriter:
    writer = UsageWriter(store.usage, store.keys, interval=0.01)
    writer.use_journal(directory, fsync="never", **options)  # type: ignore[arg-type]
    return writer


def _stored(store: Store) -> dict[str, str]:
    rows = store.execute("SELECT request_id, outcome FROM usage_records")
    return {str(request_id): str(outcome) for request_id, outcome in rows}


def _break(store: Store) -> None:
    store.execute("ALTER TABLE usage_records RENAME TO usage_records_away")


def _repair(store: Store) -> None:
    store.execute("ALTER TABLE usage_records_away RENAME TO usage_records")


async def _eventually(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 10 s")


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the file format ----------------------------------------------------------------------------


def test_lines_round_trip_every_column_and_the_whole_usage(tmp_path: Path) -> None:
    journal = UsageJournal(tmp_path, fsync="never")
    opened, done = _record(1), _record(2)
    done.usage = Usage(
        input_tokens=7,
        output_tokens=3,
        cache_write_tokens=2,
        reasoning_tokens=1,
        server_tool_uses=MappingProxyType({"web_search_requests": 2}),
        extra={"anthropic": MappingProxyType({"cache_creation": {"ephemeral_1h": 2}})},
    )
    done.held = (True, False)
    journal.open(opened)
    journal.open(done)
    segment = journal.settle(done)
    journal.committed([(done.request_id, segment)])
    (path,) = _segments(tmp_path)
    found = replay(path.read_bytes())
    assert set(found.opens) == {"req_0001", "req_0002"}
    assert set(found.settled) == {"req_0002"} and found.committed == {"req_0002"}
    back = settled_record(found.settled["req_0002"], keep_held=True)
    assert back.as_row() == done.as_row()
    assert back.usage == done.usage and back.held == (True, False)
    assert settled_record(found.settled["req_0002"]).held == (False, False)
    (interrupted,) = found.interrupted()
    assert interrupted == {
        **opened.as_row(),
        "outcome": "interrupted",
        "error_type": "gateway_stopped",
    }
    assert found.to_write() == []  # committed already
    journal.close()
    assert _segments(tmp_path) == [path]  # req_0001 is still open: kept


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = UsageJournal(tmp_path, fsync="never")
    journal.settle(_record(1))
    journal.settle(_record(2))
    (path,) = _segments(tmp_path)
    data = path.read_bytes()
    journal.close()
    path.write_bytes(data[: len(data) - 40])  # the process died in the middle of a write
    found = replay(path.read_bytes())
    assert list(found.settled) == ["req_0001"]
    assert found.unreadable == 1


def test_a_clean_close_leaves_no_segment(tmp_path: Path) -> None:
    journal = UsageJournal(tmp_path, fsync="never")
    record = _record(1)
    journal.open(record)
    journal.committed([(record.request_id, journal.settle(record))])
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_fsync_never_has_nothing_to_sync(tmp_path: Path) -> None:
    never = UsageJournal(tmp_path / "a", fsync="never")
    never.settle(_record(1))
    assert never.take_dirty() == ([], None)
    interval = UsageJournal(tmp_path / "b")
    interval.settle(_record(1))
    fds, directory = interval.take_dirty()
    assert fds == [interval.current.fd] and directory == tmp_path / "b"
    assert interval.take_dirty() == ([], None)  # until the next append


async def test_open_appends_without_suspending(any_store: Store, tmp_path: Path) -> None:
    writer = _writer(any_store, tmp_path)
    opening = writer.open(_record(1))
    with pytest.raises(StopIteration) as done:
        opening.send(None)  # finishes on its first step: it never waits for anything
    assert done.value.value is True
    assert _stored(any_store) == {}  # no database call before the upstream one


def test_the_older_switch_still_turns_open_rows_off() -> None:
    assert UsageConfig().open_mode == "journal"
    assert UsageConfig(open_rows="database").open_mode == "database"
    assert UsageConfig(open_before_upstream=False).open_mode == "off"
    assert UsageConfig(open_rows="journal", open_before_upstream=False).open_mode == "off"
    assert UsageConfig().journal_fsync == "interval"


async def test_open_rows_off_stores_nothing(any_store: Store, tmp_path: Path) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys)
    writer.use_journal(tmp_path, open_rows="off")
    assert await writer.open(_record(1)) is False
    assert writer.journal is not None and writer.journal.in_flight == 0


# --- recovery -----------------------------------------------------------------------------------


async def test_recovery_writes_unsettled_opens_as_interrupted_and_settled_records_once(
    any_store: Store, tmp_path: Path
) -> None:
    dead = _writer(any_store, tmp_path)
    records = [_record(n) for n in range(6)]
    for record in records:
        await dead.open(record)
    for record in records[:2]:
        dead.submit(record)
    await dead.flush()  # req_0000, req_0001 committed
    for record in records[2:4]:
        dead.submit(record)  # settled, not committed: the process dies now
    assert dead.journal is not None
    dead.journal.close()  # what SIGKILL leaves: the segment, unlocked
    assert len(_segments(tmp_path)) == 1

    writer = _writer(any_store, tmp_path)
    assert await writer.recover() is True
    assert _stored(any_store) == {
        "req_0000": "ok",
        "req_0001": "ok",
        "req_0002": "ok",
        "req_0003": "ok",
        "req_0004": "interrupted",
        "req_0005": "interrupted",
    }
    row = await any_store.usage.get("req_0004")
    assert row is not None and row["error_type"] == "gateway_stopped"
    assert writer.recovered == 4  # the committed two were not written again
    assert writer.journal is not None
    assert _segments(tmp_path) == [writer.journal.current.path]  # only the live one is left


async def test_a_segment_replayed_twice_writes_and_charges_once(
    any_store: Store, tmp_path: Path
) -> None:
    wallets = WalletRepository(any_store.engine)
    await any_store.workspaces.ensure(DEFAULT_WORKSPACE, "Default")
    key = await issue_key(any_store.keys, "k")
    await wallets.top_up(DEFAULT_WORKSPACE, 1_000_000, "admin")

    def price(record: UsageRecord) -> int:
        return 1_000 * (int(record.request_id[-1]) + 1)

    dead = UsageWriter(any_store.usage, any_store.keys, price=price, wallets=wallets)
    dead.use_journal(tmp_path / "journal", fsync="never")
    for n in range(3):
        dead.submit(_record(n, key_id=key.row.id))
    assert dead.journal is not None
    dead.journal.close()
    (path,) = _segments(tmp_path / "journal")
    copy = path.read_bytes()

    charged: list[str] = []
    for _ in range(2):  # a recovery that died before deleting the segment: replayed again
        writer = UsageWriter(
            any_store.usage,
            any_store.keys,
            price=price,
            wallets=wallets,
            charged=lambda record: charged.append(record.request_id),
        )
        writer.use_journal(tmp_path / "journal", fsync="never")
        assert await writer.recover() is True
        assert not path.exists()
        path.write_bytes(copy)
        assert writer.journal is not None
        writer.journal.close()

    assert _stored(any_store) == {"req_0000": "ok", "req_0001": "ok", "req_0002": "ok"}
    ledger = [e for e in await wallets.ledger(DEFAULT_WORKSPACE) if e["kind"] == "charge"]
    assert sorted(e["request_id"] for e in ledger) == ["req_0000", "req_0001", "req_0002"]
    assert await wallets.balance(DEFAULT_WORKSPACE) == 1_000_000 - 6_000
    row = await any_store.usage.get("req_0002")
    assert row is not None and row["cost_micros"] == 3_000


async def test_recovery_with_the_database_down_keeps_the_segment_for_later(
    any_store: Store, tmp_path: Path
) -> None:
    dead = _writer(any_store, tmp_path)
    dead.submit(_record(1))
    await dead.open(_record(2))
    assert dead.journal is not None
    dead.journal.close()
    (path,) = _segments(tmp_path)

    writer = _writer(any_store, tmp_path)
    _break(any_store)
    try:
        assert await writer.recover() is False
    finally:
        _repair(any_store)
    assert path.exists()
    assert await writer.recover() is True  # the retry (run does it on its own)
    assert _stored(any_store) == {"req_0001": "ok", "req_0002": "interrupted"}
    assert not path.exists()


_LIVE = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from orcarouter.metering.journal import UsageJournal
from orcarouter.metering.usage import UsageRecord

journal = UsageJournal(Path(sys.argv[1]), fsync="never")
for n in range(2):
    record = UsageRecord(f"req_live_{n}", datetime.now(UTC), None, None, "chat", False)
    journal.open(record)
journal.settle(record)
print("ready", flush=True)
sys.stdin.readline()
"""


async def test_a_segment_of_a_live_process_is_never_touched(
    any_store: Store, tmp_path: Path
) -> None:
    live = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(_LIVE),
        str(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert live.stdout is not None
        assert (await asyncio.wait_for(live.stdout.readline(), 30)).strip() == b"ready"
        (theirs,) = _segments(tmp_path)
        before = theirs.read_bytes()
        writer = _writer(any_store, tmp_path)
        assert await writer.recover() is True
        assert theirs.read_bytes() == before  # not written, not deleted
        assert _stored(any_store) == {}
        live.kill()  # it dies with its requests in flight
        await live.wait()
        assert await writer.recover() is True
        assert _stored(any_store) == {"req_live_0": "interrupted", "req_live_1": "ok"}
        assert not theirs.exists()
    finally:
        if live.returncode is None:
            live.kill()
            await live.wait()


async def test_a_writer_never_claims_its_own_segments(any_store: Store, tmp_path: Path) -> None:
    writer = _writer(any_store, tmp_path)
    writer.submit(_record(1))
    await writer.open(_record(2))
    assert await writer.recover() is True
    assert _stored(any_store) == {}
    assert writer.pending == 1


# --- rotation -----------------------------------------------------------------------------------


async def test_rotation_deletes_committed_segments_and_carries_open_requests(
    any_store: Store, tmp_path: Path
) -> None:
    writer = _writer(any_store, tmp_path, segment_bytes=4_000)
    in_flight = _record(999)
    await writer.open(in_flight)  # goes upstream and stays there
    for n in range(60):
        writer.submit(_record(n))
        if n % 10 == 9:
            await writer.flush()
    assert writer.journal is not None
    current = writer.journal.current
    assert current.number >= 5  # it rotated several times
    assert _segments(tmp_path) == [current.path]  # every older one was committed and deleted
    assert "req_0999" in replay(current.path.read_bytes()).opens  # carried forward
    writer.journal.close()  # the process dies

    after = _writer(any_store, tmp_path)
    assert await after.recover() is True
    stored = _stored(any_store)
    assert len(stored) == 61
    assert stored["req_0999"] == "interrupted"
    assert after.recovered == 1  # nothing committed was written again


async def test_an_old_segment_stays_until_its_records_are_committed(
    any_store: Store, tmp_path: Path
) -> None:
    writer = _writer(any_store, tmp_path, segment_bytes=2_000)
    for n in range(20):
        writer.submit(_record(n))
    assert len(_segments(tmp_path)) > 3  # nothing committed yet: every segment is kept
    assert writer.journal is not None
    writer.journal.close()
    after = _writer(any_store, tmp_path)
    assert await after.recover() is True
    assert len(_stored(any_store)) == 20


# --- the database down --------------------------------------------------------------------------


async def test_records_written_while_the_database_is_away_are_all_stored_when_it_is_back(
    sqlite_store: Store, tmp_path: Path, running: list[asyncio.Task[None]]
) -> None:
    directory = tmp_path / "db"
    writer = _writer(sqlite_store, tmp_path / "journal")
    running.append(asyncio.create_task(writer.run()))
    for n in range(5):
        writer.submit(_record(n))
    await _eventually(lambda: writer.pending == 0)
    directory.rename(tmp_path / "db_away")  # the database is gone
    await sqlite_store.engine.dispose()  # and every open connection with it: the engine's,
    await sqlite_store.usage.close()  # and the one the writes use (store.database.Transactions)
    for n in range(5, 20):
        writer.submit(_record(n))
    await _eventually(lambda: writer.failures >= 2)
    assert writer.pending == 15
    (tmp_path / "db_away").rename(directory)
    await _eventually(lambda: writer.pending == 0)
    assert len(_stored(sqlite_store)) == 20


async def test_a_process_killed_while_the_database_is_away_loses_nothing(
    sqlite_store: Store, tmp_path: Path
) -> None:
    directory = tmp_path / "db"
    writer = _writer(sqlite_store, tmp_path / "journal")
    directory.rename(tmp_path / "db_away")
    await sqlite_store.engine.dispose()
    for n in range(10):
        await writer.open(_record(n))
        writer.submit(_record(n))
    await writer.open(_record(10))
    await asyncio.wait_for(writer.close(grace=0.3), timeout=5.0)  # gives up: DB still away
    assert writer.pending == 10
    (tmp_path / "db_away").rename(directory)

    after = _writer(sqlite_store, tmp_path / "journal")
    assert await after.recover() is True
    stored = _stored(sqlite_store)
    assert len(stored) == 11
    assert stored["req_0010"] == "interrupted"
    assert list(stored.values()).count("ok") == 10


async def test_memory_is_bounded_and_the_rest_is_read_back_from_the_journal(
    any_store: Store, tmp_path: Path
) -> None:
    writer = _writer(any_store, tmp_path, max_queue=7, segment_bytes=3_000)
    _break(any_store)
    try:
        for n in range(40):
            writer.submit(_record(n))
        with pytest.raises(DBAPIError):
            await writer.flush()
    finally:
        _repair(any_store)
    assert writer.pending == 40
    assert writer.find("req_0006") is not None  # the first ones are in memory
    assert writer.find("req_0039") is None  # the rest in the journal only
    await writer.flush()  # read back seven at a time, across segments
    assert writer.pending == 0
    assert sorted(_stored(any_store)) == [f"req_{n:04d}" for n in range(40)]
    assert writer.journal is not None
    assert _segments(tmp_path) == [writer.journal.current.path]
    writer.submit(_record(40))  # back to normal: queued in memory
    assert writer.find("req_0040") is not None


async def test_records_kept_in_the_journal_only_keep_their_order_and_count_while_arriving(
    any_store: Store, tmp_path: Path, running: list[asyncio.Task[None]]
) -> None:
    writer = _writer(any_store, tmp_path, max_queue=5, segment_bytes=2_500)
    _break(any_store)
    for n in range(30):
        writer.submit(_record(n))
    running.append(asyncio.create_task(writer.run()))
    await _eventually(lambda: writer.failures >= 1)
    _repair(any_store)
    for n in range(30, 60):  # while it reads back
        writer.submit(_record(n))
        await asyncio.sleep(0)
    await _eventually(lambda: writer.pending == 0)
    counts = any_store.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage_records")
    assert counts == [(60, 60)]


async def test_the_fsync_runs_in_the_writer_loop(
    any_store: Store, tmp_path: Path, running: list[asyncio.Task[None]]
) -> None:
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01)
    writer.use_journal(tmp_path)  # fsync: interval
    running.append(asyncio.create_task(writer.run()))
    writer.submit(_record(1))
    assert writer.journal is not None
    await _eventually(lambda: not writer.journal.current.dirty if writer.journal else False)
    await _eventually(lambda: writer.pending == 0)
    assert os.stat(writer.journal.current.path).st_size > 0


class _CountedJournal:
    """A writer's journal that notes how many segments each fsync tick takes (a compiled
    ``UsageJournal`` cannot have a method replaced on the instance)."""

    def __init__(self, journal: UsageJournal) -> None:
        self._journal = journal
        self.syncs: list[int] = []

    def take_dirty(self) -> tuple[list[int], Path | None]:
        taken = self._journal.take_dirty()
        self.syncs.append(len(taken[0]))
        return taken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)


def _count_syncs(writer: UsageWriter) -> list[int]:
    """Make ``writer``'s journal note how many segments each fsync tick takes; the list it fills."""
    assert writer.journal is not None
    counted = _CountedJournal(writer.journal)
    writer.journal = cast(UsageJournal, counted)
    return counted.syncs


async def test_an_idle_writer_does_not_tick(
    any_store: Store, tmp_path: Path, running: list[asyncio.Task[None]]
) -> None:
    # An idle gateway should not wake 40 times a second: the batch tick waits for a record,
    # the fsync tick for a journal write; each still comes one tick after there is work.
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.01)
    writer.use_journal(tmp_path)
    flushes: list[bool] = []
    syncs = _count_syncs(writer)
    flush = writer.flush

    async def counted_flush(*, whole_batches: bool = False) -> None:
        flushes.append(whole_batches)
        await flush(whole_batches=whole_batches)

    writer.flush = counted_flush  # type: ignore[method-assign]
    running.append(asyncio.create_task(writer.run()))
    await asyncio.sleep(0.2)  # twenty ticks' time
    assert flushes == [] and syncs == []
    writer.submit(_record(1))
    await _eventually(lambda: writer.pending == 0 and bool(syncs))
    assert flushes[:1] == [True] and syncs[0] == 1  # the record's segment was synced
    flushed, synced = len(flushes), len(syncs)
    await asyncio.sleep(0.2)
    # then idle again (the commit's own journal line may take one more fsync)
    assert len(flushes) == flushed and len(syncs) <= synced + 1


async def test_a_trickle_of_records_shares_one_transaction_and_is_synced_sooner(
    any_store: Store, tmp_path: Path, running: list[asyncio.Task[None]]
) -> None:
    # A transaction costs about the same for one record as for forty, so records that arrive
    # within one write interval go together; the journal's fsync does not wait for it.
    writer = UsageWriter(any_store.usage, any_store.keys, interval=0.5)
    writer.use_journal(tmp_path, sync_interval=0.01)
    batches: list[int] = []
    synced = _count_syncs(writer)
    write = writer._write

    async def counted_write(records: list[UsageRecord]) -> None:
        batches.append(len(records))
        await write(records)

    writer._write = counted_write  # type: ignore[method-assign]
    running.append(asyncio.create_task(writer.run()))
    for n in range(4):
        writer.submit(_record(n))
        await asyncio.sleep(0.05)
    assert batches == [] and synced[:1] == [1]  # synced within 10 ms, not yet written
    await _eventually(lambda: writer.pending == 0)
    assert batches == [4]


def test_more_requests_in_flight_than_a_segment_holds_do_not_rotate_at_every_line(
    tmp_path: Path,
) -> None:
    journal = UsageJournal(tmp_path, fsync="never", segment_bytes=2_000)
    for n in range(40):  # each open line is ~500 bytes: 20 kB in flight
        journal.open(_record(n))
    assert journal.current.number < 10
    (path,) = _segments(tmp_path)
    assert len(replay(path.read_bytes()).opens) == 40  # all carried into the one left


async def test_a_journal_that_refuses_appends_leaves_records_in_memory(
    any_store: Store, tmp_path: Path
) -> None:
    writer = _writer(any_store, tmp_path, max_queue=1)
    assert writer.journal is not None
    writer.journal.close()  # every append now fails (as on a full disk)
    assert await writer.open(_record(1)) is False
    writer.submit(_record(1))
    writer.submit(_record(2))  # past max_queue, but it cannot go to the journal
    assert writer.pending == 2
    await writer.flush()
    assert _stored(any_store) == {"req_0001": "ok", "req_0002": "ok"}
