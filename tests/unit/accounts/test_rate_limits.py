"""The in-memory rate limiter on an injected clock; rate limits in the store and the key cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.key_admin import KeyAdmin, KeySpec, grant_of_key, grant_of_user
from orcarouter.accounts.keys import DEFAULT_WORKSPACE, KeyCache, KeyRowLimits, issue_key
from orcarouter.accounts.limits import GrantExceeded, KeyLimits, LimitError, check_within
from orcarouter.accounts.rate_limits import (
    EVICT_SCAN,
    InMemoryRateLimiter,
    Lease,
    LimitScope,
    RateLimits,
    Refusal,
    duration,
    quota_headers,
    scopes_of,
)
from orcarouter.store.accounts import WorkspaceMembers
from orcarouter.store.database import create_engine_for, migrate
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.workspace_keys import WorkspaceKeys


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(clock=clock)


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


# --- requests per minute -----------------------------------------------------------------------


def test_a_minute_of_requests_may_go_at_once_then_they_come_back_evenly(
    limiter: InMemoryRateLimiter, clock: Clock
) -> None:
    scopes = [key(rpm=3)]
    leases = [admitted(limiter.try_admit(scopes, 0)) for _ in range(3)]
    assert [lease.requests_quota.remaining for lease in leases if lease.requests_quota] == [2, 1, 0]
    refusal = refused(limiter.try_admit(scopes, 0))
    assert (refusal.scope, refusal.limit, refusal.retry_after) == ("key", "requests", 20)
    assert "requests per minute" in refusal.message and "20s" in refusal.message
    clock.advance(19.9)
    assert refused(limiter.try_admit(scopes, 0)).retry_after == 1  # never 0
    clock.advance(0.1)
    admitted(limiter.try_admit(scopes, 0))  # one request's worth came back after 60/3 s
    refused(limiter.try_admit(scopes, 0))


def test_a_refusal_debits_nothing(limiter: InMemoryRateLimiter, clock: Clock) -> None:
    scopes = [key(rpm=1), workspace(rpm=10)]
    admitted(limiter.try_admit(scopes, 0))
    for _ in range(5):
        refused(limiter.try_admit(scopes, 0))
    other = [LimitScope("key", "key_2", RateLimits(rpm=100)), workspace(rpm=10)]
    lease = admitted(limiter.try_admit(other, 0))
    assert lease.requests_quota is not None and lease.requests_quota.remaining == 8


def test_the_key_is_named_first_and_retry_after_is_the_longest_wait(
    limiter: InMemoryRateLimiter,
) -> None:
    scopes = [key(rpm=2), workspace(rpm=1)]
    admitted(limiter.try_admit(scopes, 0))
    refusal = refused(limiter.try_admit(scopes, 0))
    assert (refusal.scope, refusal.retry_after) == ("workspace", 60)  # the key still had one
    admitted(limiter.try_admit([key(rpm=2)], 0))  # the key's own bucket was untouched
    refusal = refused(limiter.try_admit(scopes, 0))
    assert (refusal.scope, refusal.limit) == ("key", "requests")
    assert refusal.retry_after == 60  # the workspace's wait is the longer one


def test_a_workspace_limit_binds_its_keys_together(limiter: InMemoryRateLimiter) -> None:
    first = [LimitScope("key", "a", RateLimits()), workspace(rpm=2)]
    second = [LimitScope("key", "b", RateLimits()), workspace(rpm=2)]
    admitted(limiter.try_admit(first, 0))
    admitted(limiter.try_admit(second, 0))
    assert refused(limiter.try_admit(first, 0)).scope == "workspace"
    assert refused(limiter.try_admit(second, 0)).scope == "workspace"


def test_a_lowered_limit_keeps_what_was_spent(limiter: InMemoryRateLimiter) -> None:
    admitted(limiter.try_admit([key(rpm=10)], 0))
    lease = admitted(limiter.try_admit([key(rpm=5)], 0))
    assert lease.requests_quota is not None
    assert (lease.requests_quota.limit, lease.requests_quota.remaining) == (5, 3)


# --- tokens per minute -------------------------------------------------------------------------


def test_tokens_are_admitted_on_the_estimate_and_corrected_to_the_actual_usage(
    limiter: InMemoryRateLimiter, clock: Clock
) -> None:
    scopes = [key(tpm=1000)]
    lease = admitted(limiter.try_admit(scopes, 100))
    assert lease.tokens_quota is not None and lease.tokens_quota.remaining == 900
    limiter.finish(lease, 700)  # the answer was long: the minute holds 700 tokens, not 100
    lease = admitted(limiter.try_admit(scopes, 300))
    assert lease.tokens_quota is not None and lease.tokens_quota.remaining == 0
    limiter.finish(lease, 50)  # shorter than estimated: 250 tokens come back
    lease = admitted(limiter.try_admit(scopes, 200))
    assert lease.tokens_quota is not None and lease.tokens_quota.remaining == 50
    refusal = refused(limiter.try_admit(scopes, 100))
    assert (refusal.limit, refusal.retry_after) == ("tokens", 3)  # 50 tokens at 1000/60 per s
    clock.advance(3)
    admitted(limiter.try_admit(scopes, 100))


def test_usage_beyond_the_limit_is_a_debt_that_holds_later_requests_back(
    limiter: InMemoryRateLimiter, clock: Clock
) -> None:
    scopes = [key(tpm=600)]
    limiter.finish(admitted(limiter.try_admit(scopes, 10)), 1800)  # three minutes' worth
    refusal = refused(limiter.try_admit(scopes, 10))
    assert refusal.retry_after == 121  # 1200 owed plus 10 needed, at 10 tokens a second
    assert refusal.tokens_quota is not None and refusal.tokens_quota.remaining == 0
    clock.advance(121)
    admitted(limiter.try_admit(scopes, 10))


def test_a_prompt_larger_than_a_minute_waits_for_a_full_bucket(
    limiter: InMemoryRateLimiter, clock: Clock
) -> None:
    scopes = [key(tpm=100)]
    limiter.finish(admitted(limiter.try_admit(scopes, 10)), 10)
    assert refused(limiter.try_admit(scopes, 500)).retry_after == 6  # until full again
    clock.advance(6)
    lease = admitted(limiter.try_admit(scopes, 500))  # never refused for good
    limiter.finish(lease, None)  # unknown usage: the estimate stands
    assert refused(limiter.try_admit(scopes, 1)).retry_after == 241


def test_finishing_twice_settles_once(limiter: InMemoryRateLimiter) -> None:
    scopes = [key(tpm=100, concurrency=1)]
    lease = admitted(limiter.try_admit(scopes, 10))
    limiter.finish(lease, 60)
    limiter.finish(lease, 60)
    lease = admitted(limiter.try_admit(scopes, 10))
    assert lease.tokens_quota is not None and lease.tokens_quota.remaining == 30


# --- concurrency -------------------------------------------------------------------------------


def test_concurrency_slots_are_held_until_finished(limiter: InMemoryRateLimiter) -> None:
    scopes = [key(concurrency=2)]
    first = admitted(limiter.try_admit(scopes, 0))
    admitted(limiter.try_admit(scopes, 0))
    refusal = refused(limiter.try_admit(scopes, 0))
    assert (refusal.limit, refusal.retry_after) == ("concurrency", 1)
    assert "concurrent requests" in refusal.message
    limiter.finish(first, None)
    admitted(limiter.try_admit(scopes, 0))
    refused(limiter.try_admit(scopes, 0))


def test_a_workspace_slot_is_taken_only_when_the_key_admits_too(
    limiter: InMemoryRateLimiter,
) -> None:
    tight = [LimitScope("key", "a", RateLimits(concurrency=1)), workspace(concurrency=2)]
    loose = [LimitScope("key", "b", RateLimits()), workspace(concurrency=2)]
    admitted(limiter.try_admit(tight, 0))
    assert refused(limiter.try_admit(tight, 0)).scope == "key"
    lease = admitted(limiter.try_admit(loose, 0))  # the refusal took no workspace slot
    assert refused(limiter.try_admit(loose, 0)).scope == "workspace"
    limiter.finish(lease, None)
    admitted(limiter.try_admit(loose, 0))


# --- memory ------------------------------------------------------------------------------------


def test_idle_scopes_are_evicted_and_busy_or_indebted_ones_kept(
    limiter: InMemoryRateLimiter, clock: Clock
) -> None:
    busy = admitted(limiter.try_admit([LimitScope("key", "busy", RateLimits(concurrency=5))], 0))
    owing = [LimitScope("key", "owing", RateLimits(tpm=60))]
    limiter.finish(admitted(limiter.try_admit(owing, 1)), 600)  # ten minutes of debt
    for n in range(50):
        once = [LimitScope("key", f"once_{n}", RateLimits(rpm=10))]
        limiter.finish(admitted(limiter.try_admit(once, 0)), None)
    assert len(limiter) == 52
    steady = [LimitScope("key", "steady", RateLimits(rpm=10_000))]
    clock.advance(61)  # every one-off bucket is full again
    for _ in range(60):
        limiter.finish(admitted(limiter.try_admit(steady, 0)), None)
    assert len(limiter) == 3  # busy, owing and steady remain
    limiter.finish(busy, None)
    clock.advance(700)  # the debt is paid and every bucket is full
    for _ in range(EVICT_SCAN):
        limiter.finish(admitted(limiter.try_admit(steady, 0)), None)
    assert len(limiter) == 1


def test_an_evicted_scope_starts_afresh(limiter: InMemoryRateLimiter, clock: Clock) -> None:
    scopes = [key(rpm=1)]
    admitted(limiter.try_admit(scopes, 0))
    clock.advance(60)
    limiter.try_admit([LimitScope("key", "other", RateLimits(rpm=1))], 0)
    admitted(limiter.try_admit(scopes, 0))
    refused(limiter.try_admit(scopes, 0))


async def test_admit_is_the_protocol_coroutine(limiter: InMemoryRateLimiter) -> None:
    admitted(await limiter.admit([key(rpm=1)], 0))
    refused(await limiter.admit([key(rpm=1)], 0))


# --- headers and scopes ------------------------------------------------------------------------


def test_headers_follow_openai_names_and_durations(limiter: InMemoryRateLimiter) -> None:
    lease = admitted(limiter.try_admit([key(rpm=2, tpm=1000), workspace(rpm=60)], 100))
    headers = dict(quota_headers(lease.requests_quota, lease.tokens_quota))
    assert headers == {
        b"x-ratelimit-limit-requests": b"2",  # the tightest: the key's
        b"x-ratelimit-remaining-requests": b"1",
        b"x-ratelimit-reset-requests": b"30s",
        b"x-ratelimit-limit-tokens": b"1000",
        b"x-ratelimit-remaining-tokens": b"900",
        b"x-ratelimit-reset-tokens": b"6s",
    }
    assert quota_headers(None, None) == []
    assert [duration(s) for s in (0, 0.2, 59.5, 60, 360, 3601)] == [
        "0s",
        "1s",
        "1m0s",
        "1m0s",
        "6m0s",
        "60m1s",
    ]


def test_only_limited_scopes_are_checked() -> None:
    assert scopes_of("k", RateLimits(), "w", RateLimits()) == ()
    only = scopes_of("k", RateLimits(), "w", RateLimits(rpm=5))
    assert [(s.kind, s.id) for s in only] == [("workspace", "w")]


# --- grants ------------------------------------------------------------------------------------


def test_a_limited_caller_grants_only_limits_as_tight_or_tighter() -> None:
    parent = KeyLimits(role="developer", rpm_limit=10, tpm_limit=1000, concurrency_limit=2)
    check_within(
        KeyLimits(role="member", rpm_limit=10, tpm_limit=500, concurrency_limit=1), parent, True
    )
    for loose in (
        KeyLimits(role="member", tpm_limit=1000, concurrency_limit=2),  # no rpm: unlimited
        KeyLimits(role="member", rpm_limit=11, tpm_limit=1000, concurrency_limit=2),
        KeyLimits(role="member", rpm_limit=10, tpm_limit=1001, concurrency_limit=2),
        KeyLimits(role="member", rpm_limit=10, tpm_limit=1000, concurrency_limit=3),
    ):
        with pytest.raises(GrantExceeded):
            check_within(loose, parent, True)
    check_within(KeyLimits(role="member"), KeyLimits(role="developer"), True)


# --- the store and the key cache ---------------------------------------------------------------


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{(tmp_path / 'limits.db').as_posix()}"
    migrate(url)
    engine = create_engine_for(url)
    await WorkspaceRepository(engine).ensure(DEFAULT_WORKSPACE, "Default")
    yield engine
    await engine.dispose()


async def test_keys_carry_their_limits_and_their_workspaces_into_the_cache(
    engine: AsyncEngine,
) -> None:
    repo = KeyRepository(engine)
    issued = await issue_key(
        repo, "limited", limits=KeyRowLimits(rpm_limit=5, tpm_limit=100, concurrency_limit=2)
    )
    plain = await issue_key(repo, "plain")
    cache = KeyCache(repo)
    await cache.refresh()
    principal = cache.lookup(issued.secret)
    assert principal is not None
    assert principal.rate_limits == RateLimits(5, 100, 2)
    assert [s.kind for s in principal.limit_scopes] == ["key"]
    unlimited = cache.lookup(plain.secret)
    assert unlimited is not None and unlimited.limit_scopes == ()

    members = WorkspaceMembers(engine)
    assert await members.set_rate_limits(DEFAULT_WORKSPACE, {"rpm_limit": 7, "tpm_limit": 900})
    stored = await members.workspace(DEFAULT_WORKSPACE)
    assert stored is not None and (stored.rpm_limit, stored.tpm_limit) == (7, 900)
    await cache.refresh()  # an incremental refresh: the keys' updated_at moved
    for secret in (issued.secret, plain.secret):
        principal = cache.lookup(secret)
        assert principal is not None
        assert principal.workspace_rate_limits == RateLimits(7, 900, None)
        assert principal.limit_scopes[-1] == LimitScope(
            "workspace", DEFAULT_WORKSPACE, RateLimits(7, 900, None)
        )
    await members.set_rate_limits(DEFAULT_WORKSPACE, {"rpm_limit": None, "tpm_limit": None})
    await cache.refresh()
    unlimited = cache.lookup(plain.secret)
    assert unlimited is not None and unlimited.limit_scopes == ()


async def test_key_admin_stores_validates_and_narrows_rate_limits(engine: AsyncEngine) -> None:
    admin = KeyAdmin(KeyRepository(engine), WorkspaceKeys(engine))
    spec = KeySpec("limited", KeyLimits(role="developer", rpm_limit=10, concurrency_limit=3))
    issued = await admin.create(DEFAULT_WORKSPACE, spec, grant_of_user("admin"), "usr_1")
    assert (issued.row.rpm_limit, issued.row.tpm_limit, issued.row.concurrency_limit) == (
        10,
        None,
        3,
    )
    cache = KeyCache(KeyRepository(engine))
    await cache.refresh()
    caller = cache.lookup(issued.secret)
    assert caller is not None
    grant = grant_of_key(caller)
    with pytest.raises(GrantExceeded):
        await admin.create(
            DEFAULT_WORKSPACE, KeySpec("loose", KeyLimits(role="member")), grant, caller.key_id
        )
    child = await admin.create(
        DEFAULT_WORKSPACE,
        KeySpec("child", KeyLimits(role="member", rpm_limit=5, concurrency_limit=1)),
        grant,
        caller.key_id,
    )
    with pytest.raises(GrantExceeded):
        await admin.update(DEFAULT_WORKSPACE, child.row.id, {"rpm_limit": None}, grant)
    updated = await admin.update(DEFAULT_WORKSPACE, child.row.id, {"rpm_limit": 2}, grant)
    assert updated.rpm_limit == 2
    with pytest.raises(LimitError):
        await admin.update(
            DEFAULT_WORKSPACE, child.row.id, {"tpm_limit": 0}, grant_of_user("admin")
        )
