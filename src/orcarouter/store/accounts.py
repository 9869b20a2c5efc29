"""Users, workspaces with their members, and management sessions.

Every query about a workspace's contents takes the workspace id: tenant scoping lives here,
not in the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import as_utc
from orcarouter.store.routers import insert_auto_router
from orcarouter.store.schema import (
    api_keys,
    auth_sessions,
    users,
    workspace_members,
    workspaces,
)

WORKSPACE_LIMITS = ("rpm_limit", "tpm_limit", "concurrency_limit")


class EmailTaken(Exception):
    """A user with this email already exists."""


class LastAdmin(Exception):
    """The change would leave the workspace without an admin."""


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user; the password only as its Argon2 hash."""

    id: str
    email: str
    password_hash: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's role in one workspace."""

    workspace_id: str
    workspace_name: str
    user_id: str
    email: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    """A workspace, with its workspace-wide rate limits (None: unlimited)."""

    id: str
    name: str
    created_at: datetime
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    concurrency_limit: int | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A dashboard session or a management token: its hash only."""

    id: str
    token_hash: str
    csrf_hash: str | None
    user_id: str
    kind: str
    created_at: datetime
    expires_at: datetime


def _user(row: Any) -> UserRow:
    return UserRow(row.id, row.email, row.password_hash, as_utc(row.created_at) or utcnow())


def _membership(row: Any) -> Membership:
    return Membership(
        workspace_id=row.workspace_id,
        workspace_name=row.name,
        user_id=row.user_id,
        email=row.email,
        role=row.role,
        created_at=as_utc(row.created_at) or utcnow(),
    )


_MEMBERSHIP_QUERY = (
    select(
        workspace_members.c.workspace_id,
        workspaces.c.name,
        workspace_members.c.user_id,
        users.c.email,
        workspace_members.c.role,
        workspace_members.c.created_at,
    )
    .join(workspaces, workspaces.c.id == workspace_members.c.workspace_id)
    .join(users, users.c.id == workspace_members.c.user_id)
)


class UserRepository:
    """Users, their workspaces and their memberships."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def register(self, user: UserRow, workspace: WorkspaceRow, role: str) -> None:
        """Store a user, a new workspace and the user's membership in one transaction."""
        now = user.created_at
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(users).values(
                        id=user.id,
                        email=user.email,
                        password_hash=user.password_hash,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await _insert_workspace(conn, workspace)
                await _insert_member(conn, workspace.id, user.id, role)
        except IntegrityError:
            raise EmailTaken(user.email) from None

    async def create_workspace(
        self, workspace: WorkspaceRow, admin_user_id: str, role: str
    ) -> None:
        """A new workspace with its first member."""
        async with self._engine.begin() as conn:
            await _insert_workspace(conn, workspace)
            await _insert_member(conn, workspace.id, admin_user_id, role)

    async def find_by_email(self, email: str) -> UserRow | None:
        """The user with this (normalised) email."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.email == email))).first()
            return _user(row) if row is not None else None

    async def get(self, user_id: str) -> UserRow | None:
        """The user with this id."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
            return _user(row) if row is not None else None

    async def count(self) -> int:
        """How many users exist."""
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(users)) or 0)

    async def memberships_of(self, user_id: str) -> list[Membership]:
        """Every workspace the user belongs to, oldest membership first."""
        query = _MEMBERSHIP_QUERY.where(workspace_members.c.user_id == user_id).order_by(
            workspace_members.c.created_at, workspace_members.c.workspace_id
        )
        async with self._engine.connect() as conn:
            return [_membership(r) for r in await conn.execute(query)]


async def _insert_workspace(conn: AsyncConnection, workspace: WorkspaceRow) -> None:
    await conn.execute(
        insert(workspaces).values(
            id=workspace.id, name=workspace.name, created_at=workspace.created_at
        )
    )
    await insert_auto_router(conn, workspace.id)  # every workspace starts with orcarouter/auto


async def _insert_member(conn: AsyncConnection, workspace_id: str, user_id: str, role: str) -> None:
    now = utcnow()
    await conn.execute(
        insert(workspace_members).values(
            workspace_id=workspace_id, user_id=user_id, role=role, created_at=now, updated_at=now
        )
    )


