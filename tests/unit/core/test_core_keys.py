"""API keys on a real SQLite database: only hashes stored, verified from memory, kept fresh."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.bootstrap import ADMIN_ROLE, bootstrap
from orcarouter.accounts.keys import (
    DEFAULT_WORKSPACE,
    KeyCache,
    hash_key,
    issue_key,
    new_secret,
)
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRepository, KeyRow

if TYPE_CHECKING:
    from tests.unit.core.conftest import Store

PROVIDED_ADMIN = "sk-orca-provided-admin-0123456789abcdefghijklmnop"


class CountingKeyRepository(KeyRepository):
    """The real repository, counting how often the cache asks the database for changes."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.queries = 0

    async def changed_since(self, since: datetime | None) -> list[KeyRow]:
        self.queries += 1
        return await super().changed_since(since)


@pytest.fixture
async def store(sqlite_store: Store) -> Store:
    await sqlite_store.workspaces.ensure(DEFAULT_WORKSPACE, "Default workspace")
    return sqlite_store


def _db_path(store: Store) -> Path:
    database = make_url(store.url).database
    assert database is not None
    return Path(database)


def _api_key_rows(store: Store) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = store.execute("SELECT * FROM api_keys")
    return rows


# --- issuing -------------------------------------------------------------------------------


async def test_issue_key_stores_only_the_hash_and_a_display_prefix(store: Store) -> None:
    issued = await issue_key(store.keys, "ci", role="member")
    secret = issued.secret
    assert secret.startswith("sk-orca-")
    assert len(secret) >= len("sk-orca-") + 32
    assert issued.row.key_hash == hashlib.sha256(secret.encode()).hexdigest()

    (row,) = _api_key_rows(store)
    assert issued.row.key_hash in row
    for value in row:
        text = str(value)
        assert secret not in text
        assert secret[len("sk-orca-") + 4 :] not in text  # not even the secret's random tail
    prefix = issued.row.display_prefix
    assert secret.startswith(prefix.rstrip("…"))
    assert len(prefix.rstrip("…")) <= len("sk-orca-") + 4


async def test_the_secret_is_nowhere_in_the_database_files(store: Store) -> None:
    issued = await issue_key(store.keys, "ci")
    await store.engine.dispose()  # flush everything the connections hold
    path = _db_path(store)
    blobs = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    assert issued.row.key_hash.encode() in blobs  # the row is really there
    assert issued.secret.encode() not in blobs


async def test_issued_keys_are_unique(store: Store) -> None:
    issued = [await issue_key(store.keys, f"k{n}") for n in range(5)]
    assert len({i.secret for i in issued}) == 5
    assert len({i.row.id for i in issued}) == 5
    assert len(_api_key_rows(store)) == 5


async def test_the_stored_key_is_found_by_its_hash(store: Store) -> None:
    issued = await issue_key(store.keys, "ci", role="admin")
    found = await store.keys.find_by_hash(hash_key(issued.secret))
    assert found is not None
    assert (found.id, found.name, found.role, found.status) == (
        issued.row.id,
        "ci",
        "admin",
        "active",
    )
    assert await store.keys.find_by_hash(hash_key(new_secret())) is None


# --- the cache -----------------------------------------------------------------------------


async def test_refresh_picks_up_new_keys(store: Store) -> None:
    cache = KeyCache(store.keys)
    await cache.refresh()
    assert cache.healthy
    issued = await issue_key(store.keys, "late", workspace_id=DEFAULT_WORKSPACE)
    assert cache.lookup(issued.secret) is None  # memory only until the next refresh
    await cache.refresh()
    principal = cache.lookup(issued.secret)
    assert principal is not None
    assert (principal.key_id, principal.workspace_id, principal.key_name, principal.role) == (
        issued.row.id,
        DEFAULT_WORKSPACE,
        "late",
        "member",
    )


