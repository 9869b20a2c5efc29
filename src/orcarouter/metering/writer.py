"""The batched usage writer: records leave the queue only after their commit succeeded.

Before its upstream call a request is stored ``open`` (``open``: one commit shared by all the
requests waiting, so a crash leaves a row the next start settles); afterwards it hands its
finished record over with ``submit`` (no I/O on the hot path), which also shows each record to
the observers (live statistics) at once. A background task writes them in batches;
a failed batch stays at the head of the queue and is retried with back-off, and the request
id as primary key makes a retried batch harmless. ``close`` drains the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from orcarouter.metering.usage import UsageRecord
from orcarouter.store.repositories import KeyRepository, UsageRepository
from orcarouter.store.wallets import Charge, WalletRepository

log = logging.getLogger(__name__)


class UsageWriter:
    """Queues usage records and writes them in batches."""

    def __init__(
        self,
        usage: UsageRepository,
        keys: KeyRepository,
        *,
        max_batch: int = 500,
        interval: float = 0.05,
        observers: Sequence[Callable[[UsageRecord], None]] = (),
        price: Callable[[UsageRecord], int | None] | None = None,
        wallets: WalletRepository | None = None,
        charged: Callable[[UsageRecord], None] | None = None,
    ) -> None:
        """``price``: a record's cost in micro-dollars, computed off the request path;
        ``wallets``: write each priced record's charge in the same transaction, then tell
        ``charged``."""
        self._usage = usage
        self._price = price
        self._wallets = wallets
        self._charged = charged
        self._keys = keys
        self._observers = tuple(observers)
        self._queue: deque[UsageRecord] = deque()
        self.open_timeout = 2.0  # seconds a request waits for its open row at most
        self._opens: deque[tuple[dict[str, Any], asyncio.Future[None]]] = deque()
        self._open_wakeup = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._max_batch = max_batch
        self._interval = interval
        self._flushing = asyncio.Lock()
        self.failures = 0

    def submit(self, record: UsageRecord) -> None:
        """Queue a record (it is written soon, off the request path) and show it to observers."""
        self._queue.append(record)
        if len(self._queue) >= self._max_batch:
            self._wakeup.set()
        self.notify(record)

    async def open(self, record: UsageRecord) -> bool:
        """Store the request as ``open`` before its upstream call, so that a crash leaves a
        trace the next start settles. Many requests share one commit (group commit). If the
        database does not answer within ``open_timeout`` the request goes on without it (the settled
        record is written when the database is back); returns whether the row is stored."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opens.append(({**record.as_row(), "outcome": "open"}, future))
        self._open_wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.open_timeout)
        except Exception:
            log.warning("request %s not opened in the database; going on", record.request_id)
            return False
        return True

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
        """A record still queued (submitted, not yet committed), with its cost."""
        for record in reversed(self._queue):
            if record.request_id == request_id:
                if record.cost_micros is None and self._price is not None:
                    record.cost_micros = self._price(record)
                return record
        return None

    @property
    def pending(self) -> int:
        """Records not yet committed."""
        return len(self._queue)

    async def flush(self) -> None:
        """Write everything queued now; raises if the database refuses.

        One flush at a time: two would both write, then both pop, the same head of the queue.
        """
        async with self._flushing:
            await self._flush_unlocked()

    async def _flush_unlocked(self) -> None:
        while self._queue:
            batch = [self._queue[i] for i in range(min(self._max_batch, len(self._queue)))]
            if self._price is not None:
                for record in batch:
                    if record.cost_micros is None:
                        record.cost_micros = self._price(record)
            rows = [record.as_row() for record in batch]
            if self._wallets is None:
                await self._usage.settle_many(rows)
            else:
                charges = [charge for r in batch if (charge := _charge(r)) is not None]
                await self._wallets.write_usage(rows, charges)
            for _ in batch:
                self._queue.popleft()
            if self._charged is not None:
                for record in batch:
                    if record.cost_micros:
                        self._charged(record)
            await self._touch_keys(batch)

    async def _touch_keys(self, batch: list[UsageRecord]) -> None:
        last_used: dict[str, datetime] = {}
        for record in batch:
            if record.key_id is not None:
                seen = last_used.get(record.key_id)
                if seen is None or record.created_at > seen:
                    last_used[record.key_id] = record.created_at
        try:
            await self._keys.touch(last_used)
        except Exception:  # last-used times are informative; never block the ledger on them
            log.warning("could not update keys' last-used times", exc_info=True)

    async def run(self) -> None:
        """Write batches until cancelled, backing off while the database fails."""
        opener = asyncio.ensure_future(self._open_loop())
        try:
            await self._run_batches()
        finally:
            opener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opener

    async def _run_batches(self) -> None:
        delay = self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
            self._wakeup.clear()
            try:
                await self.flush()
                delay = self._interval
            except Exception:
                self.failures += 1
                delay = min(max(delay * 2, 0.1), 5.0)
                log.error(
                    "usage batch not committed; %d records kept for retry",
                    len(self._queue),
                    exc_info=True,
                )

    async def close(self, grace: float = 10.0) -> None:
        """Drain the queue at shutdown, retrying for up to ``grace`` seconds."""
        deadline = asyncio.get_running_loop().time() + grace
        while self._queue:
            try:
                await self.flush()
            except Exception:
                if asyncio.get_running_loop().time() >= deadline:
                    log.error("shutdown: %d usage records could not be written", len(self._queue))
                    return
                await asyncio.sleep(0.2)


def _charge(record: UsageRecord) -> Charge | None:
    """The ledger charge of a priced request (nothing for free or unpriced ones)."""
    if not record.cost_micros or record.workspace_id is None:
        return None
    return Charge(record.request_id, record.workspace_id, record.key_id, record.cost_micros)
