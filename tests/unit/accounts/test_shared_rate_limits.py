"""Rate limits shared by replicas through the real Redis; the per-process fallback when it is
away. Two limiters over two stores stand for two gateway replicas.

Redis keeps real time, so every expectation here holds within a second of wall time (the
buckets refill while a test runs, by less than one unit at the limits used)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orcarouter.accounts.rate_limits import (
    InMemoryRateLimiter,
    Lease,
    LimitScope,
    Quota,
    RateLimiter,
    RateLimits,
    Refusal,
    quota_headers,
)
from orcarouter.accounts.shared_rate_limits import (
    DEGRADED,
    SETTLEMENT_LOST,
    SharedRateLimiter,
    scaled,
)
from orcarouter.observability.metrics import Metrics
from orcarouter.state.redis import SharedStore, SharedStoreUnavailable
from tests.support.services import RedisSpace

CLOSED = "redis://127.0.0.1:1/0"


@dataclass
class Replica:
    store: SharedStore
    limiter: SharedRateLimiter
    metrics: Metrics

    def degraded(self, reason: str = DEGRADED) -> float:
        value = self.metrics.registry.get_sample_value(
            "orcarouter_degraded_decisions_total", {"component": "rate_limit", "reason": reason}
        )
        return value or 0.0


class Replicas:
    """Builds replicas on one Redis prefix and closes them all afterwards."""

    def __init__(self, space: RedisSpace) -> None:
        self.space = space
        self.made: list[Replica] = []

    def __call__(
        self,
        url: str | None = None,
        *,
        retry_interval: float = 1.0,
        fallback_share: float = 1.0,
        lease_ttl: float = 960.0,
    ) -> Replica:
        metrics = Metrics()
        # A generous timeout: a burst opens a connection per admission, and on a loaded
        # machine connecting can take longer than the gateway's default, which would send
        # these tests to the fallback they do not mean to test (the fallback's own tests
        # use a closed port).
        store = SharedStore(
            url or self.space.url,
            prefix=self.space.prefix,
            retry_interval=retry_interval,
            metrics=metrics,
            timeout=5.0,
        )
        limiter = SharedRateLimiter(
            store, metrics, fallback_share=fallback_share, lease_ttl=lease_ttl
        )
        replica = Replica(store, limiter, metrics)
        self.made.append(replica)
        return replica

    async def close(self) -> None:
        for replica in self.made:
            await replica.limiter.aclose()
            await replica.store.close()


@pytest.fixture
async def replicas(redis_space: RedisSpace) -> AsyncIterator[Replicas]:
    made = Replicas(redis_space)
    yield made
    await made.close()


@pytest.fixture
def sync_redis(redis_space: RedisSpace) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_space.url) as client:
        yield client


def key(
    rpm: int | None = None, tpm: int | None = None, concurrency: int | None = None
) -> LimitScope:
    return LimitScope("key", "key_1", RateLimits(rpm, tpm, concurrency))


def workspace(
    rpm: int | None = None, tpm: int | None = None, concurrency: int | None = None
) -> LimitScope:
    return LimitScope("workspace", "ws_1", RateLimits(rpm, tpm, concurrency))


def admitted(outcome: Lease | Refusal) -> Lease:
    assert isinstance(outcome, Lease), outcome
    return outcome


def refused(outcome: Lease | Refusal) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    return outcome


def remaining(quota: Quota | None) -> int:
    assert quota is not None
    return quota.remaining


# --- shared across replicas --------------------------------------------------------------------


async def test_an_rpm_limit_holds_exactly_across_replicas(replicas: Replicas) -> None:
    one, two = replicas().limiter, replicas().limiter
    scopes = [key(rpm=20), workspace(rpm=1000)]
    outcomes = await asyncio.gather(
        *(limiter.admit(scopes, 0) for _ in range(25) for limiter in (one, two))
    )
    leases = [o for o in outcomes if isinstance(o, Lease)]
    refusals = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(leases) == 20
    assert {(r.scope, r.limit, r.retry_after) for r in refusals} == {("key", "requests", 3)}
    assert sorted(remaining(lease.requests_quota) for lease in leases) == list(range(20))
    quota = refusals[0].requests_quota
    assert quota is not None and (quota.limit, quota.remaining) == (20, 0)


async def test_the_key_is_named_first_and_retry_after_is_the_longest_wait(
    replicas: Replicas,
) -> None:
    one, two = replicas().limiter, replicas().limiter
    scopes = [key(rpm=2), workspace(rpm=1)]
    admitted(await one.admit(scopes, 0))
    refusal = refused(await two.admit(scopes, 0))
    assert (refusal.scope, refusal.limit, refusal.retry_after) == ("workspace", "requests", 60)
    admitted(await two.admit([key(rpm=2)], 0))  # the refusal debited nothing
    refusal = refused(await one.admit(scopes, 0))
    assert (refusal.scope, refusal.limit, refusal.retry_after) == ("key", "requests", 60)
    assert "requests per minute" in refusal.message


async def test_tokens_are_debited_on_the_estimate_and_corrected_at_finish(
    replicas: Replicas,
) -> None:
    one, two = replicas().limiter, replicas().limiter
    scopes = [key(tpm=60)]  # one token a second comes back
    lease = admitted(await one.admit(scopes, 10))
    assert remaining(lease.tokens_quota) == 50
    one.finish(lease, 40)  # a long answer: the minute holds 40 tokens
    await one.drain()
    lease = admitted(await two.admit(scopes, 20))
    assert remaining(lease.tokens_quota) == 0
    two.finish(lease, 5)  # shorter than estimated: 15 come back
    await two.drain()
    lease = admitted(await one.admit(scopes, 10))
    assert remaining(lease.tokens_quota) == 5
    one.finish(lease, 160)  # a debt of 145
    one.finish(lease, 160)  # a second finish settles nothing
    await one.drain()
    refusal = refused(await two.admit(scopes, 10))
    assert (refusal.scope, refusal.limit, refusal.retry_after) == ("key", "tokens", 155)
    assert remaining(refusal.tokens_quota) == 0
    quota = refusal.tokens_quota
    assert quota is not None and 154 < quota.reset_seconds <= 205


async def test_a_prompt_above_the_limit_waits_for_a_full_bucket(replicas: Replicas) -> None:
    limiter = replicas().limiter
    scopes = [key(tpm=60)]
    limiter.finish(admitted(await limiter.admit(scopes, 6)), 6)
    await limiter.drain()
    assert refused(await limiter.admit(scopes, 500)).retry_after == 6
    fresh = [LimitScope("key", "other", RateLimits(tpm=60))]
    lease = admitted(await limiter.admit(fresh, 500))  # a full bucket takes it, never refused
    assert remaining(lease.tokens_quota) == 0
    assert refused(await limiter.admit(fresh, 1)).retry_after == 441


async def test_concurrency_is_shared_freed_by_finish_and_by_a_dead_replicas_lease_ttl(
    replicas: Replicas,
) -> None:
    one, two = replicas().limiter, replicas().limiter
    dead = replicas(lease_ttl=0.3).limiter
    scopes = [key(concurrency=2), workspace(concurrency=10)]
    first = admitted(await one.admit(scopes, 0))
    admitted(await two.admit(scopes, 0))
    refusal = refused(await one.admit(scopes, 0))
    assert (refusal.scope, refusal.limit, refusal.retry_after) == ("key", "concurrency", 1)
    assert "concurrent requests" in refusal.message
    one.finish(first, None)
    await one.drain()
    admitted(await dead.admit(scopes, 0))  # its replica dies: this lease is never finished
    refused(await two.admit(scopes, 0))
    await asyncio.sleep(0.35)
    admitted(await two.admit(scopes, 0))
    refused(await one.admit(scopes, 0))


async def test_a_workspace_slot_is_taken_only_when_every_scope_admits(
    replicas: Replicas,
) -> None:
    one, two = replicas().limiter, replicas().limiter
    tight = [LimitScope("key", "a", RateLimits(concurrency=1)), workspace(concurrency=2)]
    loose = [LimitScope("key", "b", RateLimits(concurrency=5)), workspace(concurrency=2)]
    admitted(await one.admit(tight, 0))
    assert refused(await two.admit(tight, 0)).scope == "key"
    lease = admitted(await two.admit(loose, 0))  # the refusal took no workspace slot
    assert refused(await one.admit(loose, 0)).scope == "workspace"
    two.finish(lease, None)
    await two.drain()
    admitted(await one.admit(loose, 0))


async def test_a_changed_limit_keeps_what_was_spent(replicas: Replicas) -> None:
    one, two = replicas().limiter, replicas().limiter
    admitted(await one.admit([key(rpm=10)], 0))
    lease = admitted(await two.admit([key(rpm=5)], 0))
    quota = lease.requests_quota
    assert quota is not None and (quota.limit, quota.remaining) == (5, 3)
    spent = [admitted(await one.admit([key(rpm=5)], 0)) for _ in range(3)]
    assert remaining(spent[-1].requests_quota) == 0
    refusal = refused(await two.admit([key(rpm=2)], 0))  # lowered when empty: 3 in debt
    assert refusal.retry_after == 120
    lease = admitted(await one.admit([key(rpm=8)], 0))  # raised: the 5 admitted still count
    assert remaining(lease.requests_quota) == 2


async def test_a_tpm_set_while_in_flight_counts_the_whole_usage(replicas: Replicas) -> None:
    one, two = replicas().limiter, replicas().limiter
    lease = admitted(await one.admit([key(rpm=5)], 10))  # no tpm yet: no tokens debited
    admitted(await two.admit([key(rpm=5, tpm=100)], 0))
    one.finish(lease, 30)
    await one.drain()
    lease = admitted(await two.admit([key(rpm=5, tpm=100)], 0))
    assert remaining(lease.tokens_quota) == 70


async def test_a_removed_limit_starts_full_when_set_again(replicas: Replicas) -> None:
    limiter = replicas().limiter
    admitted(await limiter.admit([key(rpm=1, tpm=100)], 50))
    refused(await limiter.admit([key(rpm=1, tpm=100)], 0))
    lease = admitted(await limiter.admit([key(tpm=100)], 10))  # no rpm: its bucket is dropped
    assert lease.requests_quota is None and remaining(lease.tokens_quota) == 40
    lease = admitted(await limiter.admit([key(rpm=1, tpm=100)], 0))
    assert remaining(lease.requests_quota) == 0


async def test_headers_are_built_as_for_the_in_memory_limiter(replicas: Replicas) -> None:
    limiter = replicas().limiter
    lease = admitted(await limiter.admit([key(rpm=2, tpm=1000), workspace(rpm=60)], 100))
    assert dict(quota_headers(lease.requests_quota, lease.tokens_quota)) == {
        b"x-ratelimit-limit-requests": b"2",  # the tightest: the key's
        b"x-ratelimit-remaining-requests": b"1",
        b"x-ratelimit-reset-requests": b"30s",
        b"x-ratelimit-limit-tokens": b"1000",
        b"x-ratelimit-remaining-tokens": b"900",
        b"x-ratelimit-reset-tokens": b"6s",
    }


async def test_no_scopes_need_no_redis(replicas: Replicas) -> None:
    replica = replicas(CLOSED)
    lease = admitted(await replica.limiter.admit([], 100))
    assert (lease.requests_quota, lease.tokens_quota) == (None, None)
    replica.limiter.finish(lease, 10)
    assert replica.degraded() == 0


# --- keys in Redis -----------------------------------------------------------------------------


async def test_idle_keys_expire_when_their_buckets_would_be_full(
    replicas: Replicas, redis_space: RedisSpace, sync_redis: redis.Redis
) -> None:
    limiter = replicas(lease_ttl=30).limiter
    buckets = redis_space.prefix + "rl:b:key:key_1"
    flight = redis_space.prefix + "rl:f:key:key_1"
    lease = admitted(await limiter.admit([key(rpm=60, tpm=600, concurrency=3)], 300))
    assert 25_000 < sync_redis.pttl(flight) <= 30_000  # the lease's ttl
    assert 29_000 < sync_redis.pttl(buckets) <= 30_001  # 300 tokens at 10 a second
    limiter.finish(lease, 30)  # 270 come back
    await limiter.drain()
    assert not sync_redis.exists(flight)  # its last lease ended
    assert 1_000 < sync_redis.pttl(buckets) <= 3_001  # 30 tokens; the request's second
    admitted(await limiter.admit([LimitScope("key", "quick", RateLimits(rpm=600))], 0))
    quick = redis_space.prefix + "rl:b:key:quick"
    assert 0 < sync_redis.pttl(quick) <= 101  # whole ms, rounded up
    await asyncio.sleep(0.15)
    assert not sync_redis.exists(quick)  # full again, so gone
    left = redis_space.keys()
    assert left and all(sync_redis.pttl(k) > 0 for k in left)


async def test_a_limit_changed_on_a_refusal_keeps_its_state_long_enough(
    replicas: Replicas, redis_space: RedisSpace, sync_redis: redis.Redis
) -> None:
    limiter = replicas().limiter
    buckets = redis_space.prefix + "rl:b:key:key_1"
    admitted(await limiter.admit([key(rpm=60, concurrency=1)], 0))
    assert sync_redis.pttl(buckets) <= 1_001  # one request of 60 a minute: full in a second
    refusal = refused(await limiter.admit([key(rpm=2, concurrency=1)], 0))
    assert refusal.limit == "concurrency"
    assert 29_000 < sync_redis.pttl(buckets) <= 30_001  # one request of 2 a minute


async def test_a_refund_never_fills_a_bucket_beyond_its_limit(replicas: Replicas) -> None:
    limiter = replicas().limiter
    scopes = [key(tpm=60_000)]  # 1000 tokens a second
    early = admitted(await limiter.admit(scopes, 50))
    await asyncio.sleep(0.1)
    lease = admitted(await limiter.admit(scopes, 0))  # full again (and stored so)
    assert remaining(lease.tokens_quota) == 60_000
    limiter.finish(early, 0)  # 50 come back to a full bucket
    await limiter.drain()
    assert remaining(admitted(await limiter.admit(scopes, 0)).tokens_quota) == 60_000


async def test_a_cancelled_admission_gives_its_slot_back(replicas: Replicas) -> None:
    limiter = replicas().limiter
    scopes = [key(concurrency=1)]
    for pause in (0, 1, 2, 3):
        task = asyncio.create_task(limiter.admit(scopes, 0))
        for _ in range(pause):
            await asyncio.sleep(0)
        task.cancel()
        try:
            outcome = await task
        except asyncio.CancelledError:
            pass
        else:
            limiter.finish(admitted(outcome), None)  # it finished before the cancel
        await limiter.drain()
        limiter.finish(admitted(await limiter.admit(scopes, 0)), None)
        await limiter.drain()


# --- the fallback ------------------------------------------------------------------------------


def test_fallback_limits_are_scaled_up_to_whole_units() -> None:
    assert scaled(RateLimits(4, 1000, 3), 0.5) == RateLimits(2, 500, 2)
    assert scaled(RateLimits(1, None, 1), 0.1) == RateLimits(1, None, 1)
    assert scaled(RateLimits(100, 30, None), 0.1) == RateLimits(10, 3, None)
    assert scaled(RateLimits(10, 10, 10), 1 / 3) == RateLimits(4, 4, 4)


async def test_without_redis_each_replica_decides_alone_on_its_share(
    replicas: Replicas,
) -> None:
    replica = replicas(CLOSED, fallback_share=0.5)
    limiter = replica.limiter
    scopes = [key(rpm=6, concurrency=4)]
    first = admitted(await limiter.admit(scopes, 0))
    quota = first.requests_quota
    assert quota is not None and (quota.limit, quota.remaining) == (3, 2)
    admitted(await limiter.admit(scopes, 0))
    refusal = refused(await limiter.admit(scopes, 0))
    assert (refusal.scope, refusal.limit, refusal.retry_after) == ("key", "concurrency", 1)
    limiter.finish(first, None)  # the fallback admitted it: the fallback frees its slot
    await limiter.drain()
    admitted(await limiter.admit(scopes, 0))
    assert refused(await limiter.admit(scopes, 0)).limit == "requests"
    assert replica.degraded() == 5
    assert not replica.store.available


async def test_a_lease_outlives_an_outage_with_the_limiter_that_admitted_it(
    replicas: Replicas, redis_space: RedisSpace
) -> None:
    replica, other = replicas(retry_interval=0.05), replicas()
    limiter = replica.limiter
    scopes = [key(concurrency=1, tpm=100)]
    replica.store.failed("test")  # the circuit opens as after a failed call
    local = admitted(await limiter.admit(scopes, 10))
    assert replica.degraded() == 1
    assert redis_space.keys() == []  # decided without Redis
    await asyncio.sleep(0.06)
    shared = admitted(await limiter.admit(scopes, 10))  # Redis again: its slot is free there
    assert replica.degraded() == 1 and replica.store.available
    refused(await other.limiter.admit(scopes, 10))  # and the other replica sees it taken
    limiter.finish(local, 50)  # goes to the fallback, which admitted it
    limiter.finish(shared, 30)  # goes to Redis
    await limiter.drain()
    lease = admitted(await other.limiter.admit(scopes, 10))
    assert remaining(lease.tokens_quota) == 60
    replica.store.failed("test")
    lease = admitted(await limiter.admit(scopes, 10))  # the fallback's slot was freed
    assert remaining(lease.tokens_quota) == 40  # 100 - 50 - 10
    assert replica.degraded() == 2


async def test_a_finish_that_cannot_reach_redis_is_counted_and_settled_when_it_returns(
    replicas: Replicas,
) -> None:
    replica, other = replicas(retry_interval=0.05), replicas()
    scopes = [key(concurrency=1, tpm=100)]
    lease = admitted(await replica.limiter.admit(scopes, 40))
    replica.store.failed("test")
    replica.limiter.finish(lease, 10)  # never raises
    await replica.limiter.drain()
    assert replica.degraded(SETTLEMENT_LOST) == 1
    assert replica.degraded() == 0
    refused(await other.limiter.admit(scopes, 0))  # the slot is still taken in Redis
    await asyncio.sleep(0.06)
    # Redis is back: the settlement runs first, so the slot and the refund are there now,
    # not after the lease's time to live.
    back = admitted(await replica.limiter.admit(scopes, 0))
    assert remaining(back.tokens_quota) == 90
    assert replica.degraded() == 0


async def test_admissions_after_an_outage_share_one_run_of_the_settlements(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = replicas(retry_interval=0.05)
    store, scopes = replica.store, [key(concurrency=5)]
    leases = [admitted(await replica.limiter.admit(scopes, 0)) for _ in range(3)]
    store.failed("test")
    for lease in leases:
        replica.limiter.finish(lease, None)
    await replica.limiter.drain()
    await asyncio.sleep(0.06)
    run_script, scripts = store.run_script, []

    async def counted(*args: Any) -> Any:
        scripts.append(args[-1])
        return await run_script(*args)

    monkeypatch.setattr(store, "run_script", counted)
    outcomes = await asyncio.gather(*(replica.limiter.admit(scopes, 0) for _ in range(5)))
    assert scripts.count("rate limit finish") == 3  # each lost settlement once
    assert all(isinstance(o, Lease) for o in outcomes)  # all five fit: the slots came back


async def test_an_admission_whose_reply_was_lost_gives_its_slot_back_with_redis(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica, other = replicas(retry_interval=0.05), replicas()
    store, scopes = replica.store, [key(concurrency=1)]
    run_script = store.run_script

    async def ran_but_timed_out(*args: Any) -> Any:
        await run_script(*args)
        monkeypatch.undo()
        store.failed("test")
        raise SharedStoreUnavailable("rate limit admit")

    monkeypatch.setattr(store, "run_script", ran_but_timed_out)
    local = admitted(await replica.limiter.admit(scopes, 0))  # decided by the fallback
    assert replica.degraded() == 1
    refused(await other.limiter.admit(scopes, 0))  # the lost admission holds Redis' slot
    replica.limiter.finish(local, None)
    await asyncio.sleep(0.06)
    shared = admitted(await replica.limiter.admit(scopes, 0))  # released first
    refused(await other.limiter.admit(scopes, 0))
    replica.limiter.finish(shared, None)
    await replica.limiter.drain()
    admitted(await other.limiter.admit(scopes, 0))


async def test_settling_a_lease_twice_corrects_its_tokens_once(replicas: Replicas) -> None:
    limiter = replicas().limiter
    scopes = [key(tpm=100)]
    lease = admitted(await limiter.admit(scopes, 50))
    limiter.finish(lease, 10)
    await limiter.drain()
    lease.finished = False  # as when a settlement that did run is replayed
    limiter.finish(lease, 10)
    await limiter.drain()
    assert remaining(admitted(await limiter.admit(scopes, 0)).tokens_quota) == 90


# --- the same decisions as the in-memory limiter -----------------------------------------------

LIMITS = st.builds(
    RateLimits,
    # rpm and tpm coprime, so no requests wait ever ties a tokens wait (a tie would fall
    # either way with the time Redis saw pass)
    st.sampled_from([None, 2, 3, 5]),
    st.sampled_from([None, 47, 53, 59]),
    st.sampled_from([None, 1, 2, 3]),
)
ADMIT = st.tuples(
    st.just("admit"), st.sampled_from(["key", "workspace", "both"]), st.integers(0, 70)
)
FINISH = st.tuples(st.just("finish"), st.integers(0, 15), st.none() | st.integers(0, 120))
RELIMIT = st.tuples(st.just("relimit"), st.sampled_from([2, 3, 5]), st.sampled_from([47, 53, 59]))
Operation = tuple[str, Any, Any]
OPERATIONS: st.SearchStrategy[list[Operation]] = st.lists(
    st.one_of(ADMIT, ADMIT, FINISH, RELIMIT), max_size=16
)


def _relimited(limits: RateLimits, rpm: int, tpm: int) -> RateLimits:
    return RateLimits(
        rpm if limits.rpm is not None else None,
        tpm if limits.tpm is not None else None,
        limits.concurrency,
    )


def _same_quota(shared: Quota | None, *candidates: Quota | None) -> bool:
    """Equal to one of the in-memory answers (the tightest of tied buckets may be either)."""
    return any(
        (shared is None and quota is None)
        or (
            shared is not None
            and quota is not None
            and (shared.limit, shared.remaining) == (quota.limit, quota.remaining)
            and abs(shared.reset_seconds - quota.reset_seconds) < 1.0
        )
        for quota in candidates
    )


async def _replay(
    space: RedisSpace, key_limits: RateLimits, ws_limits: RateLimits, operations: list[Operation]
) -> None:
    metrics = Metrics()
    store = SharedStore(space.url, prefix=space.prefix, metrics=metrics)
    shared = SharedRateLimiter(store, metrics)
    frozen = 1000.0
    memory = InMemoryRateLimiter(clock=lambda: frozen)
    mirror = InMemoryRateLimiter(clock=lambda: frozen)  # scopes reversed: ties broken the other way
    tag = secrets.token_hex(4)
    limiters: tuple[RateLimiter, ...] = (shared, memory, mirror)  # one protocol
    leases: list[tuple[Lease, Lease, Lease]] = []
    try:
        for operation in operations:
            if operation[0] == "relimit":
                key_limits = _relimited(key_limits, operation[1], operation[2])
                continue
            if operation[0] == "finish":
                if leases:
                    held = leases.pop(operation[1] % len(leases))
                    for limiter, lease in zip(limiters, held, strict=True):
                        limiter.finish(lease, operation[2])
                    await shared.drain()
                continue
            every = [
                LimitScope("key", f"k{tag}", key_limits),
                LimitScope("workspace", f"w{tag}", ws_limits),
            ]
            chosen = {"key": every[:1], "workspace": every[1:], "both": every}[operation[1]]
            scopes = [scope for scope in chosen if scope.limits.limited]
            if not scopes:
                continue
            tokens = operation[2]
            got = await shared.admit(scopes, tokens)
            want = memory.try_admit(scopes, tokens)
            other = mirror.try_admit(scopes[::-1], tokens)
            assert isinstance(got, Lease) == isinstance(want, Lease), (got, want)
            assert isinstance(other, Lease) == isinstance(want, Lease), (other, want)
            assert _same_quota(got.requests_quota, want.requests_quota, other.requests_quota)
            assert _same_quota(got.tokens_quota, want.tokens_quota, other.tokens_quota)
            if isinstance(got, Refusal):
                assert isinstance(want, Refusal)
                assert (got.scope, got.limit) == (want.scope, want.limit)
                assert want.retry_after - 1 <= got.retry_after <= want.retry_after
            else:
                assert isinstance(want, Lease) and isinstance(other, Lease)
                leases.append((got, want, other))
        assert (
            metrics.registry.get_sample_value(
                "orcarouter_degraded_decisions_total",
                {"component": "rate_limit", "reason": DEGRADED},
            )
            is None
        )
    finally:
        await shared.aclose()
        await store.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(key_limits=LIMITS, ws_limits=LIMITS, operations=OPERATIONS)
def test_decisions_and_quotas_match_the_in_memory_limiter(
    redis_space: RedisSpace,
    key_limits: RateLimits,
    ws_limits: RateLimits,
    operations: list[Operation],
) -> None:
    asyncio.run(_replay(redis_space, key_limits, ws_limits, operations))
