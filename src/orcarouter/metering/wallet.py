"""Budgets held in memory: workspace wallets and key USD caps, reserve then settle.

Before the upstream call a request reserves its most expensive outcome (the prompt estimate
plus ``max_tokens`` at the target's prices); the reservation fails, and the request gets 402,
when the workspace's balance less what is already reserved cannot cover it, or when the key's
spend plus its reservations would pass the key's cap. After the request the reservation is
settled at the actual cost: the rest is released at once, and the charge goes to the database
in the same transaction as the usage record (the writer), so the ledger always sums to the
recorded costs. Everything here is synchronous: on one event loop a check-and-reserve cannot
interleave with another, so parallel requests can never overspend.

State is per process. With several workers or replicas the authority is the database balance,
read back every ``refresh`` (about a second); exact reservations across processes are
``metering.shared_budgets.SharedBudgets`` (holds in Redis), which has the same interface
(``BudgetBook``) and uses this class as its per-process fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orcarouter.store.wallets import WalletRepository

log = logging.getLogger(__name__)

DEFAULT_TTL = 900.0  # longest a reservation may stay open (the longest total timeout)
CAP_REACHED = "the key's USD cap is reached"
BALANCE_TOO_LOW = "the workspace balance is too low"


@dataclass(slots=True)
class _Account:
    """Money one holder has: what the database says, less what is reserved or not yet written."""

    balance: int  # settled, as last read from the database (micro-dollars)
    reserved: int = 0  # open reservations
    unwritten: int = 0  # charges settled here whose ledger rows are not committed yet

    @property
    def available(self) -> int:
        return self.balance - self.reserved - self.unwritten


@dataclass(slots=True)
class Reservation:
    """An open hold on a workspace wallet and/or a key cap."""

    request_id: str
    workspace_id: str | None  # None: the workspace has no wallet (unlimited)
    key_id: str | None  # None: the key has no cap
    amount: int
    expires_at: float
    released: bool = field(default=False)  # the hold is gone (settled, or expired)
    charged: bool = field(default=False)  # the actual cost is counted
    shared: bool = field(default=False)  # the hold lives in Redis (else in this process only)


class InsufficientFunds(Exception):
    """The reservation does not fit; ``reason`` says whose money ran out."""

    def __init__(self, reason: str, needed: int, available: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.needed = needed
        self.available = available


class BudgetBook(Protocol):
    """What the app and the inference endpoint use: ``Budgets`` or ``SharedBudgets``."""

    def metered(self, workspace_id: str, key_id: str) -> bool: ...

    def has_wallet(self, workspace_id: str) -> bool: ...

    def available(self, workspace_id: str) -> int | None: ...

    async def hold(
        self,
        request_id: str,
        workspace_id: str,
        key_id: str,
        amount: int,
        ttl: float = DEFAULT_TTL,
    ) -> Reservation: ...

    def settle(self, reservation: Reservation, cost: int) -> None: ...

    def written(
        self,
        workspace_id: str | None,
        key_id: str | None,
        cost: int,
        counted: tuple[bool, bool] = (False, False),
        request_id: str | None = None,
    ) -> None: ...

    def credit(self, workspace_id: str, amount: int, balance: int) -> None: ...

    def expire(self) -> list[Reservation]: ...

    async def refresh(self, wallets: WalletRepository) -> None: ...


class Budgets:
    """Workspace wallets and key caps, in micro-dollars."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._wallets: dict[str, _Account] = {}
        self._caps: dict[str, _Account] = {}  # key id -> cap less lifetime spend
        self._open: dict[str, Reservation] = {}
        self.generation = 0  # charges written so far (see ``load``)
        self._written_at: dict[str, int] = {}  # "w:ws" / "k:key" -> generation of its last charge

    def load(
        self,
        wallets: Mapping[str, int],
        caps: Mapping[str, tuple[int, int]],
        generation: int | None = None,
    ) -> bool:
        """Replace the settled figures with the database's: wallet balances by workspace, and
        (cap, lifetime spend) by key. Open reservations and unwritten charges are kept.

        ``generation``: the value read before the database was read. A holder charged since
        may or may not have that charge in the figures read, so it keeps its own figure until
        next time; every other holder (new wallets and caps included) takes the database's.
        Returns whether every holder took the database's figure.
        """
        raced: set[str] = set()
        if generation is not None and generation != self.generation:
            raced = {h for h, at in self._written_at.items() if at > generation}
        self._wallets = _reloaded(self._wallets, wallets, raced, "w:")
        self._caps = _reloaded(
            self._caps, {k: cap - spent for k, (cap, spent) in caps.items()}, raced, "k:"
        )
        if generation is None or generation == self.generation:
            self._written_at.clear()  # every holder is as the database says
        return not raced

    def metered(self, workspace_id: str, key_id: str) -> bool:
        """Whether a request of this key must reserve (a wallet, or a USD cap, applies)."""
        return workspace_id in self._wallets or key_id in self._caps

    def has_wallet(self, workspace_id: str) -> bool:
        """Whether the workspace pays from a wallet (without one it is not metered in money)."""
        return workspace_id in self._wallets

    def has_cap(self, key_id: str) -> bool:
        """Whether the key has a USD cap."""
        return key_id in self._caps

    def available(self, workspace_id: str) -> int | None:
        """Money the workspace can still reserve (None: no wallet)."""
        account = self._wallets.get(workspace_id)
        return account.available if account is not None else None

    def reserve(
        self,
        request_id: str,
        workspace_id: str,
        key_id: str,
        amount: int,
        ttl: float = DEFAULT_TTL,
        *,
        check: bool = True,
    ) -> Reservation:
        """Hold ``amount`` for the request, or raise ``InsufficientFunds``. (Stale holds are
        released by ``expire``, which the app calls every second, not on this path.)

        ``check=False`` records a hold decided elsewhere (the shared store) without checking.
        """
        wallet = self._wallets.get(workspace_id)
        cap = self._caps.get(key_id)
        amount = max(amount, 0)
        if check and cap is not None and cap.available < amount:
            raise InsufficientFunds(CAP_REACHED, amount, cap.available)
        if check and wallet is not None and wallet.available < amount:
            raise InsufficientFunds(BALANCE_TOO_LOW, amount, wallet.available)
        if wallet is not None:
            wallet.reserved += amount
        if cap is not None:
            cap.reserved += amount
        reservation = Reservation(
            request_id,
            workspace_id if wallet is not None else None,
            key_id if cap is not None else None,
            amount,
            self._clock() + ttl,
        )
        self._open[request_id] = reservation
        return reservation

    async def hold(
        self,
        request_id: str,
        workspace_id: str,
        key_id: str,
        amount: int,
        ttl: float = DEFAULT_TTL,
    ) -> Reservation:
        """``reserve``, under the interface ``SharedBudgets`` shares (no I/O here)."""
        return self.reserve(request_id, workspace_id, key_id, amount, ttl)

    async def refresh(self, wallets: WalletRepository) -> None:
        """Read balances and key caps back from the database (top-ups, other processes'
        charges) and ``load`` them; on a database error keep the last figures."""
        generation = self.generation
        try:
            balances = await wallets.balances()
            caps = await wallets.caps()
        except Exception:
            log.warning("budgets refresh failed; keeping the last figures", exc_info=True)
            return
        self.load(balances, caps, generation=generation)

    def settle(self, reservation: Reservation, cost: int) -> None:
        """Release the hold and count the actual cost as charged but not yet written.

        Safe to call twice, and after the reservation expired (the cost still counts).
        """
        self._release(reservation)
        if reservation.charged:
            return
        reservation.charged = True
        for account in self._accounts(reservation):
            account.unwritten += max(cost, 0)

    def _release(self, reservation: Reservation) -> None:
        if reservation.released:
            return
        reservation.released = True
        self._open.pop(reservation.request_id, None)
        for account in self._accounts(reservation):
            account.reserved -= reservation.amount

    def written(
        self,
        workspace_id: str | None,
        key_id: str | None,
        cost: int,
        counted: tuple[bool, bool] = (False, False),
        request_id: str | None = None,
    ) -> None:
        """The writer committed a charge: it now lives in the database balance.

        ``counted``: whether a settled reservation already counted it (wallet, key cap);
        ``request_id``: the charge's request (unused here; ``SharedBudgets`` needs it).
        """
        self.generation += 1
        if workspace_id is not None:
            self._written_at["w:" + workspace_id] = self.generation
        if key_id is not None:
            self._written_at["k:" + key_id] = self.generation
        wallet = self._wallets.get(workspace_id or "")
        if wallet is not None:
            wallet.unwritten -= cost if counted[0] else 0
            wallet.balance -= cost
        cap = self._caps.get(key_id or "")
        if cap is not None:
            cap.unwritten -= cost if counted[1] else 0
            cap.balance -= cost

    def credit(self, workspace_id: str, amount: int, balance: int) -> None:
        """This process committed a top-up (or, negative, a withdrawal) of ``amount``, which
        left the database balance at ``balance``.

        The committed balance becomes the settled figure, so a refresh that has already read
        it changes nothing (adding ``amount`` would count it twice), and the wallet counts as
        written, so a refresh whose read began before the commit keeps it. A first top-up
        opens the wallet.
        """
        self.generation += 1
        self._written_at["w:" + workspace_id] = self.generation
        wallet = self._wallets.get(workspace_id)
        if wallet is None:
            self._wallets[workspace_id] = _Account(balance)
        else:
            wallet.balance = balance

    def expire(self) -> list[Reservation]:
        """Release holds older than their time to live (a request that never settled)."""
        now = self._clock()
        stale = [r for r in self._open.values() if r.expires_at <= now]
        for reservation in stale:
            self._release(reservation)
        return stale

    def open_reservations(self) -> Iterable[Reservation]:
        """Reservations not yet settled."""
        return tuple(self._open.values())

    def _accounts(self, reservation: Reservation) -> list[_Account]:
        found = []
        if reservation.workspace_id is not None:
            wallet = self._wallets.get(reservation.workspace_id)
            if wallet is not None:
                found.append(wallet)
        if reservation.key_id is not None:
            cap = self._caps.get(reservation.key_id)
            if cap is not None:
                found.append(cap)
        return found


def _reloaded(
    current: dict[str, _Account],
    settled: Mapping[str, int],
    raced: Collection[str] = (),
    kind: str = "",
) -> dict[str, _Account]:
    fresh: dict[str, _Account] = {
        holder: old for holder, old in current.items() if kind + holder in raced
    }  # a raced holder the read did not see yet (a wallet opened meanwhile) is kept too
    for holder, balance in settled.items():
        old = current.get(holder)
        if old is None:
            fresh[holder] = _Account(balance)
        elif kind + holder in raced:
            fresh[holder] = old  # charged while the figures were read: keep its own
        else:
            fresh[holder] = _Account(balance, old.reserved, old.unwritten)
    return fresh
