"""Rate limits per key and per workspace: requests per minute, tokens per minute, concurrency.

Each per-minute limit is a token bucket holding up to ``limit`` units and refilled at
``limit / 60`` per second: a whole minute's allowance may be spent at once, then it comes back
evenly. Tokens are debited on the estimated prompt size when a request is admitted and
corrected with the actual usage when it ends, so a bucket may go below zero: that debt holds
later requests back until the minute's actual tokens fit the limit again. A request larger
than a whole minute's allowance is admitted only on a full bucket (then pays the debt), never
refused for good. Concurrency is a counter of requests in flight.

``InMemoryRateLimiter`` keeps the state per process, O(1) per request and without the
database; a limiter over a shared store (Redis) implements the same ``RateLimiter``.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

WINDOW_SECONDS: Final = 60.0
CONCURRENCY_RETRY_AFTER: Final = 1  # a slot frees when some request ends: nothing says when
EVICT_SCAN: Final = 4  # idle states looked at per admission, so memory follows the active scopes
_EPSILON: Final = 1e-9  # float refills: a client that waited exactly Retry-After is not refused

ScopeKind = Literal["key", "workspace"]
Limit = Literal["requests", "tokens", "concurrency"]


@dataclass(frozen=True, slots=True)
class RateLimits:
    """One scope's limits; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.rpm is not None or self.tpm is not None or self.concurrency is not None


NO_LIMITS: Final = RateLimits()


@dataclass(frozen=True, slots=True)
class LimitScope:
    """Whose limits: a key or a workspace (shared by all its keys), and what they are."""

    kind: ScopeKind
    id: str
    limits: RateLimits


def scopes_of(
    key_id: str, key: RateLimits, workspace_id: str, workspace: RateLimits
) -> tuple[LimitScope, ...]:
    """The scopes a request is checked against, key first; unlimited scopes are left out."""
    scopes = (LimitScope("key", key_id, key), LimitScope("workspace", workspace_id, workspace))
    return tuple(s for s in scopes if s.limits.limited)


def counts_tokens(scopes: Sequence[LimitScope]) -> bool:
    """Whether any scope limits tokens (only then is the prompt estimated)."""
    return any(s.limits.tpm is not None for s in scopes)


@dataclass(frozen=True, slots=True)
class Quota:
    """What is left of the tightest per-minute limit, for the ``X-RateLimit-*`` headers."""

    limit: int
    remaining: int
    reset_seconds: float  # until the bucket is full again


@dataclass(slots=True)
class Lease:
    """An admitted request: hand it back to ``RateLimiter.finish`` exactly once."""

    scopes: tuple[LimitScope, ...]
    tokens: int  # debited on admission (the estimate)
    requests_quota: Quota | None = None
    tokens_quota: Quota | None = None
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request: which limit, and in how many whole seconds to retry."""

    scope: ScopeKind
    limit: Limit
    retry_after: int
    requests_quota: Quota | None = None
    tokens_quota: Quota | None = None

    @property
    def message(self) -> str:
        """The client-facing explanation."""
        owner = "this API key" if self.scope == "key" else "this key's workspace"
        what = {
            "requests": "requests per minute",
            "tokens": "tokens per minute",
            "concurrency": "concurrent requests",
        }[self.limit]
        return f"rate limit reached: {what} of {owner}; retry after {self.retry_after}s"


class RateLimiter(Protocol):
    """Admission against a request's scopes, and its settlement when it ends."""

    async def admit(self, scopes: Sequence[LimitScope], tokens: int) -> Lease | Refusal:
        """All scopes admit the request (and are debited: one request, ``tokens`` tokens,
        one concurrency slot), or none is touched and the refusal says why."""
        ...

    def finish(self, lease: Lease, actual_tokens: int | None) -> None:
        """Free the concurrency slots and correct the tokens to ``actual_tokens`` (None:
        unknown, the estimate stands). Never blocks; calling it twice does nothing."""
        ...


@dataclass(slots=True)
class _Bucket:
    """Up to ``capacity`` units, refilled at ``capacity / 60`` per second."""

    capacity: int
    level: float
    stamp: float

    def refill(self, now: float, capacity: int) -> None:
        if capacity != self.capacity:  # the limit changed: what was spent stays spent
            self.level += capacity - self.capacity
            self.capacity = capacity
        if now > self.stamp:
            self.level += (now - self.stamp) * capacity / WINDOW_SECONDS
            self.stamp = now
        if self.level > capacity:
            self.level = float(capacity)

    def wait(self, cost: int) -> float:
        """Seconds until ``cost`` fits (a cost above capacity fits a full bucket)."""
        need = cost if cost < self.capacity else self.capacity
        if self.level >= need - _EPSILON:
            return 0.0
        return (need - self.level) * WINDOW_SECONDS / self.capacity

    def full_at(self, now: float) -> bool:
        gained = (now - self.stamp) * self.capacity / WINDOW_SECONDS
        return self.level + gained >= self.capacity - _EPSILON

    def quota(self) -> Quota:
        return quota_of(self.capacity, self.level)


def quota_of(capacity: int, level: float) -> Quota:
    """The header quota of a bucket of ``capacity`` holding ``level`` (negative: a debt)."""
    remaining = math.floor(level) if level > 0 else 0
    return Quota(capacity, remaining, (capacity - level) * WINDOW_SECONDS / capacity)


def _bucket(current: _Bucket | None, limit: int | None, now: float) -> _Bucket | None:
    """The scope's bucket for ``limit`` brought up to ``now`` (None: no such limit)."""
    if limit is None:
        return None
    if current is None:
        return _Bucket(limit, float(limit), now)
    current.refill(now, limit)
    return current


