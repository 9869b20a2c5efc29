"""Budgets shared by every replica: holds live in Redis, checked and taken atomically.

A holder is a workspace wallet (``w``) or a key's USD cap (``k``). Each has, in Redis, its
holds by request id, each in one of three states:

- ``o`` open: a reservation (the request's worst case) until its expiry;
- ``u`` unwritten: settled at the actual cost, not yet committed to the database (expires
  after ``unwritten_ttl``, an hour by default: the longest database outage ridden through);
- ``c`` committed: the charge is in the database, stamped with the shared clock at that time;
  dropped ``linger`` seconds later (two minutes by default).

Every replica reads the database figures (wallet balances; key caps less lifetime spend) every
second, and just before reading them takes a stamp ``t_read`` from the same clock. A charge
stamped ``c`` before ``t_read`` was committed before the database read began, so the figure
includes it; anything else (``o``, ``u``, ``c`` stamped after ``t_read``) may not be in it. So

    available = figure - sum(o) - sum(u) - sum(c stamped after t_read)

and one Lua script drops expired holds, computes that for the wallet and the cap, and adds the
hold to both or neither. Exactness: a request's cost is counted in Redis from its hold until the
database read that includes it (``o`` -> ``u`` -> DB commit -> ``c``, each step replacing the
last in place), so money is never counted as free while it is spent or in flight; at worst a
charge is counted twice (in the figure and as ``c``, or as ``u`` whose ``c`` mark is still
queued) until the next read, which only refuses early. The clock is Redis ``TIME`` made
strictly increasing by one counter (``budget:clock``), so two stamps never tie and a step back
of the server's clock cannot reorder them. Figures older than ``linger`` are not used: their
``c`` holds may already be gone (see "Fallback").

Only ``hold`` waits on Redis (one script call). ``settle``, ``written`` and ``credit`` queue
state changes, coalesced per hold (the newest state wins, and the script only moves a hold
forward, ``o`` -> ``u`` -> ``c``, so a retried or late batch is harmless); ``run`` sends them in
batches and retries while Redis is down; ``close`` drains the queue. A change that stays queued
only leaves a hold counted longer (conservative), except a hold decided locally (below), which
``hold`` sends first, before its next shared decision.

Fallback, never silent. This process also keeps every hold it makes in a per-process
``Budgets``, fed by the same loads. When Redis is unavailable (the circuit is open, or the call
fails), or the shared figures are missing or older than ``linger`` (Redis was down at the last
reads, or the database has not answered for that long), a hold is decided by that ``Budgets``
and counted as ``orcarouter_degraded_decisions_total{component="budget", reason=...}``
("redis unavailable" / "stale figures"). During an outage the exactness is that of one process:
its own holds and unwritten charges against the database balance read every second, so this
process never overspends by itself, but replicas may together overspend by what they hold at
once; the local holds are queued for Redis and counted there when it answers again. Refusing
every metered request instead would make Redis and the database hard dependencies of serving.

Keys (under the store's prefix; ``kind`` is ``w`` or ``k``): ``budget:{kind}:h:{id}`` hash of
holds, ``budget:{kind}:l:{id}`` expiry of ``o``/``u`` holds, ``budget:{kind}:d:{id}`` stamps of
``c`` holds, ``budget:{kind}:m:{id}`` sums; each expires ``unwritten_ttl + linger + 60`` seconds
after its last write. ``budget:clock`` is the clock. All keys of one decision must be on one
server (no Redis Cluster slot spreading). Amounts are integer micro-dollars, times microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orcarouter.metering.queued_holds import QueuedHolds
from orcarouter.metering.wallet import (
    BALANCE_TOO_LOW,
    CAP_REACHED,
    DEFAULT_TTL,
    InsufficientFunds,
    Reservation,
)
from orcarouter.observability.metrics import Metrics
from orcarouter.state.redis import SharedStore, SharedStoreUnavailable

if TYPE_CHECKING:
    from orcarouter.store.wallets import WalletRepository

log = logging.getLogger(__name__)

DEFAULT_LINGER = 120.0  # seconds a committed charge stays counted for late readers
DEFAULT_UNWRITTEN_TTL = 3600.0  # seconds a settled, unwritten charge stays counted
MAX_QUEUED = 200_000  # state changes waiting for Redis, at most (one per hold and holder)

_LUA_COMMON = """
local function fmt(n) return string.format('%d', n) end

