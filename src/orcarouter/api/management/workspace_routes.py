"""``/api/workspaces`` and their members: viewers read, admins change (name, members and the
workspace-wide rate limits, which bind all the workspace's keys together)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from orcarouter.accounts.keys import new_id
from orcarouter.accounts.roles import ADMIN, Action
from orcarouter.accounts.users import AccountError, normalize_email
from orcarouter.api.management.context import ApiError, authorize, context, current_caller
from orcarouter.api.management.schemas import (
    MemberAdd,
    MemberOut,
    MemberUpdate,
    WorkspaceCreate,
    WorkspaceDetail,
    WorkspaceOut,
    WorkspaceUpdate,
)
from orcarouter.store.accounts import WORKSPACE_LIMITS, LastAdmin, Membership, WorkspaceRow
from orcarouter.store.ids import utcnow

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])


def member_out(member: Membership) -> MemberOut:
    """A member as the API shows it."""
    return MemberOut(
        user_id=member.user_id, email=member.email, role=member.role, created_at=member.created_at
    )


@router.get("", summary="The caller's workspaces")
async def list_workspaces(request: Request) -> list[WorkspaceOut]:
    """Every workspace the user belongs to (a key: its own)."""
    ctx = context(request)
    caller = await current_caller(request)
    if caller.key is not None:
        found = await ctx.members.workspace(caller.key.workspace_id)
        if found is None:
            return []
        return [WorkspaceOut(id=found.id, name=found.name, role=caller.key.role)]
    return [
        WorkspaceOut(id=m.workspace_id, name=m.workspace_name, role=m.role)
        for m in await ctx.users.memberships_of(caller.id)
    ]


@router.post("", status_code=201, summary="Create a workspace (users only)")
async def create_workspace(body: WorkspaceCreate, request: Request) -> WorkspaceOut:
    """The calling user becomes the new workspace's admin."""
    ctx = context(request)
    caller = await current_caller(request)
    if caller.key is not None:
        raise ApiError(403, "forbidden", "an API key belongs to one workspace; log in as a user")
    workspace = WorkspaceRow(new_id("ws"), body.name, utcnow())
    await ctx.users.create_workspace(workspace, caller.id, ADMIN)
    await ctx.audit.record(
        actor=caller.actor,
        action="workspace.created",
        workspace_id=workspace.id,
        target=("workspace", workspace.id),
        detail={"name": workspace.name},
        client_ip=caller.client_ip,
    )
    return WorkspaceOut(
        id=workspace.id, name=workspace.name, role=ADMIN, created_at=workspace.created_at
    )


@router.get("/{workspace_id}", summary="One workspace, with its rate limits")
async def get_workspace(workspace_id: str, request: Request) -> WorkspaceDetail:
    """Viewer and above."""
    access = await authorize(request, workspace_id, Action.READ_WORKSPACE)
    found = await context(request).members.workspace(workspace_id)
    if found is None:
        raise ApiError(404, "workspace_not_found", "no such workspace")
    return WorkspaceDetail(
        id=found.id,
        name=found.name,
        role=access.role,
        created_at=found.created_at,
        rpm_limit=found.rpm_limit,
        tpm_limit=found.tpm_limit,
        concurrency_limit=found.concurrency_limit,
    )


@router.patch("/{workspace_id}", summary="Rename a workspace or change its rate limits")
async def update_workspace(
    workspace_id: str, body: WorkspaceUpdate, request: Request
) -> WorkspaceDetail:
    """Admin only; a limit set to null is lifted. New limits hold within a second everywhere."""
    access = await authorize(request, workspace_id, Action.UPDATE_WORKSPACE)
    ctx = context(request)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        if changes["name"] is None:
            raise ApiError(400, "invalid_request", "name cannot be null")
        await ctx.members.rename(workspace_id, changes["name"])
    limits = {k: v for k, v in changes.items() if k in WORKSPACE_LIMITS}
    if limits:
        await ctx.members.set_rate_limits(workspace_id, limits)
        await ctx.key_cache.refresh()
    await ctx.audit.record(
        actor=access.caller.actor,
        action="workspace.updated",
        workspace_id=workspace_id,
        target=("workspace", workspace_id),
        detail=changes,
        client_ip=access.caller.client_ip,
    )
    return await get_workspace(workspace_id, request)


@router.get("/{workspace_id}/members", summary="The workspace's members")
async def list_members(workspace_id: str, request: Request) -> list[MemberOut]:
    """Viewer and above."""
    await authorize(request, workspace_id, Action.READ_MEMBERS)
    return [member_out(m) for m in await context(request).members.list(workspace_id)]


@router.post("/{workspace_id}/members", status_code=201, summary="Add a user by email")
async def add_member(workspace_id: str, body: MemberAdd, request: Request) -> MemberOut:
    """Admin only; the user must have an account."""
    access = await authorize(request, workspace_id, Action.MANAGE_MEMBERS)
    ctx = context(request)
    try:
        email = normalize_email(body.email)
    except AccountError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    user = await ctx.users.find_by_email(email)
    if user is None:
        raise ApiError(404, "user_not_found", "no account has this email; ask them to register")
    if not await ctx.members.add(workspace_id, user.id, body.role):
        raise ApiError(409, "already_member", "this user is already a member")
    await ctx.audit.record(
        actor=access.caller.actor,
        action="member.added",
        workspace_id=workspace_id,
        target=("user", user.id),
        detail={"email": email, "role": body.role},
        client_ip=access.caller.client_ip,
    )
    member = await ctx.members.get(workspace_id, user.id)
    assert member is not None
    return member_out(member)


@router.patch("/{workspace_id}/members/{user_id}", summary="Change a member's role")
async def update_member(
    workspace_id: str, user_id: str, body: MemberUpdate, request: Request
) -> MemberOut:
    """Admin only; nobody changes their own role, and the last admin stays admin."""
    access = await authorize(request, workspace_id, Action.MANAGE_MEMBERS)
    ctx = context(request)
    if access.caller.kind == "user" and access.caller.id == user_id:
        raise ApiError(403, "forbidden", "you cannot change your own role")
    before = await ctx.members.get(workspace_id, user_id)
    if before is None:
        raise ApiError(404, "member_not_found", "no such member")
    try:
        await ctx.members.set_role(workspace_id, user_id, body.role)
    except LastAdmin:
        raise ApiError(409, "last_admin", "a workspace keeps at least one admin") from None
    await ctx.audit.record(
        actor=access.caller.actor,
        action="member.role_changed",
        workspace_id=workspace_id,
        target=("user", user_id),
        detail={"from": before.role, "to": body.role},
        client_ip=access.caller.client_ip,
    )
    member = await ctx.members.get(workspace_id, user_id)
    assert member is not None
    return member_out(member)


@router.delete("/{workspace_id}/members/{user_id}", status_code=204, summary="Remove a member")
async def remove_member(workspace_id: str, user_id: str, request: Request) -> Response:
    """Admin only; the last admin cannot be removed."""
    access = await authorize(request, workspace_id, Action.MANAGE_MEMBERS)
    ctx = context(request)
    try:
        removed = await ctx.members.remove(workspace_id, user_id)
    except LastAdmin:
        raise ApiError(409, "last_admin", "a workspace keeps at least one admin") from None
    if not removed:
        raise ApiError(404, "member_not_found", "no such member")
    await ctx.audit.record(
        actor=access.caller.actor,
        action="member.removed",
        workspace_id=workspace_id,
        target=("user", user_id),
        client_ip=access.caller.client_ip,
    )
    return Response(status_code=204)
