"""The batched usage writer: records leave the queue only after their commit succeeded.

Requests hand records over with ``submit`` (no I/O on the hot path), which also shows each
record to the observers (live statistics) at once. A background task writes them in batches;
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

from orcarouter.metering.usage import UsageRecord
from orcarouter.store.repositories import KeyRepository, UsageRepository

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
    ) -> None:
        """``price``: a record's cost in micro-dollars, computed off the request path."""
        self._usage = usage
        self._price = price
        self._keys = keys
        self._observers = tuple(observers)
        self._queue: deque[UsageRecord] = deque()
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
            await self._usage.insert_many([record.as_row() for record in batch])
            for _ in batch:
                self._queue.popleft()
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
