"""The batched usage writer: records leave the queue only after their commit succeeded.

A request hands its finished record over with ``submit``, which also shows it to the observers
(live statistics) at once; a background task writes records in batches, a failed batch stays at
the head of the queue and is retried with back-off, and the request id as primary key makes a
retried batch harmless. ``close`` drains the queue.

With a journal (``use_journal``; see ``metering.journal``) every submitted record is first
appended to this process's local segment file (microseconds, no database call), so a process
killed with records queued, or while the database is down, loses none of them: the next start
(``recover``, also retried in ``run``) writes what the journal holds and the database lacks.
The memory queue is bounded (``max_queue``): past it records stay in the journal only and are
read back from it once the database takes them again.

Before its upstream call a request is stored ``open`` (``open``), so a crash leaves a trace
the next start settles as ``interrupted``; ``open_rows`` says where: ``journal`` appends an
open line (the default with a journal), ``database`` commits an ``open`` row, one commit shared
by all the requests waiting (milliseconds; the sweep settles rows a stopped process left),
``off`` stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from orcarouter.metering.journal import (
    SEGMENT_BYTES,
    Claimed,
    FsyncMode,
    Position,
    Segment,
    UsageJournal,
    claim_dead,
    replay,
    sync_all,
)
from orcarouter.metering.usage import UsageRecord
from orcarouter.store.repositories import KeyRepository, UsageRepository
from orcarouter.store.wallets import Charge, WalletRepository

log = logging.getLogger(__name__)

OpenRows = Literal["journal", "database", "off"]
# A tick's transaction costs about half a millisecond of CPU however few records it holds
# (bench/writer.py: 502 µs a record in batches of 1, 95 in batches of 10, 46 in batches of 40),
# so at a few hundred requests a second ticks of 200 ms cost far less than ticks of 50 ms.
# Journaled records lose nothing meanwhile, and budgets count settled charges until their
# ledger rows are committed (``metering.wallet``).
WRITE_INTERVAL = 0.2
SYNC_INTERVAL = 0.05  # the journal's fsync tick: what a machine crash may lose
MAX_QUEUE = 20_000  # records kept in memory (about 1 KB each); beyond, in the journal only
TOUCH_EVERY = timedelta(seconds=1)  # a key's stored last-used time is this exact at worst
MAX_TOUCHED = 100_000  # keys whose stored last-used time is remembered


class UsageWriter:
    """Queues usage records and writes them in batches."""

    def __init__(
        self,
        usage: UsageRepository,
        keys: KeyRepository,
        *,
        max_batch: int = 500,
        interval: float = WRITE_INTERVAL,
        observers: Sequence[Callable[[UsageRecord], None]] = (),
        price: Callable[[UsageRecord], int | None] | None = None,
        wallets: WalletRepository | None = None,
        charged: Callable[[UsageRecord], None] | None = None,
    ) -> None:
        """``price``: a record's cost in micro-dollars, computed off the request path;
        ``wallets``: write each priced record's charge in the same transaction, then tell
        ``charged``. Without ``use_journal`` records live in memory only until committed, and
        ``open`` commits database rows."""
        self._usage = usage
        self._price = price
        self._wallets = wallets
        self._charged = charged
        self._keys = keys
        self._touched: dict[str, datetime] = {}  # key id -> the last-used time stored
        self._observers = tuple(observers)
        self.journal: UsageJournal | None = None
        self.open_rows: OpenRows = "database"
        # Each record with the journal segment holding it (None: not journaled).
        self._queue: deque[tuple[UsageRecord, Segment | None]] = deque()
        self._max_queue = MAX_QUEUE
        self._spill: Position | None = None  # where the records not in memory start
        self._spilled = 0  # how many records are in the journal only
        self._claimed: list[Claimed] = []  # stopped processes' segments, not yet written
        self._recovering = asyncio.Lock()
        self._journal_failing = False
        self._recover_every = 30.0
        self.open_timeout = 2.0  # seconds a request waits for its open row at most (database)
        self._opens: deque[tuple[dict[str, Any], asyncio.Future[None]]] = deque()
        self._open_wakeup = asyncio.Event()
        self._wakeup = asyncio.Event()  # a whole batch waits: write it now
        # An idle gateway does not tick: the batch tick waits for a record, the fsync tick for
        # a journal write (each was 20 wake-ups a second, record or not).
        self._arrived = asyncio.Event()
        self._appended = asyncio.Event()
        self._max_batch = max_batch
        self._interval = interval
        self._sync_interval = SYNC_INTERVAL
        self._flushing = asyncio.Lock()
        self.failures = 0
        # Budget holds live in the database (``metering.database_budgets``): a charge's hold is
        # deleted in the transaction that writes it.
        self.release_holds = False
        self.recovered = 0  # records and interrupted requests written from stopped processes

    def use_journal(
        self,
        directory: Path,
        *,
        fsync: FsyncMode = "interval",
        open_rows: OpenRows = "journal",
        segment_bytes: int = SEGMENT_BYTES,
        max_queue: int = MAX_QUEUE,
        recover_every: float = 30.0,
        sync_interval: float = SYNC_INTERVAL,
    ) -> None:
        """Journal every record in ``directory`` (before ``run`` or any ``submit``), keep at
        most ``max_queue`` records in memory (the rest in the journal only), look for segments
        of stopped processes every ``recover_every`` seconds (``recover``), and fsync what was
        appended ``sync_interval`` after it was (with ``fsync="interval"``)."""
        self.journal = UsageJournal(directory, fsync=fsync, segment_bytes=segment_bytes)
        self.journal.on_dirty = self._appended.set
        self.open_rows = open_rows
        self._max_queue = max_queue
        self._recover_every = recover_every
        self._sync_interval = sync_interval

    def submit(self, record: UsageRecord) -> None:
        """Queue a record (it is written soon, off the request path) and show it to observers."""
        segment = None
        journal = self.journal
        if journal is not None:
            if self._spill is None and len(self._queue) >= self._max_queue:
                self._spill = journal.position()
                log.warning("usage queue full: records are kept in the journal only for now")
            try:
                segment = journal.settle(record)
            except OSError:
                self._journal_refused()
            else:
                if self._journal_failing:
                    self._journal_failing = False
                    log.warning("usage journal: writable again")
        if self._spill is None or segment is None:
            self._queue.append((record, segment))
            if len(self._queue) >= self._max_batch:
                self._wakeup.set()
        else:
            self._spilled += 1
        self._arrived.set()
        self.notify(record)

    async def open(self, record: UsageRecord) -> bool:
        """Store the request as ``open`` before its upstream call, so that a crash leaves a
        trace the next start settles; returns whether it is stored.

        ``journal``: one append, returns without suspending. ``database``: many requests share
        one commit (group commit); if the database does not answer within ``open_timeout`` the
        request goes on without it (the settled record is written when the database is back).
        ``off``: nothing is stored (False)."""
        if self.open_rows == "journal":
            assert self.journal is not None
            try:
                self.journal.open(record)
            except OSError:
                self._journal_refused()
                return False
            return True
        if self.open_rows == "off":
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opens.append(({**record.as_row(), "outcome": "open"}, future))
        self._open_wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.open_timeout)
        except Exception:
            log.warning("request %s not opened in the database; going on", record.request_id)
            return False
        return True

    def _journal_refused(self) -> None:
        """An append failed (disk full?): say so once; records stay in memory meanwhile."""
        if not self._journal_failing:
            self._journal_failing = True
            log.error("usage journal refused an append; records kept in memory", exc_info=True)

    async def _open_loop(self) -> None:
        """Commit pending opens as soon as there are any, all together."""
        while True:
            await self._open_wakeup.wait()
            self._open_wakeup.clear()
            pending = list(self._opens)
            self._opens.clear()
            if not pending:
                continue
            try:
                # One writer at a time: SQLite's own lock would make the loser sleep in its
                # busy handler (milliseconds), which is what an open must never wait for.
                async with self._flushing:
                    await self._usage.insert_many([row for row, _ in pending])
            except Exception as exc:
                log.warning("could not open %d requests", len(pending), exc_info=True)
                for _, future in pending:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in pending:
                if not future.done():
                    future.set_result(None)

    def notify(self, record: UsageRecord) -> None:
        """Show a record to the observers only (a failed attempt that a fallback replaced)."""
        for observe in self._observers:
            try:
                observe(record)
            except Exception:  # statistics are informative; never fail a request over them
                log.warning("usage observer %r failed", observe, exc_info=True)

    def find(self, request_id: str) -> UsageRecord | None:
        """A record still queued in memory (submitted, not yet committed), with its cost."""
        for record, _ in reversed(self._queue):
            if record.request_id == request_id:
                if record.cost_micros is None and self._price is not None:
                    record.cost_micros = self._price(record)
                return record
        return None

    @property
    def pending(self) -> int:
        """Records not yet committed (in memory, or in the journal only)."""
        return len(self._queue) + self._spilled

    async def flush(self, *, whole_batches: bool = False) -> None:
        """Write everything queued now; raises if the database refuses. ``whole_batches``
        (the writer's tick): write what is queued, then go on only while a full batch waits,
        so records that arrive during a write wait for the next tick and batches stay large
        at any rate, instead of a stream of one- or two-record transactions.

        One flush at a time: two would both write, then both pop, the same head of the queue.
        """
        async with self._flushing:
            await self._flush_unlocked(whole_batches)

    async def _flush_unlocked(self, whole_batches: bool = False) -> None:
        first = True
        while True:
            if not self._queue:
                if self._spill is None:
                    return
                await self._read_back()
                if not self._queue:
                    return
            if whole_batches and not first and len(self._queue) < self._max_batch:
                return
            first = False
            count = min(self._max_batch, len(self._queue))
            batch = [self._queue[i] for i in range(count)]
            records = [record for record, _ in batch]
            await self._write(records)
            for _ in batch:
                self._queue.popleft()
            if self.journal is not None:
                self.journal.committed(
                    (record.request_id, segment) for record, segment in batch if segment is not None
                )
            await self._after_commit(records)

    async def _read_back(self) -> None:
        """Move records kept in the journal only back to the memory queue (queue empty)."""
        journal = self.journal
        assert journal is not None and self._spill is not None
        end = journal.position()
        ranges = journal.plan(self._spill, end)
        found, reached = await asyncio.to_thread(journal.read_settled, ranges, end, self._max_queue)
        self._queue.extend(found)
        self._spilled = max(self._spilled - len(found), 0)
        if reached == journal.position():  # caught up, nothing appended meanwhile
            self._spill = None
            self._spilled = 0
            log.info("usage queue: every record is back in memory")
        else:
            self._spill = reached

    async def _write(self, records: list[UsageRecord]) -> None:
        """Commit one batch (priced, with its charges); raises if the database refuses."""
        if self._price is not None:
            for record in records:
                if record.cost_micros is None:
                    record.cost_micros = self._price(record)
        rows = [record.as_row() for record in records]
        if self._wallets is None:
            await self._usage.settle_many(rows)
        else:
            charges = [charge for r in records if (charge := _charge(r)) is not None]
            # Every record, not only those held here: a recovered record's hold was taken by
            # the process that stopped.
            held = [r.request_id for r in records] if self.release_holds else []
            await self._wallets.write_usage(rows, charges, release_holds=held)

    async def _after_commit(self, records: list[UsageRecord]) -> None:
        if self._charged is not None:
            for record in records:
                if record.cost_micros:
                    self._charged(record)
        await self._touch_keys(records)

    async def _touch_keys(self, batch: list[UsageRecord]) -> None:
        """Store the keys' last-used times, to the second: a key whose stored time is less
        than ``TOUCH_EVERY`` older is left alone, so a busy key costs one small transaction a
        second, not one per tick (on SQLite each was a commit of 200 to 400 µs of CPU)."""
        last_used: dict[str, datetime] = {}
        for record in batch:
            if record.key_id is not None:
                seen = last_used.get(record.key_id)
                if seen is None or record.created_at > seen:
                    last_used[record.key_id] = record.created_at
        touched = self._touched
        due = {
            key_id: when
            for key_id, when in last_used.items()
            if (stored := touched.get(key_id)) is None or when - stored >= TOUCH_EVERY
        }
        if not due:
            return
        try:
            await self._keys.touch(due)
        except Exception:  # last-used times are informative; never block the ledger on them
            log.warning("could not update keys' last-used times", exc_info=True)
            return
        if len(touched) + len(due) > MAX_TOUCHED:  # keys come and go: forget, and touch again
            touched.clear()
        touched.update(due)

    async def recover(self) -> bool:
        """Write what stopped processes left in the journal directory: their settled records
        not known committed (idempotent upserts, each charge at most once), and their requests
        opened but never settled as ``interrupted`` (``gateway_stopped``); then delete their
        segments. Segments a live process holds are never touched. Returns False when the
        database refused (the segments are kept, and ``run`` tries again); never raises."""
        if self.journal is None:
            return True
        async with self._recovering:
            return await self._recover(self.journal)

    async def _recover(self, journal: UsageJournal) -> bool:
        try:
            known = [claimed.path for claimed in self._claimed]
            self._claimed.extend(claim_dead(journal.directory, known))
        except OSError:
            log.warning("usage journal: could not look for stopped processes", exc_info=True)
            return False
        while self._claimed:
            claimed = self._claimed[0]
            try:
                written = await self._replay(claimed)
            except Exception:
                log.warning("usage journal: %s not recovered yet", claimed.path, exc_info=True)
                return False
            claimed.remove()
            self._claimed.pop(0)
            if written:
                log.warning("recovered %d usage records from %s", written, claimed.path.name)
        return True

    async def _replay(self, claimed: Claimed) -> int:
        data = await asyncio.to_thread(claimed.read)
        found = replay(data)
        if found.unreadable:
            log.warning("usage journal: %d unreadable lines in %s", found.unreadable, claimed.path)
        records = found.to_write()
        for start in range(0, len(records), self._max_batch):
            batch = records[start : start + self._max_batch]
            async with self._flushing:
                await self._write(batch)
            claimed.note_committed([record.request_id for record in batch])
            await self._after_commit(batch)
        interrupted = found.interrupted()
        for start in range(0, len(interrupted), self._max_batch):
            async with self._flushing:
                # Insert only: a row already stored (settled after a rotation) stays as it is.
                await self._usage.insert_many(interrupted[start : start + self._max_batch])
        self.recovered += len(records) + len(interrupted)
        return len(records) + len(interrupted)

    async def run(self) -> None:
        """Write batches until cancelled, backing off while the database fails; with a journal,
        also fsync it and recover what stopped processes leave."""
        helpers = [asyncio.ensure_future(self._open_loop())]
        if self.journal is not None:
            helpers.append(asyncio.ensure_future(self._sync_loop(self.journal)))
            helpers.append(asyncio.ensure_future(self._recover_loop()))
        try:
            await self._run_batches()
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper

    async def _run_batches(self) -> None:
        delay = self._interval
        while True:
            if not self.pending:  # idle: no tick until a record arrives
                self._arrived.clear()
                await self._arrived.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
            self._wakeup.clear()
            try:
                await self.flush(whole_batches=True)
                delay = self._interval
            except Exception:
                self.failures += 1
                delay = min(max(delay * 2, 0.1), 5.0)
                log.error(
                    "usage batch not committed; %d records kept for retry",
                    self.pending,
                    exc_info=True,
                )

    async def _sync_loop(self, journal: UsageJournal) -> None:
        """fsync what was appended, ``sync_interval`` after it was, in a thread (a machine crash
        loses that much)."""
        while True:
            await self._appended.wait()  # idle: nothing written, nothing to sync
            await asyncio.sleep(self._sync_interval)
            self._appended.clear()
            fds, directory = journal.take_dirty()
            if fds or directory is not None:
                await asyncio.to_thread(sync_all, fds, directory)

    async def _recover_loop(self) -> None:
        """Retry a recovery the database refused; look for newly stopped processes now and
        then (a replica that died while this one runs)."""
        while True:
            retry = min(2.0, self._recover_every)
            await asyncio.sleep(retry if self._claimed else self._recover_every)
            await self.recover()

    async def close(self, grace: float = 10.0) -> None:
        """Drain the queue at shutdown, retrying for up to ``grace`` seconds; then release the
        journal (what could not be written stays in it for the next start)."""
        deadline = asyncio.get_running_loop().time() + grace
        try:
            while self.pending:
                try:
                    await self.flush()
                except Exception:
                    if asyncio.get_running_loop().time() >= deadline:
                        log.error("shutdown: %d usage records could not be written", self.pending)
                        return
                    await asyncio.sleep(0.2)
        finally:
            if self.journal is not None:
                self.journal.close()
            for claimed in self._claimed:
                claimed.release()
            self._claimed.clear()


def _charge(record: UsageRecord) -> Charge | None:
    """The ledger charge of a priced request (nothing for free or unpriced ones)."""
    if not record.cost_micros or record.workspace_id is None:
        return None
    return Charge(record.request_id, record.workspace_id, record.key_id, record.cost_micros)
