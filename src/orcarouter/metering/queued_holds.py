"""What the two shared budget books have in common (``database_budgets``, ``shared_budgets``).

Each keeps this process's own book (``local``) as the figures it answers from without I/O and as
its fallback, mirrors every reservation it made there by request id, and sends hold changes to
the shared place (the database, Redis) from a queue: batched in the background, kept when a
batch fails, drained at shutdown. Only what a change is and how a batch is sent differ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import ClassVar, Generic, TypeVar

from orcarouter.metering.wallet import Budgets, Reservation

log = logging.getLogger(__name__)

Slot = TypeVar("Slot", bound=Hashable)  # what one queued change is about
Change = TypeVar("Change")


class QueuedHolds(Generic[Slot, Change]):
    """The local book, the mirrors of its reservations, and the queue of changes."""

    # What the shared place raises when it does not take a batch, and what to call the changes
    # in the shutdown log.
    unavailable: ClassVar[tuple[type[BaseException], ...]]
    changes_name: ClassVar[str]

    def __init__(
        self, *, clock: Callable[[], float], interval: float, max_batch: int, mirror_ttl: float
    ) -> None:
        """``mirror_ttl``: how long a settled reservation stays mirrored if its charge is never
        written; ``interval``: how often queued changes are sent."""
        self.local = Budgets(clock=clock)  # this process's figures and holds; the fallback
        self._clock = clock
        self._interval = interval
        self._max_batch = max_batch
        self._mirror_ttl = mirror_ttl
        self._mirrors: dict[str, Reservation] = {}  # request id -> its hold in ``local``
        self._queue: dict[Slot, Change] = {}
        self._in_flight = 0  # changes taken from the queue by a batch being sent
        self._unshared: set[str] = set()  # holds decided locally, not yet shared
        self._sending = asyncio.Lock()
        self._wakeup = asyncio.Event()

    def expire(self) -> list[Reservation]:
        """Release this process's holds older than their time to live (the shared place drops
        its own at their expiry), and forget mirrors settled long ago and never written."""
        stale = self.local.expire()
        cutoff = self._clock() - self._mirror_ttl
        for request_id, mirror in list(self._mirrors.items()):
            if mirror.expires_at <= cutoff:
                del self._mirrors[request_id]
        return stale

    def open_reservations(self) -> tuple[Reservation, ...]:
        """This process's reservations not yet settled."""
        return tuple(self.local.open_reservations())

    @property
    def pending(self) -> int:
        """Changes not yet taken by the shared place, those of a batch being sent included."""
        return len(self._queue) + self._in_flight

    async def flush(self) -> None:
        """Send everything queued now; raises one of ``unavailable`` when it is not taken."""
        async with self._sending:
            while self._queue:
                batch = [
                    (slot, self._queue.pop(slot)) for slot in list(self._queue)[: self._max_batch]
                ]
                self._in_flight = len(batch)
                try:
                    await self._send_batch(batch)
                finally:
                    self._in_flight = 0

    async def _send_batch(self, batch: list[tuple[Slot, Change]]) -> None:
        """Send ``batch``, taken from the queue; on failure, put it back (newer wins) and
        raise."""
        raise NotImplementedError

    async def close(self, grace: float = 5.0) -> None:
        """Drain the queue at shutdown, retrying for up to ``grace`` seconds."""
        deadline = time.monotonic() + grace
        while self._queue:
            try:
                await self.flush()
            except self.unavailable:
                if time.monotonic() >= deadline:
                    log.error("shutdown: %d %s not applied", len(self._queue), self.changes_name)
                    return
                await asyncio.sleep(min(self._interval * 2, 0.2))