@dataclass(slots=True)
class _State:
    """One scope's buckets (present while its limit is set) and requests in flight."""

    touched: float
    requests: _Bucket | None = None
    tokens: _Bucket | None = None
    in_flight: int = 0

    def wait(self, limits: RateLimits, tokens: int) -> tuple[float, Limit]:
        """The longest wait before this scope admits the request, and for which limit."""
        which: Limit
        longest, which = 0.0, "requests"
        if self.requests is not None:
            longest = self.requests.wait(1)
        if self.tokens is not None:
            seconds = self.tokens.wait(tokens)
            if seconds > longest:
                longest, which = seconds, "tokens"
        if limits.concurrency is not None and self.in_flight >= limits.concurrency:
            if longest <= 0:
                which = "concurrency"
            longest = max(longest, CONCURRENCY_RETRY_AFTER)
        return longest, which

    def idle(self, now: float) -> bool:
        """Equivalent to no state at all: nothing in flight, every bucket full."""
        return (
            self.in_flight == 0
            and (self.requests is None or self.requests.full_at(now))
            and (self.tokens is None or self.tokens.full_at(now))
        )


def _tightest(buckets: list[_Bucket | None]) -> Quota | None:
    """The bucket with the least left, as a header quota."""
    low: _Bucket | None = None
    for bucket in buckets:
        if bucket is not None and (low is None or bucket.level < low.level):
            low = bucket
    return low.quota() if low is not None else None


class InMemoryRateLimiter:
    """Rate limits of one process; states of idle scopes are dropped as traffic goes on."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: OrderedDict[tuple[str, str], _State] = OrderedDict()

    def __len__(self) -> int:
        """How many scopes hold state."""
        return len(self._states)

    async def admit(self, scopes: Sequence[LimitScope], tokens: int) -> Lease | Refusal:
        """See ``RateLimiter.admit``; never suspends, so check and debit are atomic."""
        return self.try_admit(scopes, tokens)

    def try_admit(self, scopes: Sequence[LimitScope], tokens: int) -> Lease | Refusal:
        """``admit`` without the coroutine."""
        now = self._clock()
        self._evict(now)  # first: a state fetched below must stay the one in the table
        states = [self._state(scope, now) for scope in scopes]
        refused: tuple[ScopeKind, Limit] | None = None
        longest = 0.0
        for scope, state in zip(scopes, states, strict=True):
            seconds, which = state.wait(scope.limits, tokens)
            if seconds > 0:
                refused = refused or (scope.kind, which)
                longest = max(longest, seconds)
        if refused is not None:
            retry_after = max(math.ceil(longest), 1)
            requests = _tightest([s.requests for s in states])
            tokens_quota = _tightest([s.tokens for s in states])
            return Refusal(refused[0], refused[1], retry_after, requests, tokens_quota)
        for state in states:
            state.in_flight += 1
            if state.requests is not None:
                state.requests.level -= 1
            if state.tokens is not None:
                state.tokens.level -= tokens
        requests = _tightest([s.requests for s in states])
        return Lease(tuple(scopes), tokens, requests, _tightest([s.tokens for s in states]))

    def finish(self, lease: Lease, actual_tokens: int | None) -> None:
        """See ``RateLimiter.finish``."""
        if lease.finished:
            return
        lease.finished = True
        for scope in lease.scopes:
            state = self._states.get((scope.kind, scope.id))
            if state is None:  # cannot happen while in flight; nothing to settle anyway
                continue
            if state.in_flight > 0:
                state.in_flight -= 1
            bucket = state.tokens
            if actual_tokens is None or bucket is None:
                continue
            debited = lease.tokens if scope.limits.tpm is not None else 0
            bucket.level -= actual_tokens - debited
            if bucket.level > bucket.capacity:
                bucket.level = float(bucket.capacity)

    def _state(self, scope: LimitScope, now: float) -> _State:
        key = (scope.kind, scope.id)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(now)
        else:
            state.touched = now
            self._states.move_to_end(key)
        limits = scope.limits
        state.requests = _bucket(state.requests, limits.rpm, now)
        state.tokens = _bucket(state.tokens, limits.tpm, now)
        return state

    def _evict(self, now: float) -> None:
        """Look at the least recently used states: drop idle ones, requeue busy ones; stop
        at one used within the last minute (every later one was used later still)."""
        states = self._states
        for _ in range(EVICT_SCAN):
            if not states:
                return
            key = next(iter(states))
            state = states[key]
            if now - state.touched < WINDOW_SECONDS:
                return
            if state.idle(now):
                del states[key]
            else:
                state.touched = now
                states.move_to_end(key)


def quota_headers(requests: Quota | None, tokens: Quota | None) -> list[tuple[bytes, bytes]]:
    """``X-RateLimit-{Limit,Remaining,Reset}-{Requests,Tokens}``, as OpenAI names them."""
    headers: list[tuple[bytes, bytes]] = []
    for name, quota in ((b"requests", requests), (b"tokens", tokens)):
        if quota is None:
            continue
        headers.append((b"x-ratelimit-limit-" + name, str(quota.limit).encode()))
        headers.append((b"x-ratelimit-remaining-" + name, str(quota.remaining).encode()))
        headers.append((b"x-ratelimit-reset-" + name, duration(quota.reset_seconds).encode()))
    return headers


def duration(seconds: float) -> str:
    """Whole seconds, rounded up, as OpenAI writes them: ``0s``, ``30s``, ``6m0s``."""
    whole = max(math.ceil(seconds - 1e-9), 0)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
