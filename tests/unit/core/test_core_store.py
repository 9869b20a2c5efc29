"""Every repository on every backend and driver (SQLite, PostgreSQL over asyncpg and psycopg):
values come back as they went in, writes are idempotent and atomic, races end cleanly."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from orcarouter.accounts.bootstrap import bootstrap
from orcarouter.accounts.keys import DEFAULT_WORKSPACE, KeyCache, issue_key
from orcarouter.store.accounts import (
    EmailTaken,
    LastAdmin,
    SessionRepository,
    SessionRow,
    UserRepository,
    UserRow,
    WorkspaceMembers,
    WorkspaceRow,
)
from orcarouter.store.audit import AuditEntry, AuditRepository
from orcarouter.store.database import (
    MAX_OVERFLOW,
    POOL_SIZE,
    POOL_TIMEOUT,
    Transactions,
    create_engine_for,
)
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import (
    CHANGES_LOOKBACK,
    BulkUpsert,
    KeyRepository,
    KeyRow,
    UsageRepository,
    WorkspaceRepository,
)
from orcarouter.store.routers import RouterExists, RouterRepository, RouterRow, new_router_id
from orcarouter.store.schema import usage_records
from orcarouter.store.workspace_keys import WorkspaceKeys

if TYPE_CHECKING:
    from tests.unit.core.conftest import Store

T0 = datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC)


def _key(n: int, **changes: object) -> KeyRow:
    values: dict[str, object] = {
        "id": f"key_{n:04d}",
        "workspace_id": DEFAULT_WORKSPACE,
        "name": f"key {n}",
        "key_hash": f"{n:064x}",
        "display_prefix": "sk-orca-abcd…",
        "role": "member",
        "status": "active",
        "created_at": T0 + timedelta(seconds=n),
        "updated_at": T0 + timedelta(seconds=n),
        "expires_at": None,
        "last_used_at": None,
    }
    values.update(changes)
    return KeyRow(**values)  # type: ignore[arg-type]


def _usage(n: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "request_id": f"req_{n:04d}",
        "created_at": T0 + timedelta(seconds=n),
        "workspace_id": DEFAULT_WORKSPACE,
        "key_id": None,
        "endpoint": "chat",
        "model_requested": "gpt-4o-mini",
        "model_served": "openai/gpt-4o-mini",
        "upstream_model": None,
        "provider_id": "openai",
        "stream": n % 2 == 0,
        "status_code": 200,
        "outcome": "ok",
        "error_type": None,
        "prompt_tokens": 10**12 + n,  # beyond 32 bits
        "completion_tokens": n,
        "total_tokens": 10**12 + 2 * n,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "latency_ms": 100 + n,
        "ttft_ms": None,
        "route_reason": '{"strategy": "cheapest", "candidates": ["a/é", "b/✓"]}',
        "cost_micros": 10**13 + n if n % 3 else None,  # micro-dollars beyond 32 bits, or unpriced
    }
    row.update(changes)
    return row


@pytest.fixture
async def store(any_store: Store) -> Store:
    await any_store.workspaces.ensure(DEFAULT_WORKSPACE, "Default workspace")
    return any_store


# --- keys ------------------------------------------------------------------------------------


async def test_a_key_comes_back_exactly_as_stored(store: Store) -> None:
    row = _key(
        1,
        expires_at=T0 + timedelta(days=30),
        last_used_at=T0,
        model_limits_enabled=True,
        model_limits=("openai/*", "anthropic/claude-*"),
        allow_ips=("10.0.0.0/8", "::1"),
        usd_cap_micros=5 * 10**12,
        environment="production",
        created_by="usr_1",
    )
    await store.keys.add(row)
    assert await store.keys.find_by_hash(row.key_hash) == row
    (listed,) = await store.keys.list(DEFAULT_WORKSPACE)
    assert listed == row
    assert listed.created_at.tzinfo is UTC and listed.model_limits_enabled is True


async def test_key_defaults_are_false_and_empty(store: Store) -> None:
    await store.keys.add(_key(1))
    (row,) = await store.keys.list()
    assert (row.model_limits_enabled, row.model_limits, row.allow_ips) == (False, (), ())


async def test_changes_are_read_from_a_little_before_the_last_one_seen(store: Store) -> None:
    for n in range(3):
        await store.keys.add(_key(n, updated_at=T0 + n * CHANGES_LOOKBACK * 2))
    every = await store.keys.changed_since(None)
    assert [r.id for r in every] == ["key_0000", "key_0001", "key_0002"]
    since = T0 + CHANGES_LOOKBACK * 2
    assert sorted(r.id for r in await store.keys.changed_since(since)) == ["key_0001", "key_0002"]
    later = T0 + CHANGES_LOOKBACK * 4 + timedelta(seconds=1)
    assert [r.id for r in await store.keys.changed_since(later)] == ["key_0002"]  # re-read


async def test_status_changes_and_role_revocation(store: Store) -> None:
    admin_a, admin_b = _key(1, role="admin"), _key(2, role="admin")
    made_by_api = _key(3, role="admin", created_by="usr_1")
    for row in (admin_a, admin_b, made_by_api):
        await store.keys.add(row)
    assert await store.keys.count_active("admin") == 2
    await store.keys.revoke_role_except("admin", admin_b.key_hash)
    statuses = {r.id: r.status for r in await store.keys.list()}
    assert statuses == {admin_a.id: "revoked", admin_b.id: "active", made_by_api.id: "active"}
    assert await store.keys.set_status(admin_a.id, "active")
    assert not await store.keys.set_status("key_missing", "active")
    assert await store.keys.count_active("admin") == 2


async def test_touch_records_last_use(store: Store) -> None:
    await store.keys.add(_key(1))
    await store.keys.touch({"key_0001": T0 + timedelta(hours=1), "key_missing": T0})
    (row,) = await store.keys.list()
    assert row.last_used_at == T0 + timedelta(hours=1)


async def test_the_key_cache_follows_the_database(store: Store) -> None:
    issued = await issue_key(store.keys, "cached")
    cache = KeyCache(store.keys, min_miss_interval=0.0)
    await cache.refresh()
    assert cache.healthy and cache.lookup(issued.secret) is not None
    await store.keys.set_status(issued.row.id, "revoked")
    await cache.refresh()
    assert cache.lookup(issued.secret) is None


async def test_scoped_key_updates_store_json_lists(store: Store) -> None:
    await store.workspaces.ensure("ws_other", "Other")
    await store.keys.add(_key(1))
    scoped = WorkspaceKeys(store.engine)
    change = {"model_limits": ["openai/*"], "allow_ips": ["10.0.0.1"], "model_limits_enabled": True}
    assert not await scoped.update("ws_other", "key_0001", change)
    assert await scoped.update(DEFAULT_WORKSPACE, "key_0001", change)
    row = await scoped.get(DEFAULT_WORKSPACE, "key_0001")
    assert row is not None
    assert (row.model_limits_enabled, row.model_limits, row.allow_ips) == (
        True,
        ("openai/*",),
        ("10.0.0.1",),
    )
    assert await scoped.get("ws_other", "key_0001") is None
    assert [r.id for r in await scoped.list(DEFAULT_WORKSPACE)] == ["key_0001"]


async def test_bootstrap_twice_makes_one_workspace_and_one_admin_key(store: Store) -> None:
    routers = RouterRepository(store.engine)
    secret = await bootstrap(store.workspaces, store.keys, None, routers)
    assert secret is not None
    assert await bootstrap(store.workspaces, store.keys, None, routers) is None
    assert store.execute("SELECT COUNT(*) FROM workspaces") == [(1,)]
    assert await store.keys.count_active("admin") == 1


# --- workspaces ------------------------------------------------------------------------------


async def test_ensure_creates_a_workspace_once(any_store: Store) -> None:
    assert await any_store.workspaces.ensure("ws_1", "One")
    assert not await any_store.workspaces.ensure("ws_1", "Renamed")
    assert any_store.execute("SELECT id, name FROM workspaces") == [("ws_1", "One")]


async def test_replicas_ensuring_the_same_workspace_at_once_create_it_once(
    postgres_store: Store,
) -> None:
    engines = [create_engine_for(postgres_store.url) for _ in range(4)]
    try:
        created = await asyncio.gather(
            *(WorkspaceRepository(engine).ensure("ws_race", "Race") for engine in engines)
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sorted(created) == [False, False, False, True]


# --- usage -----------------------------------------------------------------------------------


async def test_usage_rows_come_back_as_written(store: Store) -> None:
    rows = [_usage(n) for n in range(4)]
    await store.usage.insert_many(rows)
    assert await store.usage.all() == rows
    row = await store.usage.get("req_0002")
    assert row is not None and row["created_at"].tzinfo is UTC and row["stream"] is True


async def test_settled_rows_replace_open_ones_and_come_back_as_written(store: Store) -> None:
    opened = [{**_usage(n), "outcome": "open", "prompt_tokens": None} for n in range(3)]
    await store.usage.insert_many(opened)
    settled = [{**_usage(n), "stream": n % 2 == 0, "route_reason": None} for n in range(4)]
    await store.usage.settle_many(settled)  # compiled once, parameters as plain rows
    await store.usage.settle_many(settled[1:2])  # written again: still one row
    assert await store.usage.all() == settled


async def test_a_batch_over_one_statement_page_is_written_whole(store: Store) -> None:
    rows = [_usage(n) for n in range(BulkUpsert.PAGE * 2 + 7)]  # two full pages and a rest
    await store.usage.settle_many(rows)
    assert await store.usage.all() == rows


async def test_usage_writes_are_idempotent_by_request_id(store: Store) -> None:
    await store.usage.insert_many([_usage(1), _usage(2)])
    again = [_usage(2, status_code=500), _usage(3), _usage(3, outcome="error")]
    await store.usage.insert_many(again)  # a retried batch, with a duplicate inside it
    rows = await store.usage.all()
    assert [(r["request_id"], r["status_code"], r["outcome"]) for r in rows] == [
        ("req_0001", 200, "ok"),
        ("req_0002", 200, "ok"),  # the first write stands
        ("req_0003", 200, "ok"),
    ]


async def test_replicas_writing_overlapping_batches_store_each_record_once(
    postgres_store: Store,
) -> None:
    engines = [create_engine_for(postgres_store.url) for _ in range(3)]
    try:
        await asyncio.gather(
            *(
                UsageRepository(engine).insert_many([_usage(n) for n in range(i * 20, 100)])
                for i, engine in enumerate(engines)
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()
    counts = postgres_store.execute(
        "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage_records"
    )
    assert counts == [(100, 100)]


async def test_a_failing_batch_writes_nothing(store: Store) -> None:
    with pytest.raises(Exception, match=r"(?i)null|constraint"):
        await store.usage.insert_many([_usage(1), _usage(2, endpoint=None)])
    assert await store.usage.all() == []


# --- users, members, sessions ------------------------------------------------------------------


async def _register(engine: AsyncEngine, n: int) -> tuple[UserRow, WorkspaceRow]:
    user = UserRow(f"usr_{n}", f"user{n}@example.com", "$argon2id$hash", T0)
    workspace = WorkspaceRow(f"ws_{n}", f"Workspace {n}", T0)
    await UserRepository(engine).register(user, workspace, "admin")
    return user, workspace


async def test_registration_stores_user_workspace_membership_and_auto_router(
    any_store: Store,
) -> None:
    user, workspace = await _register(any_store.engine, 1)
    users = UserRepository(any_store.engine)
    assert await users.find_by_email("user1@example.com") == user
    assert await users.get("usr_1") == user
    assert await users.count() == 1
    (membership,) = await users.memberships_of("usr_1")
    assert (membership.workspace_id, membership.workspace_name, membership.role) == (
        "ws_1",
        "Workspace 1",
        "admin",
    )
    assert membership.created_at.tzinfo is UTC
    found = await WorkspaceMembers(any_store.engine).workspace("ws_1")
    assert found == workspace
    assert [r.name for r in await RouterRepository(any_store.engine).list("ws_1")] == ["auto"]


async def test_a_failed_registration_leaves_nothing_behind(any_store: Store) -> None:
    await _register(any_store.engine, 1)
    users = UserRepository(any_store.engine)
    with pytest.raises(EmailTaken):
        await users.register(
            UserRow("usr_2", "user1@example.com", "h", T0), WorkspaceRow("ws_2", "Two", T0), "admin"
        )
    with pytest.raises(EmailTaken):  # a taken workspace id fails the whole transaction too
        await users.register(
            UserRow("usr_3", "user3@example.com", "h", T0), WorkspaceRow("ws_1", "One", T0), "admin"
        )
    assert await users.count() == 1
    assert any_store.execute("SELECT COUNT(*) FROM workspaces") == [(1,)]
    assert any_store.execute("SELECT COUNT(*) FROM routers") == [(1,)]


async def test_members_keep_an_admin(any_store: Store) -> None:
    ann, workspace = await _register(any_store.engine, 1)
    bob, _ = await _register(any_store.engine, 2)
    members = WorkspaceMembers(any_store.engine)
    with pytest.raises(LastAdmin):
        await members.set_role(workspace.id, ann.id, "viewer")
    assert await members.add(workspace.id, bob.id, "admin")
    assert not await members.add(workspace.id, bob.id, "viewer")
    assert await members.set_role(workspace.id, ann.id, "viewer")
    with pytest.raises(LastAdmin):
        await members.remove(workspace.id, bob.id)
    assert await members.remove(workspace.id, ann.id)
    assert [(m.user_id, m.role) for m in await members.list(workspace.id)] == [(bob.id, "admin")]
    assert await members.rename(workspace.id, "Renamed")
    assert not await members.rename("ws_missing", "x")


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    postgres_store: Store,
) -> None:
    ann, workspace = await _register(postgres_store.engine, 1)
    bob, _ = await _register(postgres_store.engine, 2)
    await WorkspaceMembers(postgres_store.engine).add(workspace.id, bob.id, "admin")
    engines = [create_engine_for(postgres_store.url) for _ in range(2)]
    try:
        outcomes = await asyncio.gather(
            WorkspaceMembers(engines[0]).set_role(workspace.id, ann.id, "viewer"),
            WorkspaceMembers(engines[1]).set_role(workspace.id, bob.id, "viewer"),
            return_exceptions=True,
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sorted(type(o).__name__ for o in outcomes) == ["LastAdmin", "bool"]
    roles = [m.role for m in await WorkspaceMembers(postgres_store.engine).list(workspace.id)]
    assert roles.count("admin") == 1


async def test_sessions_are_found_until_they_expire_or_are_revoked(any_store: Store) -> None:
    user, _ = await _register(any_store.engine, 1)
    repo = SessionRepository(any_store.engine)
    now = utcnow()
    live = SessionRow(
        "ses_1", "a" * 64, "c" * 64, user.id, "session", now, now + timedelta(hours=1)
    )
    expired = SessionRow("ses_2", "b" * 64, None, user.id, "token", now, now - timedelta(seconds=1))
    await repo.add(live)
    await repo.add(expired)
    found = await repo.find_active("a" * 64)
    assert found is not None and found.expires_at == live.expires_at
    assert found.expires_at.tzinfo is UTC
    assert await repo.find_active("b" * 64) is None
    await repo.revoke("ses_1")
    assert await repo.find_active("a" * 64) is None


# --- audit -------------------------------------------------------------------------------------


async def test_the_audit_log_lists_a_workspace_newest_first(any_store: Store) -> None:
    repo = AuditRepository(any_store.engine)
    for n in range(3):
        await repo.add(
            AuditEntry(
                id=f"aud_{n}",
                workspace_id="ws_1" if n < 2 else "ws_2",
                actor_type="user",
                actor_id="usr_1",
                action="key.created",
                target_type="key",
                target_id=f"key_{n}",
                detail={"name": f"n{n}", "limits": {"ips": ["10.0.0.1"]}, "ünï": "✓"},
                client_ip="::1",
                created_at=T0 + timedelta(minutes=n),
            )
        )
    entries = await repo.list("ws_1")
    assert [e.id for e in entries] == ["aud_1", "aud_0"]
    assert entries[0].detail == {"name": "n1", "limits": {"ips": ["10.0.0.1"]}, "ünï": "✓"}
    assert entries[0].created_at == T0 + timedelta(minutes=1)
    assert [e.id for e in await repo.list("ws_1", limit=1)] == ["aud_1"]


# --- routers -----------------------------------------------------------------------------------


async def test_routers_round_trip_and_stay_in_their_workspace(store: Store) -> None:
    await store.workspaces.ensure("ws_b", "B")
    repo = RouterRepository(store.engine)
    row = RouterRow(
        new_router_id(),
        DEFAULT_WORKSPACE,
        "coding",
        "priority",
        allowed_models=("openai/*",),
        default_model="openai/gpt-4o",
        enabled=False,
        quality_bar=55,
        priority=("openai/gpt-4o",),
        weights={"openai/gpt-4o": 2},
        quality_scores={"openai/*": 70},
        created_at=T0,
        updated_at=T0,
    )
    await repo.create(row)
    stored = await repo.get(DEFAULT_WORKSPACE, "coding")
    assert stored is not None
    assert stored == row and stored.enabled is False
    with pytest.raises(RouterExists):
        await repo.create(RouterRow(new_router_id(), DEFAULT_WORKSPACE, "coding", "cheapest"))
    await repo.create(RouterRow(new_router_id(), "ws_b", "coding", "cheapest"))
    await repo.create(RouterRow(new_router_id(), DEFAULT_WORKSPACE, "other", "cheapest"))
    with pytest.raises(RouterExists):
        await repo.update(DEFAULT_WORKSPACE, "other", {"name": "coding"})
    changed = await repo.update(DEFAULT_WORKSPACE, "coding", {"weights": {"x": 1}, "name": "c2"})
    assert changed is not None and (changed.name, dict(changed.weights)) == ("c2", {"x": 1})
    assert await repo.update(DEFAULT_WORKSPACE, "missing", {"enabled": True}) is None
    count, newest = await repo.version()
    assert count == 3 and newest is not None and newest.tzinfo is UTC
    assert await repo.delete(DEFAULT_WORKSPACE, "c2")
    assert not await repo.delete(DEFAULT_WORKSPACE, "c2")
    remaining = sorted((r.workspace_id, r.name) for r in await repo.all())
    assert remaining == [("ws_b", "coding"), (DEFAULT_WORKSPACE, "other")]


async def test_seeding_auto_twice_keeps_one(store: Store) -> None:
    repo = RouterRepository(store.engine)
    assert await repo.seed_auto(DEFAULT_WORKSPACE)
    assert not await repo.seed_auto(DEFAULT_WORKSPACE)
    assert [r.name for r in await repo.list(DEFAULT_WORKSPACE)] == ["auto"]


# --- time zones ----------------------------------------------------------------------------------


async def test_times_come_back_in_utc_whatever_the_session_time_zone(
    postgres_store: Store,
) -> None:
    database = postgres_store.execute("SELECT current_database()")[0][0]
    postgres_store.execute(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kolkata'")
    engine = create_engine_for(postgres_store.url)  # new connections get the new time zone
    try:
        await WorkspaceRepository(engine).ensure(DEFAULT_WORKSPACE, "Default")
        await KeyRepository(engine).add(_key(1, expires_at=T0))
        await UsageRepository(engine).insert_many([_usage(1)])
        (key,) = await KeyRepository(engine).list()
        (usage,) = await UsageRepository(engine).all()
    finally:
        await engine.dispose()
    assert (key.created_at, key.expires_at) == (T0 + timedelta(seconds=1), T0)
    assert key.created_at.tzinfo is UTC and key.expires_at is not None
    assert key.expires_at.tzinfo is UTC
    assert usage["created_at"] == T0 + timedelta(seconds=1)
    assert usage["created_at"].tzinfo is UTC


# --- the pool ------------------------------------------------------------------------------------


async def test_the_pool_is_small_bounded_and_named(postgres_store: Store) -> None:
    pool = postgres_store.engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    assert (pool.size(), pool.timeout()) == (POOL_SIZE, POOL_TIMEOUT)
    async with postgres_store.engine.connect() as conn:
        name = await conn.scalar(text("SELECT current_setting('application_name')"))
    assert name == "orcarouter"
    assert POOL_SIZE + MAX_OVERFLOW <= 20  # replicas share the server's max_connections


async def test_transactions_commit_on_return_and_roll_back_on_error(store: Store) -> None:
    """The writers' transactions: on a SQLite file on a thread of their own (one hand-off per
    transaction), elsewhere through the async engine; the same outcome either way."""
    writes = Transactions(store.engine)
    main = threading.get_ident()
    ran_on: list[int] = []

    def insert(conn: Connection, row: dict[str, object]) -> int:
        ran_on.append(threading.get_ident())
        BulkUpsert(store.engine, usage_records, "request_id").execute(conn, [row])
        return len(ran_on)

    assert await writes.run(partial(insert, row=_usage(1))) == 1

    def insert_then_fail(conn: Connection) -> None:
        insert(conn, _usage(2))
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await writes.run(insert_then_fail)
    assert [r["request_id"] for r in await store.usage.all()] == ["req_0001"]
    file = store.engine.url.get_backend_name() == "sqlite"
    assert (ran_on[0] != main) is file  # SQLite: the thread; PostgreSQL: the loop's thread
    assert len(set(ran_on)) == 1  # one thread, one connection, for every transaction
    await writes.close()
    assert await writes.run(partial(insert, row=_usage(3))) == 3  # reopens after close
    await writes.close()