local function clock(key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', key) or '0')
  if now <= last then now = last + 1 end
  redis.call('SET', key, fmt(now))
  return now
end

-- a hold: state, amount, and for c the running total of commits up to it
local function parse(v)
  local state = string.sub(v, 1, 1)
  local rest = string.sub(v, 3)
  local colon = string.find(rest, ':', 1, true)
  if colon then
    return state, tonumber(string.sub(rest, 1, colon - 1)), tonumber(string.sub(rest, colon + 1))
  end
  return state, tonumber(rest), nil
end

-- drop expired o/u holds and c holds older than the linger (a bounded number per call)
local function cleanup(h, l, d, m, now, linger)
  local gone = redis.call('ZRANGEBYSCORE', l, '-inf', fmt(now), 'LIMIT', 0, 256)
  if #gone > 0 then
    local values = redis.call('HMGET', h, unpack(gone))
    local total = 0
    for j = 1, #gone do
      if values[j] then
        local state, amount = parse(values[j])
        if state ~= 'c' then total = total + amount end
      end
    end
    redis.call('ZREM', l, unpack(gone))
    redis.call('HDEL', h, unpack(gone))
    if total ~= 0 then redis.call('HINCRBY', m, 'sum', fmt(-total)) end
  end
  local old = redis.call('ZRANGEBYSCORE', d, '-inf', '(' .. fmt(now - linger), 'LIMIT', 0, 256)
  if #old > 0 then
    local values = redis.call('HMGET', h, unpack(old))
    local last = values[#old]
    if last then
      local _, _, cum = parse(last)
      redis.call('HSET', m, 'cbase', fmt(cum))
    end
    redis.call('ZREM', d, unpack(old))
    redis.call('HDEL', h, unpack(old))
  end
end

local function touch(keys, first, keep)
  for j = first, first + 3 do redis.call('EXPIRE', keys[j], keep) end
end
"""

# KEYS: clock, then (holds, live, done, meta) per holder.
# ARGV: request id ('' = only report), amount, ttl, linger, t_read, keep, figure per holder.
# Returns {0, available...} (held, or only reported), {i, available} (holder i lacks money),
# or {-1, age} (the figures are older than the linger).
_RESERVE = (
    _LUA_COMMON
    + """
local now = clock(KEYS[1])
local rid, amount = ARGV[1], tonumber(ARGV[2])
local ttl, linger, t_read = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local keep = tonumber(ARGV[6])
if now - t_read >= linger then return {-1, now - t_read} end
local n = (#KEYS - 1) / 4
local available = {0}
for i = 1, n do
  local b = 1 + 4 * (i - 1)
  local h, l, d, m = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4]
  cleanup(h, l, d, m, now, linger)
  local held = tonumber(redis.call('HGET', m, 'sum') or '0')
  local committed = 0
  local total = tonumber(redis.call('HGET', m, 'ctotal') or '0')
  if total ~= 0 then
    local base = tonumber(redis.call('HGET', m, 'cbase') or '0')
    local before = redis.call('ZREVRANGEBYSCORE', d, '(' .. fmt(t_read), '-inf', 'LIMIT', 0, 1)
    if #before > 0 then
      local _, _, cum = parse(redis.call('HGET', h, before[1]))
      base = cum
    end
    committed = total - base
  end
  available[i + 1] = tonumber(ARGV[6 + i]) - held - committed
  if rid ~= '' and redis.call('HEXISTS', h, rid) == 1 then return {0} end
end
if rid == '' then return available end
for i = 1, n do
  if available[i + 1] < amount then return {i, available[i + 1]} end
end
for i = 1, n do
  local b = 1 + 4 * (i - 1)
  redis.call('HSET', KEYS[b + 1], rid, 'o:' .. fmt(amount))
  redis.call('ZADD', KEYS[b + 2], fmt(now + ttl), rid)
  redis.call('HINCRBY', KEYS[b + 4], 'sum', fmt(amount))
  touch(KEYS, b + 1, keep)
end
return {0}
"""
)

# KEYS: clock, then (holds, live, done, meta) per holder.
# ARGV: linger, keep, then (holder index, request id, state, amount, ttl) per change.
# A hold only moves forward: absent/o -> u -> c; x releases an o/u hold without a cost.
_APPLY = (
    _LUA_COMMON
    + """
local now = clock(KEYS[1])
local linger, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, (#KEYS - 1) / 4 do
  local b = 1 + 4 * (i - 1)
  cleanup(KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], now, linger)
end
for j = 3, #ARGV, 5 do
  local b = 1 + 4 * (tonumber(ARGV[j]) - 1)
  local h, l, d, m = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4]
  local rid, state = ARGV[j + 1], ARGV[j + 2]
  local amount, ttl = tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4])
  local value = redis.call('HGET', h, rid)
  local current, old = nil, 0
  if value then current, old = parse(value) end
  if current == 'c' then
    -- final
  elseif state == 'o' then
    if not current then
      redis.call('HSET', h, rid, 'o:' .. fmt(amount))
      redis.call('ZADD', l, fmt(now + ttl), rid)
      redis.call('HINCRBY', m, 'sum', fmt(amount))
    end
  elseif state == 'u' then
    redis.call('HSET', h, rid, 'u:' .. fmt(amount))
    redis.call('ZADD', l, fmt(now + ttl), rid)
    redis.call('HINCRBY', m, 'sum', fmt(amount - old))
  elseif state == 'c' then
    if current then
      redis.call('ZREM', l, rid)
      redis.call('HINCRBY', m, 'sum', fmt(-old))
    end
    local cum = redis.call('HINCRBY', m, 'ctotal', fmt(amount))
    redis.call('HSET', h, rid, 'c:' .. fmt(amount) .. ':' .. fmt(cum))
    redis.call('ZADD', d, fmt(clock(KEYS[1])), rid)
  elseif state == 'x' and current then
    redis.call('HDEL', h, rid)
    redis.call('ZREM', l, rid)
    redis.call('HINCRBY', m, 'sum', fmt(-old))
  end
  touch(KEYS, b + 1, keep)