class WorkspaceMembers:
    """One workspace's record and members; every method takes the workspace id."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def workspace(self, workspace_id: str) -> WorkspaceRow | None:
        """The workspace, if it exists."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(workspaces).where(workspaces.c.id == workspace_id))
            ).first()
        if row is None:
            return None
        return WorkspaceRow(
            row.id,
            row.name,
            as_utc(row.created_at) or utcnow(),
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
            concurrency_limit=row.concurrency_limit,
        )

    async def rename(self, workspace_id: str, name: str) -> bool:
        """Change the workspace's name."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(workspaces).where(workspaces.c.id == workspace_id).values(name=name)
            )
            return bool(result.rowcount)

    async def set_rate_limits(self, workspace_id: str, limits: dict[str, int | None]) -> bool:
        """Change some of the workspace's rate limits (``WORKSPACE_LIMITS`` names).

        The workspace's keys get a new ``updated_at`` in the same transaction: the key caches
        of every process re-read changed keys with their workspace's limits, so the new limits
        reach them within a refresh interval.
        """
        values = {k: v for k, v in limits.items() if k in WORKSPACE_LIMITS}
        if not values:
            return await self.workspace(workspace_id) is not None
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(workspaces).where(workspaces.c.id == workspace_id).values(**values)
            )
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.workspace_id == workspace_id)
                .values(updated_at=utcnow())
            )
            return bool(result.rowcount)

    async def list(self, workspace_id: str) -> list[Membership]:
        """The workspace's members, oldest first."""
        query = _MEMBERSHIP_QUERY.where(workspace_members.c.workspace_id == workspace_id).order_by(
            workspace_members.c.created_at, workspace_members.c.user_id
        )
        async with self._engine.connect() as conn:
            return [_membership(r) for r in await conn.execute(query)]

    async def get(self, workspace_id: str, user_id: str) -> Membership | None:
        """One member of the workspace."""
        query = _MEMBERSHIP_QUERY.where(
            workspace_members.c.workspace_id == workspace_id,
            workspace_members.c.user_id == user_id,
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
            return _membership(row) if row is not None else None

    async def add(self, workspace_id: str, user_id: str, role: str) -> bool:
        """Add a member; False when the user already belongs to the workspace."""
        try:
            async with self._engine.begin() as conn:
                await _insert_member(conn, workspace_id, user_id, role)
        except IntegrityError:
            return False
        return True

    async def set_role(self, workspace_id: str, user_id: str, role: str) -> bool:
        """Change a member's role; ``LastAdmin`` if it would demote the only admin."""
        async with self._engine.begin() as conn:
            await _keep_an_admin(conn, workspace_id, user_id, role)
            result = await conn.execute(
                update(workspace_members)
                .where(
                    workspace_members.c.workspace_id == workspace_id,
                    workspace_members.c.user_id == user_id,
                )
                .values(role=role, updated_at=utcnow())
            )
            return bool(result.rowcount)

    async def remove(self, workspace_id: str, user_id: str) -> bool:
        """Remove a member; ``LastAdmin`` if it is the only admin."""
        async with self._engine.begin() as conn:
            await _keep_an_admin(conn, workspace_id, user_id, None)
            result = await conn.execute(
                delete(workspace_members).where(
                    workspace_members.c.workspace_id == workspace_id,
                    workspace_members.c.user_id == user_id,
                )
            )
            return bool(result.rowcount)


async def _keep_an_admin(
    conn: AsyncConnection, workspace_id: str, user_id: str, new_role: str | None
) -> None:
    if new_role == "admin":
        return
    # Lock the workspace row, so concurrent changes to its members (replicas on PostgreSQL)
    # take turns and each sees the admins the previous one left. SQLite has no row locks:
    # its single writer already serialises them.
    await conn.execute(
        select(workspaces.c.id).where(workspaces.c.id == workspace_id).with_for_update()
    )
    admins = set(
        await conn.scalars(
            select(workspace_members.c.user_id).where(
                workspace_members.c.workspace_id == workspace_id,
                workspace_members.c.role == "admin",
            )
        )
    )
    if admins == {user_id}:
        raise LastAdmin(workspace_id)


class SessionRepository:
    """Dashboard sessions and management tokens, looked up by the SHA-256 of the secret."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, row: SessionRow) -> None:
        """Store a new session."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(auth_sessions).values(
                    id=row.id,
                    token_hash=row.token_hash,
                    csrf_hash=row.csrf_hash,
                    user_id=row.user_id,
                    kind=row.kind,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                )
            )

    async def find_active(self, token_hash: str) -> SessionRow | None:
        """The unexpired, unrevoked session with this hash."""
        query = select(auth_sessions).where(
            auth_sessions.c.token_hash == token_hash,
            auth_sessions.c.revoked_at.is_(None),
            auth_sessions.c.expires_at > utcnow(),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return SessionRow(
            id=row.id,
            token_hash=row.token_hash,
            csrf_hash=row.csrf_hash,
            user_id=row.user_id,
            kind=row.kind,
            created_at=as_utc(row.created_at) or utcnow(),
            expires_at=as_utc(row.expires_at) or utcnow(),
        )

    async def revoke(self, session_id: str) -> None:
        """End a session now."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(auth_sessions)
                .where(auth_sessions.c.id == session_id)
                .values(revoked_at=utcnow())
            )