async def test_refresh_drops_revoked_keys_and_restores_reactivated_ones(store: Store) -> None:
    keep = await issue_key(store.keys, "keep")
    revoke = await issue_key(store.keys, "revoke")
    cache = KeyCache(store.keys)
    await cache.refresh()
    assert cache.lookup(revoke.secret) is not None

    assert await store.keys.set_status(revoke.row.id, "revoked")
    await cache.refresh()
    assert cache.lookup(revoke.secret) is None
    assert cache.lookup(keep.secret) is not None

    assert await store.keys.set_status(revoke.row.id, "active")
    await cache.refresh()
    assert cache.lookup(revoke.secret) is not None


async def test_set_status_of_an_unknown_key_reports_false(store: Store) -> None:
    assert await store.keys.set_status("key_missing", "revoked") is False


async def test_a_fresh_cache_knows_no_key_until_refreshed(store: Store) -> None:
    issued = await issue_key(store.keys, "k")
    cache = KeyCache(store.keys)
    assert not cache.healthy
    assert cache.lookup(issued.secret) is None
    await cache.refresh()
    assert cache.lookup(issued.secret) is not None


async def test_lookup_rejects_expired_keys(store: Store) -> None:
    expired = await issue_key(store.keys, "old", expires_at=utcnow() - timedelta(seconds=1))
    valid = await issue_key(store.keys, "new", expires_at=utcnow() + timedelta(days=1))
    forever = await issue_key(store.keys, "forever")
    cache = KeyCache(store.keys)
    await cache.refresh()
    assert cache.lookup(expired.secret) is None
    assert cache.lookup(valid.secret) is not None
    assert cache.lookup(forever.secret) is not None


async def test_a_key_stops_working_when_it_expires(store: Store) -> None:
    soon = await issue_key(store.keys, "soon", expires_at=utcnow() + timedelta(seconds=1))
    cache = KeyCache(store.keys)
    await cache.refresh()
    assert cache.lookup(soon.secret) is not None
    await asyncio.sleep(1.1)
    assert cache.lookup(soon.secret) is None  # no refresh needed
    assert await cache.lookup_or_refresh(soon.secret) is None


async def test_lookup_of_a_wrong_or_empty_key_is_none(store: Store) -> None:
    issued = await issue_key(store.keys, "k")
    cache = KeyCache(store.keys)
    await cache.refresh()
    assert cache.lookup("") is None
    assert cache.lookup(issued.secret + "x") is None
    assert cache.lookup(issued.secret[:-1]) is None
    assert cache.lookup(issued.row.key_hash) is None  # the hash is not a credential


async def test_lookup_or_refresh_finds_a_key_created_after_the_last_refresh(store: Store) -> None:
    cache = KeyCache(store.keys, min_miss_interval=0.05)
    await cache.refresh()
    await asyncio.sleep(0.06)
    issued = await issue_key(store.keys, "brand new")
    principal = await cache.lookup_or_refresh(issued.secret)
    assert principal is not None and principal.key_id == issued.row.id


async def test_lookup_or_refresh_of_a_known_key_does_not_query(store: Store) -> None:
    repo = CountingKeyRepository(store.engine)
    issued = await issue_key(repo, "k")
    cache = KeyCache(repo, min_miss_interval=0.0)
    await cache.refresh()
    for _ in range(50):
        assert await cache.lookup_or_refresh(issued.secret) is not None
    assert repo.queries == 1


async def test_a_flood_of_unknown_keys_is_throttled(store: Store) -> None:
    repo = CountingKeyRepository(store.engine)
    interval = 0.1
    cache = KeyCache(repo, min_miss_interval=interval)
    await cache.refresh()
    assert repo.queries == 1

    # A burst right after a refresh waits out the interval and shares one query.
    wrong = [new_secret() for _ in range(200)]
    results = await asyncio.gather(*(cache.lookup_or_refresh(s) for s in wrong))
    assert results == [None] * 200
    assert repo.queries == 2

    # A sustained flood for about a second: one query per interval, no more.
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        await asyncio.gather(*(cache.lookup_or_refresh(new_secret()) for _ in range(20)))
    flood_queries = repo.queries - 2
    assert 4 <= flood_queries <= (time.monotonic() - start) / interval + 1


