"""Rate limits shared by gateway replicas: the buckets of ``rate_limits``, kept in Redis.

The semantics are ``InMemoryRateLimiter``'s (token buckets per minute, debt, a cost above
capacity on a full bucket, concurrency, a changed limit keeps what was spent); only the state
lives in Redis, under the store's prefix, two keys per scope:

- ``rl:b:{kind}:{id}``, a hash of the per-minute buckets: ``rc``/``rl``/``rs`` are the requests
  bucket's capacity, level and stamp (Redis time, seconds), ``tc``/``tl``/``ts`` the tokens
  bucket's. It expires when its buckets would be full again, so a missing hash reads as full
  buckets and an idle scope leaves nothing behind.
- ``rl:f:{kind}:{id}``, the leases in flight: a sorted set of lease ids scored by their expiry
  (Redis time, ms), expiring with its last lease. Expired leases are dropped on admission, so
  the slots of a replica that died come back after ``lease_ttl``.

One script admits (checks every scope, then debits all or none), one settles; each is one
round trip, and both read Redis' clock, so the replicas' clocks do not matter.

When Redis is unavailable (a failed call, or its circuit open) each decision is taken by a
per-process ``InMemoryRateLimiter`` whose limits are the configured ones times
``fallback_share`` (this replica's part of the limit, e.g. ``1 / replicas``), and counted as a
degraded decision. A lease remembers which limiter admitted it and is settled by that one.

A settlement that cannot reach Redis, and the release of an admission whose reply was lost (a
timeout after the script may have run), wait in a queue and run before the next admission
that finds Redis again, so their slots come back with Redis rather than after ``lease_ttl``.
Settling is idempotent: only the run that removes the lease corrects its tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from orcarouter.accounts.rate_limits import (
    InMemoryRateLimiter,
    Lease,
    Limit,
    LimitScope,
    Quota,
    RateLimits,
    Refusal,
    quota_of,
)
from orcarouter.observability.metrics import Metrics
from orcarouter.state.redis import SharedStore, SharedStoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL: Final = 900.0 + 60.0  # the longest request (total timeout) and a margin
DEGRADED: Final = "redis unavailable"
SETTLEMENT_LOST: Final = "redis unavailable at finish"  # the settlement waits for Redis to return
MAX_UNSETTLED: Final = 100_000  # settlements kept for Redis' return; older ones wait for lease_ttl
_LIMITS: Final[tuple[Limit, ...]] = ("requests", "tokens", "concurrency")  # the script's 1, 2, 3

ADMIT_LUA: Final = """
-- KEYS: per scope, its buckets (hash) then its leases in flight (sorted set, expiry in ms).
-- ARGV: tokens, lease id, lease ttl (ms), then per scope rpm, tpm, concurrency ('' = none).
-- Returns {refusing scope (0: admitted), limit (1 requests, 2 tokens, 3 concurrency),
--   retry after (s), then the tightest requests and tokens buckets: capacity (0: none), level}.
local WINDOW, EPSILON, CONCURRENCY_RETRY_AFTER = 60, 1e-9, 1
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local tokens = tonumber(ARGV[1])
local scopes = #KEYS / 2

local function num(x) return string.format('%.17g', x) end

-- {capacity, level, stamp, rescaled} brought up to now; nil without a limit
local function bucket(limit, capacity, level, stamp)
  if not limit then return nil end
  capacity = tonumber(capacity)
  if not capacity then return {limit, limit, now, false} end
  level, stamp = tonumber(level), tonumber(stamp)
  local rescaled = capacity ~= limit
  if rescaled then level = level + limit - capacity end  -- what was spent stays spent
  if now > stamp then
    level = level + (now - stamp) * limit / WINDOW
    stamp = now
  end
  if level > limit then level = limit end
  return {limit, level, stamp, rescaled}
end

local function wait(b, cost)  -- a cost above capacity fits a full bucket
  local need = cost
  if need > b[1] then need = b[1] end
  if b[2] >= need - EPSILON then return 0 end
  return (need - b[2]) * WINDOW / b[1]
