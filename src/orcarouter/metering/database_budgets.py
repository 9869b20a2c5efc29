"""Budgets exact across processes through the database, for deployments without Redis.

With several workers (``orcarouter serve --workers N``) or replicas on one PostgreSQL and no
Redis, each ``Budgets`` knows only its own reservations, so together they can overspend a
wallet. Here every hold is a row of ``budget_holds`` (``store.wallets.HoldRepository``), taken
in one transaction that serializes with every other hold on the same wallet and cap (PostgreSQL:
an advisory lock per workspace; SQLite: the database's write lock) and that checks, in one
snapshot, the wallet balance and the key's cap less lifetime spend, each less every live hold.

A request's money is counted from its hold until its charge is committed:

- open: the worst case, until the request settles or the hold expires (``ttl``, the longest a
  request may run: a process that died stops counting at ``expires_at``);
- settled: the actual cost (``settle`` queues it), until the charge is committed, or
  ``settled_ttl`` (an hour: the longest database outage ridden through) at most;
- gone: ``written`` (the writer committed the charge, the balance includes it) queues the
  deletion. Between that commit and the deletion the charge is counted twice, in the balance and
  as a hold: refusing early for a moment, never overspending. The writer can close even that
  window by deleting the holds in the charge's own transaction,
  ``WalletRepository.write_usage(rows, charges, release_holds=[r.request_id for r in records])``,
  which one statement's snapshot then sees as either the hold or the charge, never both.

Cost: at most one transaction per metered request (``hold``): the holds a process asks for
while its previous transaction runs are decided together in the next one, in the order asked
(group commit), so a burst on one wallet costs a few transactions, not one queued behind
another per request. ``settle`` and ``written`` queue changes, coalesced per hold (a hold only
moves forward, open -> settled -> gone, and a settle or delete of a hold already gone changes
nothing); ``run`` applies them in batches, one transaction each, and deletes expired holds now
and then; ``close`` drains the queue. Unmetered requests never touch the database:
``metered``, ``has_wallet`` and ``available`` answer from a per-process ``Budgets`` fed by
``refresh`` every second, which also mirrors this process's holds (``available`` is this
process's view; ``shared_available`` asks the database).

Fallback, never silent: when the database does not answer a hold (an error, or not within
``HOLD_TIMEOUT``), the per-process ``Budgets`` decides, as it does without asking for the next
``RETRY_AFTER`` second, each decision counted as
``orcarouter_degraded_decisions_total{component="budget", reason="database unavailable"}``;
such holds are queued for the database and stored before this process's next shared decision.
Refusing every metered request instead would make the database a hard dependency of serving
(the usage writer rides out an outage the same way).

Expiries are the processes' wall clocks (UTC): clock skew between hosts shifts when a dead
process's holds stop counting, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.metering.queued_holds import QueuedHolds
from orcarouter.metering.wallet import (
    BALANCE_TOO_LOW,
    CAP_REACHED,
    DEFAULT_TTL,
    InsufficientFunds,
    Reservation,
)
from orcarouter.observability.metrics import Metrics
from orcarouter.store.ids import utcnow
from orcarouter.store.wallets import (
    HOLD_GONE,
    HOLD_OPEN,
    HOLD_SETTLED,
    HoldAsk,
    HoldChange,
    HoldRepository,
    Room,
)

if TYPE_CHECKING:
    from orcarouter.store.wallets import WalletRepository

log = logging.getLogger(__name__)

DEFAULT_SETTLED_TTL = 3600.0  # seconds a settled, unwritten charge stays counted
HOLD_TIMEOUT = 5.0  # seconds a hold waits for the database before deciding locally
RETRY_AFTER = 1.0  # seconds holds decide locally, without asking, after the database failed
PURGE_EVERY = 60.0  # seconds between deletions of expired holds
MAX_HOLD_BATCH = 256  # holds decided in one transaction, at most
MAX_QUEUED = 200_000  # hold changes waiting for the database, at most

_UNAVAILABLE = (SQLAlchemyError, OSError, TimeoutError)
_RANK = {HOLD_OPEN: 0, HOLD_SETTLED: 1, HOLD_GONE: 2}


@dataclass(slots=True, eq=False)
class _Asked:
    ask: HoldAsk
    answer: asyncio.Future[Room]


@dataclass(slots=True)
class _Change:
    state: str  # HOLD_OPEN (only with ``insert``) | HOLD_SETTLED | HOLD_GONE
    amount: int = 0
    expires_at: datetime | None = None
    insert: tuple[str, str] | None = None  # (workspace, key): a local hold not stored yet


def _merged(old: _Change, new: _Change) -> _Change:
    """The further state wins (the newer on a tie); a pending insert is kept."""
    latest = new if _RANK[new.state] >= _RANK[old.state] else old
    insert = None if latest.state == HOLD_GONE else (new.insert or old.insert)
    return _Change(latest.state, latest.amount, latest.expires_at, insert)


class DatabaseBudgets(QueuedHolds[str, _Change]):
    """Wallets and key caps whose holds every process sees, in the database."""

    unavailable = _UNAVAILABLE
    changes_name = "budget hold changes"

    def __init__(
        self,
        engine: AsyncEngine,
        metrics: Metrics,
        *,
        settled_ttl: float = DEFAULT_SETTLED_TTL,
        interval: float = 0.1,
        max_batch: int = 256,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``interval``: how often queued changes are applied; ``now``: the wall clock (UTC)
        that stamps and ages holds in the database; ``clock``: this process's own timing."""
        super().__init__(
            clock=clock, interval=interval, max_batch=max_batch, mirror_ttl=settled_ttl
        )
        self.holds = HoldRepository(engine)
        self._metrics = metrics
        self._settled_ttl = settled_ttl
        self._now = now
        self._down_until = 0.0  # the database failed: decide locally until then
        self._asks: list[_Asked] = []  # holds waiting for the next transaction
        self._deciding: asyncio.Task[None] | None = None
        self._purged = clock()

    # --- the figures ------------------------------------------------------------------------

    async def refresh(self, wallets: WalletRepository) -> None:
        """Read balances and key caps (for ``metered``, ``has_wallet``, ``available``)."""
        await self.local.refresh(wallets)

    def metered(self, workspace_id: str, key_id: str) -> bool:
        """Whether a request of this key must hold money (a wallet, or a USD cap, applies)."""
        return self.local.metered(workspace_id, key_id)

    def has_wallet(self, workspace_id: str) -> bool:
        """Whether the workspace pays from a wallet."""
        return self.local.has_wallet(workspace_id)

    def available(self, workspace_id: str) -> int | None:
        """This process's view (the last balance read less its own holds; no I/O)."""
        return self.local.available(workspace_id)

    async def shared_available(self, workspace_id: str) -> int | None:
        """Money the workspace can still hold across processes (None: no wallet)."""
        return (await self.holds.room(workspace_id, None, self._now())).wallet

    def credit(self, workspace_id: str, amount: int, balance: int) -> None:
        """A top-up committed by this process (holds read the balance from the database; this
        opens a first wallet for ``metered`` at once)."""
        self.local.credit(workspace_id, amount, balance)

    # --- holds ------------------------------------------------------------------------------

    async def hold(
        self,
        request_id: str,
        workspace_id: str,
        key_id: str,
        amount: int,
        ttl: float = DEFAULT_TTL,
    ) -> Reservation:
        """Hold ``amount`` on the wallet and the key's cap, both or neither, across processes;
        ``InsufficientFunds`` if either lacks it. One database transaction, shared by the holds
        this process asks for meanwhile (decided in the order asked)."""
        amount = max(amount, 0)
        if self._clock() < self._down_until:
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl)
        expires_at = self._now() + timedelta(seconds=ttl)
        asked = _Asked(
            HoldAsk(request_id, workspace_id, key_id, amount, expires_at),
            asyncio.get_running_loop().create_future(),
        )
        self._asks.append(asked)
        if self._deciding is None:
            self._deciding = asyncio.create_task(self._decide(), name="budget holds")
        try:
            room = await asyncio.wait_for(asyncio.shield(asked.answer), HOLD_TIMEOUT)
        except _UNAVAILABLE as exc:
            self._abandon(asked)
            if self._clock() >= self._down_until:  # once per failure, not once per hold
                log.warning("budget holds: no answer from the database (%s)", type(exc).__name__)
            self._down_until = self._clock() + RETRY_AFTER
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl)
        except asyncio.CancelledError:
            self._abandon(asked)
            raise
        if room.cap is not None and room.cap < amount:
            raise InsufficientFunds(CAP_REACHED, amount, room.cap)
        if room.wallet is not None and room.wallet < amount:
            raise InsufficientFunds(BALANCE_TOO_LOW, amount, room.wallet)
        mirror = self.local.reserve(request_id, workspace_id, key_id, amount, ttl, check=False)
        self._mirrors[request_id] = mirror
        return Reservation(
            request_id,
            workspace_id if room.wallet is not None else None,
            key_id if room.cap is not None else None,
            amount,
            mirror.expires_at,
            shared=room.wallet is not None or room.cap is not None,
        )

    async def _decide(self) -> None:
        """Decide the holds asked for, a batch per transaction, until none is waiting."""
        batch: list[_Asked] = []
        try:
            while self._asks:
                batch = self._asks[:MAX_HOLD_BATCH]
                del self._asks[: len(batch)]
                try:
                    async with asyncio.timeout(HOLD_TIMEOUT):
                        if self._unshared:
                            await self.flush()  # this process's local holds first, so they count
                        rooms = await self.holds.hold_many([a.ask for a in batch], self._now())
                except Exception as exc:
                    for asked in batch:
                        if not asked.answer.done():
                            asked.answer.set_exception(exc)
                    continue
                for asked, room in zip(batch, rooms, strict=True):
                    if not asked.answer.done():
                        asked.answer.set_result(room)
        except BaseException:  # cancelled (shutdown): nobody waits in vain
            for asked in [*batch, *self._asks]:
                asked.answer.cancel()
            self._asks.clear()
            raise
        finally:
            self._deciding = None

    def _abandon(self, asked: _Asked) -> None:
        """The asker stopped waiting: drop its ask, or, if the hold is being decided, delete it
        once stored (unless this process holds the request locally meanwhile)."""
        if asked in self._asks:
            self._asks.remove(asked)
            return
        request_id = asked.ask.request_id

        def answered(answer: asyncio.Future[Room]) -> None:
            if answer.cancelled() or answer.exception() is not None:
                return
            if answer.result().fits(asked.ask.amount) and request_id not in self._mirrors:
                self._enqueue(request_id, _Change(HOLD_GONE))

        asked.answer.add_done_callback(answered)

    def _decide_locally(
        self, request_id: str, workspace_id: str, key_id: str, amount: int, ttl: float
    ) -> Reservation:
        self._metrics.degraded("budget", "database unavailable")
        mirror = self.local.reserve(request_id, workspace_id, key_id, amount, ttl)
        self._mirrors[request_id] = mirror
        reservation = Reservation(
            request_id, mirror.workspace_id, mirror.key_id, amount, mirror.expires_at
        )
        if mirror.workspace_id is not None or mirror.key_id is not None:
            expires_at = self._now() + timedelta(seconds=ttl)
            self._unshared.add(request_id)
            self._enqueue(
                request_id, _Change(HOLD_OPEN, amount, expires_at, (workspace_id, key_id))
            )
        return reservation

    def settle(self, reservation: Reservation, cost: int) -> None:
        """Count the actual cost instead of the hold until it is committed (queued). Safe to
        call twice, and after the hold expired."""
        if reservation.charged:
            return
        reservation.released = reservation.charged = True
        cost = max(cost, 0)
        request_id = reservation.request_id
        mirror = self._mirrors.get(request_id)
        if mirror is not None:
            self.local.settle(mirror, cost)
            if cost == 0:
                del self._mirrors[request_id]
        if reservation.workspace_id is None and reservation.key_id is None:
            return  # nothing was held
        if cost == 0:
            self._enqueue(request_id, _Change(HOLD_GONE))
        else:
            expires_at = self._now() + timedelta(seconds=self._settled_ttl)
            self._enqueue(request_id, _Change(HOLD_SETTLED, cost, expires_at))

    def written(
        self,
        workspace_id: str | None,
        key_id: str | None,
        cost: int,
        counted: tuple[bool, bool] = (False, False),
        request_id: str | None = None,
    ) -> None:
        """The writer committed a charge: the balance includes it, so its hold goes (queued;
        counted twice until then). ``counted``: whether the settled reservation held the
        wallet, the cap; ``request_id``: the charge's request."""
        mirror = self._mirrors.pop(request_id, None) if request_id is not None else None
        if mirror is not None:
            local_counted = (
                mirror.charged and mirror.workspace_id is not None,
                mirror.charged and mirror.key_id is not None,
            )
        else:
            local_counted = counted if request_id is None else (False, False)
        self.local.written(workspace_id, key_id, cost, local_counted)
        if request_id is None:
            return
        if (
            mirror is not None
            or any(counted)
            or (workspace_id is not None and self.local.has_wallet(workspace_id))
            or (key_id is not None and self.local.has_cap(key_id))
        ):  # it may have a hold (this process's, or a dead one's recovered by the writer)
            self._enqueue(request_id, _Change(HOLD_GONE))

    # --- the queue of changes ---------------------------------------------------------------

    def _enqueue(self, request_id: str, change: _Change) -> None:
        old = self._queue.pop(request_id, None)  # the newest change goes to the back
        self._queue[request_id] = _merged(old, change) if old is not None else change
        if len(self._queue) > MAX_QUEUED:
            dropped = next(iter(self._queue))
            del self._queue[dropped]
            self._unshared.discard(dropped)
            log.error("budget hold changes queue full; dropped the oldest (%s)", dropped)
        if len(self._queue) >= self._max_batch:
            self._wakeup.set()

    async def _send_batch(self, batch: list[tuple[str, _Change]]) -> None:
        changes = [
            HoldChange(
                request_id,
                change.state,
                change.amount,
                change.expires_at,
                insert=change.insert is not None,
                workspace_id=change.insert[0] if change.insert else None,
                key_id=change.insert[1] if change.insert else None,
            )
            for request_id, change in batch
        ]
        try:
            await self.holds.apply(changes)
        except BaseException:
            for request_id, change in reversed(batch):  # a newer change queued meanwhile wins
                newer = self._queue.pop(request_id, None)
                self._queue[request_id] = _merged(change, newer) if newer is not None else change
            raise
        for request_id, _ in batch:
            self._unshared.discard(request_id)

    async def close(self, grace: float = 5.0) -> None:
        """Drain the queued changes (``QueuedHolds.close``), then release the connection."""
        try:
            await super().close(grace)
        finally:
            await self.holds.close()

    async def purge(self) -> int:
        """Delete expired holds now; how many."""
        self._purged = self._clock()
        return await self.holds.purge(self._now())

    async def run(self) -> None:
        """Apply queued changes in batches until cancelled, retrying while the database fails,
        and delete expired holds every ``PURGE_EVERY`` seconds."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._interval)
            self._wakeup.clear()
            try:
                if self._queue:
                    await self.flush()
                if self._clock() - self._purged >= PURGE_EVERY:
                    await self.purge()
            except _UNAVAILABLE:
                if not failing:
                    log.warning("budget holds: the database refused changes; retrying")
                failing = True
                await asyncio.sleep(min(self._interval * 10, 1.0))
                continue
            if failing:
                log.info("budget holds: changes applied again")
            failing = False
