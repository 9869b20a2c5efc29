"""``/api/auth/*`` and ``/api/me``: registration, login, logout, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from orcarouter.accounts.roles import ADMIN
from orcarouter.accounts.sessions import SESSION, TOKEN
from orcarouter.accounts.users import AccountError
from orcarouter.api.management.context import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    ApiError,
    Caller,
    ManagementContext,
    client_ip,
    context,
    current_caller,
)
from orcarouter.api.management.schemas import (
    KeyIdentity,
    LoginRequest,
    LoginResponse,
    MeResponse,
    RegisterRequest,
    RegisterResponse,
    UserOut,
    WorkspaceOut,
)
from orcarouter.store.accounts import EmailTaken, UserRow

router = APIRouter(prefix="/api", tags=["auth"])


def user_out(user: UserRow) -> UserOut:
    """A user as the API shows it: never its password hash."""
    return UserOut(id=user.id, email=user.email, created_at=user.created_at)


async def _may_register(ctx: ManagementContext, request: Request) -> bool:
    if ctx.settings.open_registration or await ctx.users.count() == 0:
        return True
    has_credentials = "authorization" in request.headers or SESSION_COOKIE in request.cookies
    if not has_credentials:
        return False
    caller = await current_caller(request)  # an admin anywhere may create accounts for others
    if caller.key is not None:
        return caller.key.role == ADMIN
    return any(m.role == ADMIN for m in await ctx.users.memberships_of(caller.id))


@router.post("/auth/register", status_code=201, summary="Create a user and its own workspace")
async def register(body: RegisterRequest, request: Request) -> RegisterResponse:
    """Registration is open to the first user, to everyone with ORCAROUTER_OPEN_REGISTRATION,
    and otherwise to callers who are a workspace admin."""
    ctx = context(request)
    if not await _may_register(ctx, request):
        raise ApiError(403, "registration_closed", "registration is closed; ask an admin")
    try:
        made = await ctx.accounts.register(
            body.email, body.password, body.workspace_name or "My workspace"
        )
    except AccountError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    except EmailTaken:
        raise ApiError(409, "email_taken", "an account with this email already exists") from None
    await ctx.audit.record(
        actor=("user", made.user.id),
        action="user.registered",
        workspace_id=made.workspace.id,
        target=("workspace", made.workspace.id),
        detail={"email": made.user.email, "workspace_name": made.workspace.name},
        client_ip=client_ip(request),
    )
    return RegisterResponse(
        user=user_out(made.user),
        workspace=WorkspaceOut(
            id=made.workspace.id,
            name=made.workspace.name,
            role=ADMIN,
            created_at=made.workspace.created_at,
        ),
    )


@router.post("/auth/login", summary="Session cookie for the dashboard, token for scripts")
async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
    """Sets an HttpOnly SameSite=Strict session cookie and returns a management token."""
    ctx = context(request)
    user = await ctx.accounts.login(body.email, body.password)
    if user is None:
        await ctx.audit.record(
            actor=("anonymous", "-"),
            action="auth.login_failed",
            workspace_id=None,
            client_ip=client_ip(request),
        )
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    session = await ctx.sessions.open(user.id, SESSION)
    token = await ctx.sessions.open(user.id, TOKEN)
    assert session.csrf_token is not None
    secure = request.url.scheme == "https"
    max_age = int((session.row.expires_at - session.row.created_at).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        session.secret,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE, session.csrf_token, max_age=max_age, path="/", secure=secure, samesite="strict"
    )
    await ctx.audit.record(
        actor=("user", user.id),
        action="auth.login",
        workspace_id=None,
        client_ip=client_ip(request),
    )
    return LoginResponse(
        user=user_out(user),
        token=token.secret,
        token_expires_at=token.row.expires_at,
        csrf_token=session.csrf_token,
        session_expires_at=session.row.expires_at,
    )


@router.post("/auth/logout", status_code=204, summary="End this session or management token")
async def logout(request: Request) -> Response:
    """Revokes the session (cookie) or management token (Bearer) used for this call."""
    ctx = context(request)
    caller = await current_caller(request)
    if caller.session is None:
        raise ApiError(400, "no_session", "API keys have no session; revoke the key instead")
    await ctx.sessions.close(caller.session.id)
    await ctx.audit.record(
        actor=caller.actor,
        action="auth.logout",
        workspace_id=None,
        target=("session", caller.session.id),
        client_ip=caller.client_ip,
    )
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me", summary="The caller and its workspaces")
async def me(request: Request) -> MeResponse:
    """A user with its memberships, or a key with its one workspace."""
    ctx = context(request)
    caller = await current_caller(request)
    if caller.key is not None:
        return await _key_me(ctx, caller)
    user = await ctx.users.get(caller.id)
    assert user is not None
    memberships = await ctx.users.memberships_of(caller.id)
    return MeResponse(
        kind="user",
        user=user_out(user),
        workspaces=[
            WorkspaceOut(id=m.workspace_id, name=m.workspace_name, role=m.role) for m in memberships
        ],
    )


async def _key_me(ctx: ManagementContext, caller: Caller) -> MeResponse:
    key = caller.key
    assert key is not None
    workspace = await ctx.members.workspace(key.workspace_id)
    return MeResponse(
        kind="key",
        key=KeyIdentity(
            id=key.key_id, name=key.key_name, workspace_id=key.workspace_id, role=key.role
        ),
        workspaces=[
            WorkspaceOut(
                id=key.workspace_id,
                name=workspace.name if workspace else key.workspace_id,
                role=key.role,
                created_at=workspace.created_at if workspace else None,
            )
        ],
    )