end

local function full_at(b) return b[3] + (b[1] - b[2]) * WINDOW / b[1] end

local requests, token_buckets, stale = {}, {}, {}
local refused, refused_limit, longest = 0, 1, 0
for i = 1, scopes do
  local rpm, tpm = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local concurrency = tonumber(ARGV[3 * i + 3])
  local h = redis.call('HMGET', KEYS[2 * i - 1], 'rc', 'rl', 'rs', 'tc', 'tl', 'ts')
  local rq, tk = bucket(rpm, h[1], h[2], h[3]), bucket(tpm, h[4], h[5], h[6])
  requests[i], token_buckets[i] = rq, tk
  local gone = {}  -- a limit that was removed: its bucket goes (set again, it starts full)
  if not rpm and h[1] then gone = {'rc', 'rl', 'rs'} end
  if not tpm and h[4] then
    gone[#gone + 1] = 'tc'; gone[#gone + 1] = 'tl'; gone[#gone + 1] = 'ts'
  end
  if #gone > 0 then stale[i] = gone end
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', num(now_ms))
  local seconds, limit = 0, 1
  if rq then seconds = wait(rq, 1) end
  if tk then
    local s = wait(tk, tokens)
    if s > seconds then seconds, limit = s, 2 end
  end
  if concurrency and redis.call('ZCARD', KEYS[2 * i]) >= concurrency then
    if seconds <= 0 then limit = 3 end
    if seconds < CONCURRENCY_RETRY_AFTER then seconds = CONCURRENCY_RETRY_AFTER end
  end
  if seconds > 0 then
    if refused == 0 then refused, refused_limit = i, limit end
    if seconds > longest then longest = seconds end
  end
end

local function save(i)
  local key, rq, tk = KEYS[2 * i - 1], requests[i], token_buckets[i]
  if stale[i] then redis.call('HDEL', key, unpack(stale[i])) end
  if not rq and not tk then return end
  local fields, expires = {}, 0
  if rq then
    fields = {'rc', rq[1], 'rl', num(rq[2]), 'rs', num(rq[3])}
    expires = full_at(rq)
  end
  if tk then
    fields[#fields + 1] = 'tc'; fields[#fields + 1] = tk[1]
    fields[#fields + 1] = 'tl'; fields[#fields + 1] = num(tk[2])
    fields[#fields + 1] = 'ts'; fields[#fields + 1] = num(tk[3])
    expires = math.max(expires, full_at(tk))
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIREAT', key, num(math.ceil(expires * 1000)))
end

local retry_after = 0
if refused == 0 then
  local expires = num(now_ms + tonumber(ARGV[3]))
  for i = 1, scopes do
    if requests[i] then requests[i][2] = requests[i][2] - 1 end
    if token_buckets[i] then token_buckets[i][2] = token_buckets[i][2] - tokens end
    save(i)
    local flight = KEYS[2 * i]
    redis.call('ZADD', flight, expires, ARGV[2])
    local last = redis.call('ZRANGE', flight, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', flight, num(tonumber(last[2])))
  end
else
  retry_after = math.max(math.ceil(longest), 1)
  for i = 1, scopes do  -- nothing is debited; a changed limit still changes the expiry
    local rq, tk = requests[i], token_buckets[i]
    if stale[i] or (rq and rq[4]) or (tk and tk[4]) then save(i) end
  end
end

local function tightest(buckets)
  local low = nil
  for i = 1, scopes do
    local b = buckets[i]
    if b and (not low or b[2] < low[2]) then low = b end
  end
  if not low then return 0, '' end
  return low[1], num(low[2])
end

local rcap, rlevel = tightest(requests)
local tcap, tlevel = tightest(token_buckets)
return {refused, refused_limit, retry_after, rcap, rlevel, tcap, tlevel}
"""

FINISH_LUA: Final = """
-- KEYS: per scope, its buckets then its leases in flight, as for admission.
-- ARGV: lease id, actual tokens ('' = unknown: the estimate stands), tokens debited at
--   admission, then per scope its tpm at admission ('' = none: nothing was debited there).
local WINDOW = 60
local lease, actual, debited = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local function num(x) return string.format('%.17g', x) end
local function full_at(capacity, level, stamp)
  return stamp + (capacity - level) * WINDOW / capacity
end

for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  local removed = redis.call('ZREM', KEYS[2 * i], lease)  -- 0: settled before, or expired
  local tpm = tonumber(ARGV[3 + i])
  local delta = 0
  if actual and removed == 1 then
    delta = actual
    if tpm then delta = actual - debited end
  end
  if delta ~= 0 then
    local h = redis.call('HMGET', key, 'rc', 'rl', 'rs', 'tc', 'tl', 'ts')
    local capacity, level, stamp = tonumber(h[4]), tonumber(h[5]), tonumber(h[6])
    if capacity then
      level = level - delta
      if level > capacity then level = capacity end
    elseif tpm and delta > 0 and not h[1] then  -- the bucket filled up and expired meanwhile
      local clock = redis.call('TIME')
      capacity, level = tpm, tpm - delta
      stamp = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
    end
    if capacity then
      redis.call('HSET', key, 'tc', capacity, 'tl', num(level), 'ts', num(stamp))
      local expires = full_at(capacity, level, stamp)
      if h[1] then
        expires = math.max(expires, full_at(tonumber(h[1]), tonumber(h[2]), tonumber(h[3])))
      end
      redis.call('PEXPIREAT', key, num(math.ceil(expires * 1000)))
    end
  end
end
return 1
"""


@dataclass(slots=True)
class _SharedLease(Lease):
    """A lease admitted by Redis (any other lease was admitted by the fallback)."""

    lease_id: str = ""
    keys: list[str] = field(default_factory=list)


def scaled(limits: RateLimits, share: float) -> RateLimits:
    """``limits`` times ``share``, each rounded up and at least 1."""

    def part(limit: int | None) -> int | None:
        return None if limit is None else max(math.ceil(limit * share - 1e-9), 1)

    return RateLimits(part(limits.rpm), part(limits.tpm), part(limits.concurrency))


class SharedRateLimiter:
    """A ``RateLimiter`` whose state all replicas share through Redis (see the module doc)."""

    def __init__(
        self,
        store: SharedStore,
        metrics: Metrics,
        *,
        fallback_share: float = 1.0,
        lease_ttl: float = DEFAULT_LEASE_TTL,
    ) -> None:
        if fallback_share <= 0:
            raise ValueError("fallback_share must be positive")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        self._store = store
        self._metrics = metrics
        self._share = fallback_share
        self._ttl_ms = math.ceil(lease_ttl * 1000)
        self.fallback = InMemoryRateLimiter()
        self._admit_script = store.script(ADMIT_LUA)
        self._finish_script = store.script(FINISH_LUA)
        self._buckets = store.key("rl", "b", "")
        self._flights = store.key("rl", "f", "")
        self._lease_ids = map(f"{secrets.token_hex(6)}:{{}}".format, itertools.count())
        self._pending: set[asyncio.Task[None]] = set()
        self._unsettled: deque[tuple[list[str], list[str | int]]] = deque(maxlen=MAX_UNSETTLED)
        self._resettling: asyncio.Future[None] | None = None

    async def admit(self, scopes: Sequence[LimitScope], tokens: int) -> Lease | Refusal:
        """See ``RateLimiter.admit``: one script run, or the fallback when Redis is away."""
        if not scopes:
            return Lease((), tokens)
        if self._unsettled and self._store.available:
            if self._resettling is None or self._resettling.done():  # one at a time
                self._resettling = asyncio.ensure_future(self._resettle())
            await asyncio.shield(self._resettling)
        if self._store.available:
            lease_id = next(self._lease_ids)
            keys: list[str] = []
            args: list[str | int] = [tokens, lease_id, self._ttl_ms]
            for scope in scopes:
                name = f"{scope.kind}:{scope.id}"
                keys += (self._buckets + name, self._flights + name)
                limits = scope.limits
                args += (_arg(limits.rpm), _arg(limits.tpm), _arg(limits.concurrency))
            release: list[str | int] = [lease_id, "", tokens, *[""] * len(scopes)]
            try:
                reply = await self._store.run_script(
                    self._admit_script, keys, args, "rate limit admit"
                )
            except SharedStoreUnavailable:  # the script may have run: its slots go back later
                self._unsettled.append((keys, release))
            except asyncio.CancelledError:  # the script may have run: give its slots back
                self._spawn(self._settle(keys, release))
                raise
            else:
                return self._outcome(reply, scopes, tokens, lease_id, keys)
        self._metrics.degraded("rate_limit", DEGRADED)
        limited = [LimitScope(s.kind, s.id, scaled(s.limits, self._share)) for s in scopes]
        outcome = self.fallback.try_admit(limited, tokens)
        if isinstance(outcome, Lease):
            outcome.scopes = tuple(scopes)  # settled alike: by kind, id and whether tpm is set
        return outcome

    def finish(self, lease: Lease, actual_tokens: int | None) -> None:
        """See ``RateLimiter.finish``: schedules the settlement (``drain`` awaits it)."""
        if not isinstance(lease, _SharedLease):
            self.fallback.finish(lease, actual_tokens)
            return
        if lease.finished:
            return
        lease.finished = True
        args: list[str | int] = [
            lease.lease_id,
            _arg(actual_tokens),
            lease.tokens,
            *(_arg(scope.limits.tpm) for scope in lease.scopes),
        ]
        self._spawn(self._settle(lease.keys, args))

    async def drain(self) -> None:
        """Wait for every scheduled settlement (the limiter stays usable)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def aclose(self) -> None:
        """At shutdown: settle what was finished (the store is closed by its owner)."""
        await self.drain()
        if self._resettling is not None:
            await asyncio.gather(self._resettling, return_exceptions=True)

    def _outcome(
        self, reply: Any, scopes: Sequence[LimitScope], tokens: int, lease_id: str, keys: list[str]
    ) -> Lease | Refusal:
        refused, limit, retry_after, rcap, rlevel, tcap, tlevel = reply
        requests, tokens_quota = _quota(rcap, rlevel), _quota(tcap, tlevel)
        if refused:
            kind = scopes[refused - 1].kind
            return Refusal(kind, _LIMITS[limit - 1], retry_after, requests, tokens_quota)
        return _SharedLease(
            tuple(scopes), tokens, requests, tokens_quota, lease_id=lease_id, keys=keys
        )

    async def _settle(self, keys: list[str], args: list[str | int]) -> None:
        try:
            await self._store.run_script(self._finish_script, keys, args, "rate limit finish")
        except SharedStoreUnavailable:  # settled before the next admission that reaches Redis
            self._metrics.degraded("rate_limit", SETTLEMENT_LOST)
            self._unsettled.append((keys, args))

    async def _resettle(self) -> None:
        """Run the settlements that could not reach Redis, oldest first, until one fails
        (settling twice changes nothing, so one cut short is simply run again)."""
        while self._unsettled:
            keys, args = self._unsettled[0]
            try:
                await self._store.run_script(self._finish_script, keys, args, "rate limit finish")
            except SharedStoreUnavailable:
                return
            if self._unsettled and self._unsettled[0][1] is args:  # not dropped meanwhile
                self._unsettled.popleft()

    def _spawn(self, settlement: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(settlement)
        except RuntimeError:  # no event loop: nothing can reach Redis
            settlement.close()
            self._metrics.degraded("rate_limit", SETTLEMENT_LOST)
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _arg(value: int | None) -> str | int:
    return "" if value is None else value


def _quota(capacity: int, level: bytes | str) -> Quota | None:
    return quota_of(capacity, float(level)) if capacity else None