end
return (#ARGV - 2) / 5
"""
)

# KEYS: clock. Returns a stamp later than every stamp issued before.
_CLOCK = _LUA_COMMON + "\nreturn clock(KEYS[1])\n"

Holder = tuple[str, str]  # ("w", workspace id) or ("k", key id)


@dataclass(frozen=True, slots=True)
class _Figures:
    """The database figures of one read, and the shared clock just before it began."""

    t_read: int  # microseconds, shared clock
    wallets: dict[str, int]  # balance by workspace
    caps: dict[str, int]  # cap less lifetime spend by key


@dataclass(frozen=True, slots=True)
class _Change:
    """The newest state of one hold of one holder, waiting to be sent."""

    state: str  # o (a hold decided locally), u, c, x
    amount: int
    ttl: int  # microseconds


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


class SharedBudgets(QueuedHolds[tuple[Holder, str], _Change]):
    """Wallets and key caps whose holds every replica sees (Redis), per-process when it fails."""

    unavailable = (SharedStoreUnavailable,)
    changes_name = "budget changes for Redis"

    def __init__(
        self,
        store: SharedStore,
        metrics: Metrics,
        *,
        linger: float = DEFAULT_LINGER,
        unwritten_ttl: float = DEFAULT_UNWRITTEN_TTL,
        interval: float = 0.05,
        max_batch: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``linger``: how long a committed charge stays counted, and so the oldest figures
        used; ``interval``: how often queued state changes are sent."""
        super().__init__(
            clock=clock, interval=interval, max_batch=max_batch, mirror_ttl=unwritten_ttl
        )
        self._store = store
        self._metrics = metrics
        self._linger = _us(linger)
        self._unwritten_ttl = unwritten_ttl
        self._keep = int(unwritten_ttl + linger) + 60
        self._reserve = store.script(_RESERVE)
        self._apply = store.script(_APPLY)
        self._clock_script = store.script(_CLOCK)
        self._clock_key = store.key("budget", "clock")
        self._figures: _Figures | None = None

    # --- the figures ------------------------------------------------------------------------

    async def refresh(self, wallets: WalletRepository) -> None:
        """Take the shared clock, then read balances and caps from the database and load them
        (into the shared figures, and into the local fallback under its generation guard)."""
        generation = self.local.generation
        t_read: int | None = None
        with contextlib.suppress(SharedStoreUnavailable):  # then only the local figures refresh
            stamp = await self._store.run_script(
                self._clock_script, [self._clock_key], [], "budget clock"
            )
            t_read = int(stamp)
        try:
            balances = await wallets.balances()
            caps = await wallets.caps()
        except Exception:
            log.warning("budgets refresh failed; keeping the last figures", exc_info=True)
            return
        self.local.load(balances, caps, generation=generation)
        if t_read is not None:
            remaining = {key: cap - spent for key, (cap, spent) in caps.items()}
            self._figures = _Figures(t_read, dict(balances), remaining)

    def metered(self, workspace_id: str, key_id: str) -> bool:
        """Whether a request of this key must hold money (a wallet, or a USD cap, applies)."""
        figures = self._figures
        shared = figures is not None and (workspace_id in figures.wallets or key_id in figures.caps)
        return shared or self.local.metered(workspace_id, key_id)

    def has_wallet(self, workspace_id: str) -> bool:
        """Whether the workspace pays from a wallet."""
        figures = self._figures
        shared = figures is not None and workspace_id in figures.wallets
        return shared or self.local.has_wallet(workspace_id)

    def available(self, workspace_id: str) -> int | None:
        """This process's view (the balance less its own holds; no I/O); ``shared_available``
        asks Redis for every replica's."""
        return self.local.available(workspace_id)

    async def shared_available(self, workspace_id: str) -> int | None:
        """Money the workspace can still hold across replicas (None: no wallet); this
        process's view when Redis or fresh figures are missing."""
        figures = self._figures
        if figures is None or workspace_id not in figures.wallets:
            return self.local.available(workspace_id)
        holder = ("w", workspace_id)
        try:
            result = await self._store.run_script(
                self._reserve,
                [self._clock_key, *self._keys(holder)],
                self._reserve_args("", 0, 0, figures, [figures.wallets[workspace_id]]),
                "budget available",
            )
        except SharedStoreUnavailable:
            return self.local.available(workspace_id)
        if int(result[0]) != 0:
            return self.local.available(workspace_id)
        return int(result[1])

    # --- holds ------------------------------------------------------------------------------

    async def hold(
        self,
        request_id: str,
        workspace_id: str,
        key_id: str,
        amount: int,
        ttl: float = DEFAULT_TTL,
    ) -> Reservation:
        """Hold ``amount`` on the wallet and the key's cap, both or neither, across replicas;
        ``InsufficientFunds`` if either lacks it. One Redis script call."""
        amount = max(amount, 0)
        ttl = min(ttl, self._unwritten_ttl)
        figures = self._figures
        if not self._store.available:
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl, "redis")
        if figures is None:
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl, "stale")
        holders: list[Holder] = []
        limits: list[int] = []
        if key_id in figures.caps:  # the cap first, as the local decision checks it
            holders.append(("k", key_id))
            limits.append(figures.caps[key_id])
        if workspace_id in figures.wallets:
            holders.append(("w", workspace_id))
            limits.append(figures.wallets[workspace_id])
        if not holders:  # metered only in figures Redis has not seen yet
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl, "stale")
        keys = [self._clock_key]
        for holder in holders:
            keys.extend(self._keys(holder))
        try:
            if self._unshared:
                await self.flush()  # this process's local holds first, so they count
            result = await self._store.run_script(
                self._reserve,
                keys,
                self._reserve_args(request_id, amount, _us(ttl), figures, limits),
                "budget hold",
            )
        except SharedStoreUnavailable:
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl, "redis")
        code = int(result[0])
        if code < 0:
            return self._decide_locally(request_id, workspace_id, key_id, amount, ttl, "stale")
        if code > 0:
            kind = holders[code - 1][0]
            reason = CAP_REACHED if kind == "k" else BALANCE_TOO_LOW
            raise InsufficientFunds(reason, amount, int(result[1]))
        mirror = self.local.reserve(request_id, workspace_id, key_id, amount, ttl, check=False)
        self._mirrors[request_id] = mirror
        return Reservation(
            request_id,
            workspace_id if ("w", workspace_id) in holders else None,
            key_id if ("k", key_id) in holders else None,
            amount,
            self._clock() + ttl,
            shared=True,
        )

    def _decide_locally(
        self,
        request_id: str,
        workspace_id: str,
        key_id: str,
        amount: int,
        ttl: float,
        why: str,
    ) -> Reservation:
        reason = "redis unavailable" if why == "redis" else "stale figures"
        self._metrics.degraded("budget", reason)
        mirror = self.local.reserve(request_id, workspace_id, key_id, amount, ttl)
        self._mirrors[request_id] = mirror
        reservation = Reservation(
            request_id, mirror.workspace_id, mirror.key_id, amount, mirror.expires_at
        )
        holders = self._holders(reservation)
        if holders:
            self._unshared.add(request_id)
            for holder in holders:
                self._enqueue(holder, request_id, _Change("o", amount, _us(ttl)))
        return reservation

    def settle(self, reservation: Reservation, cost: int) -> None:
        """Release the hold and count the actual cost until it is committed. Safe to call
        twice, and after the hold expired (the cost still counts)."""
        if reservation.charged:
            return
        reservation.released = reservation.charged = True
        cost = max(cost, 0)
        mirror = self._mirrors.get(reservation.request_id)
        if mirror is not None:
            self.local.settle(mirror, cost)
            if cost == 0:
                del self._mirrors[reservation.request_id]
        change = _Change("u", cost, _us(self._unwritten_ttl)) if cost else _Change("x", 0, 0)
        for holder in self._holders(reservation):
            self._enqueue(holder, reservation.request_id, change)

    def written(
        self,
        workspace_id: str | None,
        key_id: str | None,
        cost: int,
        counted: tuple[bool, bool] = (False, False),
        request_id: str | None = None,
    ) -> None:
        """The writer committed a charge (after its transaction): mark it committed in Redis,
        stamped then. ``counted``: whether the settled reservation held the wallet, the cap;
        ``request_id``: the charge's request (without it the mark is a new entry)."""
        mirror = self._mirrors.pop(request_id, None) if request_id is not None else None
        if mirror is not None:
            local_counted = (
                mirror.charged and mirror.workspace_id is not None,
                mirror.charged and mirror.key_id is not None,
            )
        else:
            local_counted = counted if request_id is None else (False, False)
        self.local.written(workspace_id, key_id, cost, local_counted)
        if cost <= 0:
            return
        figures = self._figures
        rid = request_id or "charge_" + secrets.token_hex(12)
        change = _Change("c", cost, 0)
        if workspace_id is not None and (
            counted[0]
            or self.local.has_wallet(workspace_id)
            or (figures is not None and workspace_id in figures.wallets)
        ):
            self._enqueue(("w", workspace_id), rid, change)
        if key_id is not None and (
            counted[1]
            or self.local.has_cap(key_id)
            or (figures is not None and key_id in figures.caps)
        ):
            self._enqueue(("k", key_id), rid, change)

    def credit(self, workspace_id: str, amount: int, balance: int) -> None:
        """A top-up (or, negative, a withdrawal) committed to the database by this process.

        A withdrawal counts at once on every replica (a committed entry, like a charge); a
        top-up shows at the next read (about a second), as adding it here could count it twice
        against a read that already includes it. A first top-up opens the wallet at once.
        """
        self.local.credit(workspace_id, amount, balance)
        figures = self._figures
        if amount < 0:
            change = _Change("c", -amount, 0)
            self._enqueue(("w", workspace_id), "adjust_" + secrets.token_hex(12), change)
        elif figures is not None and workspace_id not in figures.wallets:
            # No wallet meant unmetered; any finite figure is stricter than that.
            self._figures = _Figures(
                figures.t_read, {**figures.wallets, workspace_id: balance}, figures.caps
            )

    # --- the queue of state changes ----------------------------------------------------------

    def _enqueue(self, holder: Holder, request_id: str, change: _Change) -> None:
        slot = (holder, request_id)
        self._queue.pop(slot, None)  # the newest state goes to the back
        self._queue[slot] = change
        if len(self._queue) > MAX_QUEUED:
            dropped = next(iter(self._queue))
            del self._queue[dropped]
            log.error("budget changes queue full; dropped the oldest (%s)", dropped)
        if len(self._queue) >= self._max_batch:
            self._wakeup.set()

    async def _send_batch(self, batch: list[tuple[tuple[Holder, str], _Change]]) -> None:
        index: dict[Holder, int] = {}
        keys = [self._clock_key]
        args: list[Any] = [self._linger, self._keep]
        for (holder, request_id), change in batch:
            if holder not in index:
                index[holder] = len(index) + 1
                keys.extend(self._keys(holder))
            args += [index[holder], request_id, change.state, change.amount, change.ttl]
        try:
            await self._store.run_script(self._apply, keys, args, "budget changes")
        except BaseException:  # Redis down, or cancelled mid-send (shutdown): keep the batch
            for slot, change in reversed(batch):  # a newer state queued meanwhile wins
                if slot not in self._queue:
                    self._queue[slot] = change
            raise
        for (_, request_id), _ in batch:
            self._unshared.discard(request_id)

    async def run(self) -> None:
        """Send queued state changes in batches until cancelled, retrying while Redis is down."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._interval)
            self._wakeup.clear()
            if not self._queue or not self._store.available:
                continue
            with contextlib.suppress(SharedStoreUnavailable):
                await self.flush()

    # --- helpers ----------------------------------------------------------------------------

    def _keys(self, holder: Holder) -> list[str]:
        kind, holder_id = holder
        return [self._store.key("budget", kind, part, holder_id) for part in ("h", "l", "d", "m")]

    def _reserve_args(
        self, request_id: str, amount: int, ttl: int, figures: _Figures, limits: Sequence[int]
    ) -> list[Any]:
        return [request_id, amount, ttl, self._linger, figures.t_read, self._keep, *limits]

    @staticmethod
    def _holders(reservation: Reservation) -> list[Holder]:
        holders: list[Holder] = []
        if reservation.workspace_id is not None:
            holders.append(("w", reservation.workspace_id))
        if reservation.key_id is not None:
            holders.append(("k", reservation.key_id))
        return holders
