"""Provider credentials (BYOK) on every backend: stored sealed and scoped to their workspace,
replaced in place, rotated to a new key in one transaction, served by the cache."""

from __future__ import annotations

import pytest

from orcarouter.accounts.credentials import (
    ByokDisabled,
    CredentialAdmin,
    CredentialCache,
    CredentialError,
    Keyring,
    UnknownProvider,
    new_secret_key,
    rotate,
)
from orcarouter.settings import Provider, TimeoutsConfig
from orcarouter.store.credentials import CredentialRepository
from tests.unit.core.conftest import Store

SECRET_A = "sk-workspace-a-SECRET-0123456789abcdef"
SECRET_B = "sk-workspace-b-SECRET-fedcba9876543210"
PROVIDERS = ("openai", "anthropic")
OLD, NEW = new_secret_key(), new_secret_key()


def _provider(provider_id: str = "openai") -> Provider:
    return Provider(
        id=provider_id,
        protocol="openai",
        base_url="https://api.example.com/v1",
        api_key="sk-operator-0123456789",
        models=None,
        headers={},
        timeouts=TimeoutsConfig(),
    )


async def _setup(
    store: Store, keyring: Keyring | None
) -> tuple[CredentialRepository, CredentialAdmin]:
    for workspace in ("ws_a", "ws_b"):
        await store.workspaces.ensure(workspace, workspace)
    repo = CredentialRepository(store.engine)
    return repo, CredentialAdmin(repo, keyring, PROVIDERS)


def _stored(store: Store) -> list[tuple[object, ...]]:
    return store.execute(
        "SELECT workspace_id, provider_id, ciphertext, key_version, hint FROM provider_credentials"
        " ORDER BY workspace_id, provider_id"
    )


async def test_a_stored_key_is_sealed_scoped_and_replaced_in_place(any_store: Store) -> None:
    keyring = Keyring.from_texts(OLD)
    repo, admin = await _setup(any_store, keyring)
    first = await admin.put("ws_a", "openai", SECRET_A, "usr_admin")
    await admin.put("ws_b", "openai", SECRET_B, "usr_other")
    for row in _stored(any_store):
        assert SECRET_A not in str(row) and SECRET_B not in str(row)
    assert [r.hint for r in await admin.list("ws_a")] == ["sk-...cdef"]
    replaced = await admin.put("ws_a", "openai", "sk-rotated-by-vendor-0123456789WXYZ", "usr_x")
    assert (replaced.id, replaced.created_at, replaced.created_by) == (
        first.id,
        first.created_at,
        "usr_admin",
    )
    assert replaced.updated_at >= first.updated_at and replaced.hint == "sk-...WXYZ"
    stored = await repo.get("ws_a", "openai")
    assert stored is not None and keyring.open_row(stored) == "sk-rotated-by-vendor-0123456789WXYZ"
    assert [r.provider_id for r in await repo.list("ws_b")] == ["openai"]
    assert not await admin.delete("ws_b", "anthropic")
    assert await admin.delete("ws_b", "openai")
    assert await repo.list("ws_b") == [] and len(await repo.list("ws_a")) == 1


async def test_storing_needs_a_secret_key_and_a_configured_provider(any_store: Store) -> None:
    _, disabled = await _setup(any_store, None)
    assert not disabled.enabled
    with pytest.raises(ByokDisabled, match="ORCAROUTER_SECRET_KEY"):
        await disabled.put("ws_a", "openai", SECRET_A, None)
    _, admin = await _setup(any_store, Keyring.from_texts(OLD))
    with pytest.raises(UnknownProvider):
        await admin.put("ws_a", "not-configured", SECRET_A, None)
    assert _stored(any_store) == []


async def test_the_version_moves_with_every_change(any_store: Store) -> None:
    repo, admin = await _setup(any_store, Keyring.from_texts(OLD))
    seen = [await repo.version()]
    await admin.put("ws_a", "openai", SECRET_A, None)
    seen.append(await repo.version())
    await admin.put("ws_a", "openai", SECRET_B, None)
    seen.append(await repo.version())
    await admin.delete("ws_a", "openai")
    seen.append(await repo.version())
    assert seen[0] == (0, None) and len(set(seen[:3])) == 3 and seen[3][0] == 0


async def test_rotation_reseals_every_row_and_old_and_new_keys_read_meanwhile(
    any_store: Store,
) -> None:
    old = Keyring.from_texts(OLD)
    repo, admin = await _setup(any_store, old)
    await admin.put("ws_a", "openai", SECRET_A, None)
    await admin.put("ws_b", "anthropic", SECRET_B, None)
    before = {(r[0], r[1]): r[2] for r in _stored(any_store)}
    new = Keyring.from_texts(NEW)
    done = await rotate(repo, old, new)
    assert (done.changed, done.total, done.key_version) == (2, 2, new.current_id)
    rows = await repo.all()
    assert {r.key_version for r in rows} == {new.current_id}
    assert all(before[(r.workspace_id, r.provider_id)] != r.ciphertext for r in rows)
    assert sorted(new.open_row(r) for r in rows) == sorted([SECRET_A, SECRET_B])
    with pytest.raises(CredentialError):
        old.open_row(rows[0])
    # After the switch (new key current, old one previous) a process still writing under the
    # old key leaves rows both can read; rotating to the current key finishes the job.
    await CredentialAdmin(repo, old, PROVIDERS).put("ws_a", "openai", SECRET_A, None)
    switched = Keyring.from_texts(NEW, [OLD])
    assert sorted(switched.open_row(r) for r in await repo.all()) == sorted([SECRET_A, SECRET_B])
    finished = await rotate(repo, switched, switched)
    assert (finished.changed, finished.total) == (1, 2)
    assert {r.key_version for r in await repo.all()} == {new.current_id}
    assert (await rotate(repo, switched, switched)).changed == 0  # twice is harmless


async def test_a_rotation_that_cannot_read_a_row_changes_nothing(any_store: Store) -> None:
    old, stranger = Keyring.from_texts(OLD), Keyring.from_texts(new_secret_key())
    repo, admin = await _setup(any_store, old)
    await admin.put("ws_a", "openai", SECRET_A, None)
    await CredentialAdmin(repo, stranger, PROVIDERS).put("ws_b", "openai", SECRET_B, None)
    before = _stored(any_store)
    with pytest.raises(CredentialError, match="not configured"):
        await rotate(repo, old, Keyring.from_texts(NEW))
    assert _stored(any_store) == before
    with pytest.raises(CredentialError, match="no secret key"):
        await rotate(repo, None, Keyring.from_texts(NEW))
    assert _stored(any_store) == before


async def test_the_cache_serves_what_the_store_holds(any_store: Store) -> None:
    keyring = Keyring.from_texts(OLD)
    repo, admin = await _setup(any_store, keyring)
    cache = CredentialCache(repo, keyring)
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == "sk-operator-0123456789"
    await admin.put("ws_a", "openai", SECRET_A, None)
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == SECRET_A
    assert cache.provider_for("ws_b", _provider()).api_key == "sk-operator-0123456789"
    assert cache.provider_for("ws_a", _provider("anthropic")).api_key == "sk-operator-0123456789"
    await admin.delete("ws_a", "openai")
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == "sk-operator-0123456789"
