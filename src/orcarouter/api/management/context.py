"""What every management handler needs: the services, the caller and its workspace role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from fastapi import Request

from orcarouter.accounts.audit import AuditTrail
from orcarouter.accounts.key_admin import KeyAdmin
from orcarouter.accounts.keys import KeyCache, Principal
from orcarouter.accounts.roles import Action, allows, required_role
from orcarouter.accounts.sessions import SESSION, TOKEN, Sessions, csrf_matches
from orcarouter.accounts.users import Accounts
from orcarouter.api.auth import bearer_token
from orcarouter.settings import KEY_PREFIX, Settings
from orcarouter.store.accounts import SessionRow, UserRepository, WorkspaceMembers

SESSION_COOKIE = "orca_session"
CSRF_COOKIE = "orca_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ManagementContext:
    """The services behind the management API, built once per gateway."""

    settings: Settings
    key_cache: KeyCache
    accounts: Accounts
    users: UserRepository
    members: WorkspaceMembers
    sessions: Sessions
    keys: KeyAdmin
    audit: AuditTrail


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the management API: a user (session or token) or an API key."""

    kind: Literal["user", "key"]
    id: str
    client_ip: str | None
    email: str | None = None
    key: Principal | None = None
    session: SessionRow | None = None

    @property
    def actor(self) -> tuple[str, str]:
        """(type, id) for the audit log."""
        return (self.kind, self.id)


@dataclass(frozen=True, slots=True)
class WorkspaceAccess:
    """A caller allowed to act in one workspace, with its role there."""

    workspace_id: str
    role: str
    caller: Caller


def context(request: Request) -> ManagementContext:
    """The context stored on the app at build time."""
    return cast(ManagementContext, request.app.state.context)


def client_ip(request: Request) -> str | None:
    """The peer address (no ``X-Forwarded-For``: no trusted proxy is configured)."""
    return request.client.host if request.client else None


async def current_caller(request: Request) -> Caller:
    """Authenticate: Bearer key or management token, else the session cookie (with CSRF)."""
    ctx = context(request)
    ip = client_ip(request)
    token = bearer_token(request.headers)
    if token is not None:
        if token.startswith(KEY_PREFIX):
            return await _key_caller(ctx, token, ip)
        row = await ctx.sessions.resolve(token, TOKEN)
        if row is None:
            raise ApiError(401, "invalid_token", "invalid or expired credentials")
        return await _user_caller(ctx, row, ip)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        row = await ctx.sessions.resolve(cookie, SESSION)
        if row is None:
            raise ApiError(401, "invalid_session", "the session has expired; log in again")
        if request.method not in _SAFE_METHODS and not csrf_matches(
            row, request.headers.get(CSRF_HEADER)
        ):
            raise ApiError(403, "csrf_failed", f"send the session's CSRF token as {CSRF_HEADER}")
        return await _user_caller(ctx, row, ip)
    raise ApiError(401, "missing_credentials", "send 'Authorization: Bearer …' or log in")


async def _key_caller(ctx: ManagementContext, token: str, ip: str | None) -> Caller:
    principal = await ctx.key_cache.lookup_or_refresh(token)
    if principal is None:
        if not ctx.key_cache.healthy:  # fail closed, as on the inference path
            raise ApiError(503, "unavailable", "keys cannot be verified right now")
        raise ApiError(401, "invalid_token", "invalid or expired credentials")
    return Caller("key", principal.key_id, ip, key=principal)


async def _user_caller(ctx: ManagementContext, row: SessionRow, ip: str | None) -> Caller:
    user = await ctx.users.get(row.user_id)
    if user is None:
        raise ApiError(401, "invalid_token", "invalid or expired credentials")
    return Caller("user", user.id, ip, email=user.email, session=row)


async def role_in(ctx: ManagementContext, caller: Caller, workspace_id: str) -> str | None:
    """The caller's role in the workspace, None when it has none there."""
    if caller.key is not None:
        return caller.key.role if caller.key.workspace_id == workspace_id else None
    member = await ctx.members.get(workspace_id, caller.id)
    return member.role if member is not None else None


async def authorize(request: Request, workspace_id: str, action: Action) -> WorkspaceAccess:
    """The caller, allowed to perform ``action`` in the workspace (404 if not a member)."""
    ctx = context(request)
    caller = await current_caller(request)
    role = await role_in(ctx, caller, workspace_id)
    if role is None:  # same answer whether the workspace exists or not: no probing (BOLA)
        raise ApiError(404, "workspace_not_found", "no such workspace")
    if not allows(role, action):
        raise ApiError(
            403, "forbidden", f"this needs the {required_role(action)} role (yours: {role})"
        )
    return WorkspaceAccess(workspace_id, role, caller)