async def test_a_key_created_just_after_a_refresh_works_at_once(store: Store) -> None:
    cache = KeyCache(store.keys, min_miss_interval=0.5)
    await cache.refresh()
    issued = await issue_key(store.keys, "made by another process")
    principal = await cache.lookup_or_refresh(issued.secret)  # within the miss interval
    assert principal is not None and principal.key_id == issued.row.id


async def test_concurrent_misses_share_one_query(store: Store) -> None:
    repo = CountingKeyRepository(store.engine)
    cache = KeyCache(repo, min_miss_interval=0.0)
    issued = await issue_key(repo, "k")
    found = await asyncio.gather(*(cache.lookup_or_refresh(issued.secret) for _ in range(50)))
    assert all(p is not None and p.key_id == issued.row.id for p in found)
    assert repo.queries == 1


@pytest.fixture
def vanishing_dir(store: Store) -> Iterator[tuple[Path, Path]]:
    """The database directory and where it goes while "unreachable"; restored afterwards."""
    directory = _db_path(store).parent
    away = directory.with_name("db-away")
    yield directory, away
    if away.exists():
        away.rename(directory)


async def test_an_unreachable_database_makes_the_cache_unhealthy_but_known_keys_work(
    store: Store, vanishing_dir: tuple[Path, Path]
) -> None:
    known = await issue_key(store.keys, "known")
    cache = KeyCache(store.keys, min_miss_interval=0.0)
    await cache.refresh()
    assert cache.healthy

    directory, away = vanishing_dir
    await store.engine.dispose()
    await store.keys.close()  # the key cache's polls run on the writes' own connection
    directory.rename(away)
    await cache.refresh()
    assert not cache.healthy
    assert cache.lookup(known.secret) is not None
    assert await cache.lookup_or_refresh(known.secret) is not None
    assert await cache.lookup_or_refresh(new_secret()) is None  # unknown keys fail closed
    assert not cache.healthy

    away.rename(directory)
    late = await issue_key(store.keys, "late")
    await cache.refresh()
    assert cache.healthy
    assert cache.lookup(late.secret) is not None
    assert cache.lookup(known.secret) is not None


async def test_revocations_made_while_unreachable_apply_once_it_is_back(
    store: Store, vanishing_dir: tuple[Path, Path]
) -> None:
    key = await issue_key(store.keys, "k")
    cache = KeyCache(store.keys)
    await cache.refresh()
    directory, away = vanishing_dir
    await store.engine.dispose()
    await store.keys.close()  # the key cache's polls run on the writes' own connection
    directory.rename(away)
    await cache.refresh()
    assert not cache.healthy
    away.rename(directory)
    await store.keys.set_status(key.row.id, "revoked")
    await cache.refresh()
    assert cache.healthy
    assert cache.lookup(key.secret) is None


async def test_run_refreshes_in_the_background(store: Store) -> None:
    cache = KeyCache(store.keys, interval=0.02)
    task = asyncio.create_task(cache.run())
    try:
        issued = await issue_key(store.keys, "bg")
        for _ in range(200):
            if cache.lookup(issued.secret) is not None:
                break
            await asyncio.sleep(0.01)
        assert cache.lookup(issued.secret) is not None
        assert cache.healthy
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- bootstrap -----------------------------------------------------------------------------


async def _active_admin_ids(store: Store) -> list[str]:
    return [r.id for r in await store.keys.list() if r.role == ADMIN_ROLE and r.status == "active"]


async def test_bootstrap_creates_the_default_workspace(sqlite_store: Store) -> None:
    await bootstrap(sqlite_store.workspaces, sqlite_store.keys, None)
    assert sqlite_store.execute("SELECT id FROM workspaces") == [(DEFAULT_WORKSPACE,)]
    await bootstrap(sqlite_store.workspaces, sqlite_store.keys, None)
    assert sqlite_store.execute("SELECT COUNT(*) FROM workspaces") == [(1,)]


