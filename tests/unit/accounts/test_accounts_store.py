"""Accounts on a real migrated SQLite database: users, members, sessions, scoped keys, audit."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.audit import AuditTrail
from orcarouter.accounts.bootstrap import bootstrap
from orcarouter.accounts.key_admin import KeyAdmin, KeySpec, grant_of_user
from orcarouter.accounts.keys import DEFAULT_WORKSPACE, KeyCache, KeyRowLimits, issue_key
from orcarouter.accounts.limits import KeyLimits
from orcarouter.accounts.passwords import Passwords
from orcarouter.accounts.sessions import SESSION, TOKEN, Sessions, csrf_matches
from orcarouter.accounts.users import AccountError, Accounts
from orcarouter.store.accounts import (
    EmailTaken,
    LastAdmin,
    SessionRepository,
    UserRepository,
    WorkspaceMembers,
)
from orcarouter.store.audit import AuditRepository
from orcarouter.store.database import create_engine_for, migrate
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.workspace_keys import WorkspaceKeys

ADMIN = "sk-orca-provided-admin-0123456789abcdefghijklmnop"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "accounts.db"


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{db_path.as_posix()}"
    migrate(url)
    engine = create_engine_for(url)
    await WorkspaceRepository(engine).ensure(DEFAULT_WORKSPACE, "Default")
    yield engine
    await engine.dispose()


def fast_passwords() -> Passwords:
    return Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def test_migration_0002_upgrades_a_0001_database_with_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'old.db').as_posix()}"
    migrate(url, "0001")
    engine = create_engine_for(url)
    try:
        await WorkspaceRepository(engine).ensure(DEFAULT_WORKSPACE, "Default")
        with closing(sqlite3.connect(tmp_path / "old.db")) as conn, conn:
            conn.execute(
                "INSERT INTO api_keys (id, workspace_id, name, key_hash, display_prefix, role,"
                " status, created_at, updated_at) VALUES ('key_old', 'ws_default', 'old', 'h',"
                " 'p', 'member', 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        migrate(url)
        (row,) = await KeyRepository(engine).list()
        assert (row.model_limits_enabled, row.model_limits, row.allow_ips) == (False, (), ())
        assert (row.usd_cap_micros, row.environment, row.created_by) == (None, None, None)
    finally:
        await engine.dispose()


async def test_register_login_and_membership(engine: AsyncEngine) -> None:
    users = UserRepository(engine)
    accounts = Accounts(users, fast_passwords())
    made = await accounts.register(" Ann@Example.COM ", "a long password", "Ann's")
    assert made.user.email == "ann@example.com"
    assert made.user.password_hash.startswith("$argon2id$")
    with pytest.raises(EmailTaken):
        await accounts.register("ann@example.com", "another password", "x")
    for email, password in (("nope", "a long password"), ("b@example.com", "short")):
        with pytest.raises(AccountError):
            await accounts.register(email, password, "x")
    assert await accounts.login("ANN@example.com", "a long password") == made.user
    assert await accounts.login("ann@example.com", "wrong password") is None
    assert await accounts.login("nobody@example.com", "a long password") is None
    (membership,) = await users.memberships_of(made.user.id)
    assert (membership.workspace_id, membership.role) == (made.workspace.id, "admin")


async def test_a_workspace_keeps_an_admin(engine: AsyncEngine) -> None:
    accounts = Accounts(UserRepository(engine), fast_passwords())
    ann = await accounts.register("ann@example.com", "a long password", "A")
    bob = await accounts.register("bob@example.com", "a long password", "B")
    members = WorkspaceMembers(engine)
    ws = ann.workspace.id
    with pytest.raises(LastAdmin):
        await members.set_role(ws, ann.user.id, "viewer")
    with pytest.raises(LastAdmin):
        await members.remove(ws, ann.user.id)
    assert await members.add(ws, bob.user.id, "admin")
    assert not await members.add(ws, bob.user.id, "viewer")  # already a member
    assert await members.set_role(ws, ann.user.id, "viewer")
    assert [(m.email, m.role) for m in await members.list(ws)] == [
        ("ann@example.com", "viewer"),
        ("bob@example.com", "admin"),
    ]
    assert await members.get(bob.workspace.id, ann.user.id) is None  # scoped by workspace


async def test_sessions_resolve_by_kind_and_expire(engine: AsyncEngine) -> None:
    accounts = Accounts(UserRepository(engine), fast_passwords())
    user = (await accounts.register("ann@example.com", "a long password", "A")).user
    repo = SessionRepository(engine)
    sessions = Sessions(repo)
    session = await sessions.open(user.id, SESSION)
    token = await sessions.open(user.id, TOKEN)
    assert session.secret.startswith("sk-sess-") and token.secret.startswith("sk-mgmt-")
    assert token.csrf_token is None and session.csrf_token is not None
    found = await sessions.resolve(session.secret, SESSION)
    assert found is not None and found.user_id == user.id
    assert csrf_matches(found, session.csrf_token)
    assert not csrf_matches(found, "x") and not csrf_matches(found, None)
    assert await sessions.resolve(session.secret, TOKEN) is None  # kinds never cross
    assert await sessions.resolve(token.secret, TOKEN) is not None
    await sessions.close(token.row.id)
    assert await sessions.resolve(token.secret, TOKEN) is None
    expired = replace(session.row, id="ses_old", token_hash="e" * 64, expires_at=user.created_at)
    await repo.add(expired)
    assert await repo.find_active("e" * 64) is None


async def test_keys_are_scoped_to_their_workspace_and_cached_with_limits(
    engine: AsyncEngine,
) -> None:
    await WorkspaceRepository(engine).ensure("ws_other", "Other")
    admin = KeyAdmin(KeyRepository(engine), WorkspaceKeys(engine))
    spec = KeySpec(
        name="limited",
        limits=KeyLimits(
            role="member",
            model_limits_enabled=True,
            model_limits=("openai/*",),
            allow_ips=("10.0.0.1",),
            usd_cap_micros=42,
        ),
        environment="staging",
    )
    issued = await admin.create(DEFAULT_WORKSPACE, spec, grant_of_user("developer"), "usr_1")
    scoped = WorkspaceKeys(engine)
    assert await scoped.get("ws_other", issued.row.id) is None
    assert not await scoped.update("ws_other", issued.row.id, {"status": "revoked"})
    assert [r.id for r in await scoped.list("ws_other")] == []
    cache = KeyCache(KeyRepository(engine))
    await cache.refresh()
    principal = cache.lookup(issued.secret)
    assert principal is not None
    assert principal.model_limits == ("openai/*",)
    assert [str(n) for n in principal.allow_ips] == ["10.0.0.1/32"]
    assert (principal.usd_cap_micros, principal.environment) == (42, "staging")
    assert principal.model_matcher.fullmatch("openai/gpt-4o")


async def test_bootstrap_leaves_admin_keys_made_through_the_api_alone(engine: AsyncEngine) -> None:
    keys = KeyRepository(engine)
    made = await issue_key(keys, "team admin", role="admin", limits=KeyRowLimits(created_by="u"))
    await bootstrap(WorkspaceRepository(engine), keys, ADMIN)
    await bootstrap(WorkspaceRepository(engine), keys, ADMIN)
    rows = {r.id: r.status for r in await keys.list()}
    assert rows[made.row.id] == "active"
    assert sorted(rows.values()) == ["active", "active"]


async def test_the_audit_trail_drops_secret_fields(engine: AsyncEngine) -> None:
    trail = AuditTrail(AuditRepository(engine))
    await trail.record(
        actor=("user", "usr_1"),
        action="key.created",
        workspace_id=DEFAULT_WORKSPACE,
        target=("key", "key_1"),
        detail={"name": "n", "secret": "sk-orca-x", "password": "p", "token": "t"},
        client_ip="127.0.0.1",
    )
    await trail.record(actor=("user", "usr_1"), action="auth.login", workspace_id=None)
    (entry,) = await trail.list(DEFAULT_WORKSPACE)
    assert entry.detail == {"name": "n"}
    assert (entry.actor_id, entry.action, entry.target_id) == ("usr_1", "key.created", "key_1")