async def test_bootstrap_generates_an_admin_key_once(store: Store) -> None:
    secret = await bootstrap(store.workspaces, store.keys, None)
    assert secret is not None and secret.startswith("sk-orca-")
    assert await bootstrap(store.workspaces, store.keys, None) is None
    (admin_id,) = await _active_admin_ids(store)

    cache = KeyCache(store.keys)
    await cache.refresh()
    principal = cache.lookup(secret)
    assert principal is not None
    assert (principal.key_id, principal.role, principal.workspace_id) == (
        admin_id,
        ADMIN_ROLE,
        DEFAULT_WORKSPACE,
    )
    assert all(secret not in str(value) for row in _api_key_rows(store) for value in row)


async def test_bootstrap_honours_a_provided_admin_key(store: Store) -> None:
    assert await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN) is None
    row = await store.keys.find_by_hash(hash_key(PROVIDED_ADMIN))
    assert row is not None
    assert (row.role, row.status) == (ADMIN_ROLE, "active")
    assert await _active_admin_ids(store) == [row.id]
    # a second start with the same key changes nothing
    assert await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN) is None
    assert await _active_admin_ids(store) == [row.id]
    assert len(_api_key_rows(store)) == 1


async def test_a_provided_admin_key_revokes_the_generated_one(store: Store) -> None:
    generated = await bootstrap(store.workspaces, store.keys, None)
    assert generated is not None
    await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN)
    cache = KeyCache(store.keys)
    await cache.refresh()
    assert cache.lookup(generated) is None
    principal = cache.lookup(PROVIDED_ADMIN)
    assert principal is not None and principal.role == ADMIN_ROLE
    old = await store.keys.find_by_hash(hash_key(generated))
    assert old is not None and old.status == "revoked"


async def test_changing_the_provided_admin_key_revokes_the_previous_one(store: Store) -> None:
    other = "sk-orca-another-admin-key-abcdefghijklmnopqrstuvwxyz"
    await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN)
    await bootstrap(store.workspaces, store.keys, other)
    new_row = await store.keys.find_by_hash(hash_key(other))
    assert new_row is not None
    assert await _active_admin_ids(store) == [new_row.id]


async def test_bootstrap_leaves_member_keys_alone(store: Store) -> None:
    member = await issue_key(store.keys, "member")
    await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN)
    row = await store.keys.find_by_hash(hash_key(member.secret))
    assert row is not None and row.status == "active"


async def test_bootstrap_reactivates_a_revoked_provided_key(store: Store) -> None:
    await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN)
    row = await store.keys.find_by_hash(hash_key(PROVIDED_ADMIN))
    assert row is not None
    await store.keys.set_status(row.id, "revoked")
    assert await _active_admin_ids(store) == []

    await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN)
    again = await store.keys.find_by_hash(hash_key(PROVIDED_ADMIN))
    assert again is not None
    assert (again.id, again.status) == (row.id, "active")
    assert len(_api_key_rows(store)) == 1


async def test_no_generated_key_while_a_provided_admin_key_is_active(store: Store) -> None:
    await bootstrap(store.workspaces, store.keys, PROVIDED_ADMIN)
    assert await bootstrap(store.workspaces, store.keys, None) is None
    assert len(await _active_admin_ids(store)) == 1


async def test_a_new_key_is_generated_when_every_admin_key_was_revoked(store: Store) -> None:
    first = await bootstrap(store.workspaces, store.keys, None)
    assert first is not None
    (admin_id,) = await _active_admin_ids(store)
    await store.keys.set_status(admin_id, "revoked")
    second = await bootstrap(store.workspaces, store.keys, None)
    assert second is not None and second != first
    assert len(await _active_admin_ids(store)) == 1
