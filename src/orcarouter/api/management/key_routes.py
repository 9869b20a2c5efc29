"""``/api/workspaces/{id}/keys``: viewers list, developers create, change and revoke.

A key's secret appears in exactly one response, the one that created it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from orcarouter.accounts.key_admin import (
    KeyNotFound,
    KeySpec,
    KeyStateError,
    expiry,
    grant_of_key,
    grant_of_user,
)
from orcarouter.accounts.limits import GrantExceeded, KeyLimits, LimitError
from orcarouter.accounts.roles import Action
from orcarouter.api.management.context import ApiError, WorkspaceAccess, authorize, context
from orcarouter.api.management.schemas import KeyCreate, KeyCreated, KeyOut, KeyUpdate
from orcarouter.store.repositories import KeyRow

router = APIRouter(prefix="/api/workspaces/{workspace_id}/keys", tags=["keys"])


def key_out(row: KeyRow) -> dict[str, Any]:
    """A key's public fields: never its hash, never its secret."""
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "role": row.role,
        "display_prefix": row.display_prefix,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
        "model_limits_enabled": row.model_limits_enabled,
        "model_limits": list(row.model_limits),
        "allow_ips": list(row.allow_ips),
        "usd_cap_micros": row.usd_cap_micros,
        "environment": row.environment,
        "created_by": row.created_by,
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "concurrency_limit": row.concurrency_limit,
    }


def _audit_detail(row: KeyRow) -> dict[str, Any]:
    detail = key_out(row)
    for name in ("display_prefix", "created_at", "updated_at", "last_used_at", "id"):
        detail.pop(name)
    detail["expires_at"] = row.expires_at.isoformat() if row.expires_at else None
    return detail


def _grant(access: WorkspaceAccess) -> KeyLimits:
    key = access.caller.key
    return grant_of_key(key) if key is not None else grant_of_user(access.role)


@router.get("", summary="The workspace's keys")
async def list_keys(workspace_id: str, request: Request) -> list[KeyOut]:
    """Viewer and above; secrets are never listed."""
    await authorize(request, workspace_id, Action.READ_KEYS)
    rows = await context(request).keys.list(workspace_id)
    return [KeyOut(**key_out(r)) for r in rows]


@router.post("", status_code=201, summary="Create a key; its secret is shown once")
async def create_key(workspace_id: str, body: KeyCreate, request: Request) -> KeyCreated:
    """Developer and above; the key's role, models, IPs, cap, expiry and rate limits lie within
    the caller's."""
    access = await authorize(request, workspace_id, Action.MANAGE_KEYS)
    ctx = context(request)
    limits = KeyLimits(
        role=body.role,
        model_limits_enabled=body.model_limits_enabled,
        model_limits=tuple(body.model_limits),
        allow_ips=tuple(body.allow_ips),
        usd_cap_micros=body.usd_cap_micros,
        expires_at=expiry(body.expires_at),
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
        concurrency_limit=body.concurrency_limit,
    )
    spec = KeySpec(name=body.name, limits=limits, environment=body.environment)
    caller = access.caller
    try:
        issued = await ctx.keys.create(workspace_id, spec, _grant(access), caller.id)
    except GrantExceeded as exc:
        raise ApiError(403, "grant_exceeded", str(exc)) from None
    except LimitError as exc:
        raise ApiError(400, "invalid_limits", str(exc)) from None
    await ctx.key_cache.refresh()
    await ctx.audit.record(
        actor=caller.actor,
        action="key.created",
        workspace_id=workspace_id,
        target=("key", issued.row.id),
        detail=_audit_detail(issued.row),
        client_ip=caller.client_ip,
    )
    return KeyCreated(**key_out(issued.row), secret=issued.secret)


@router.get("/{key_id}", summary="One key")
async def get_key(workspace_id: str, key_id: str, request: Request) -> KeyOut:
    """Viewer and above."""
    await authorize(request, workspace_id, Action.READ_KEYS)
    try:
        row = await context(request).keys.get(workspace_id, key_id)
    except KeyNotFound:
        raise ApiError(404, "key_not_found", "no such key") from None
    return KeyOut(**key_out(row))


@router.patch("/{key_id}", summary="Change, disable or re-enable a key")
async def update_key(workspace_id: str, key_id: str, body: KeyUpdate, request: Request) -> KeyOut:
    """Developer and above; the resulting key must lie within the caller's grant."""
    access = await authorize(request, workspace_id, Action.MANAGE_KEYS)
    ctx = context(request)
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "status", "role", "model_limits_enabled", "model_limits", "allow_ips"):
        if required in changes and changes[required] is None:
            raise ApiError(400, "invalid_request", f"{required} cannot be null")
    if "expires_at" in changes:
        changes["expires_at"] = expiry(changes["expires_at"])
    for name in ("model_limits", "allow_ips"):
        if name in changes:
            changes[name] = tuple(changes[name])
    row = await _apply(ctx.keys.update(workspace_id, key_id, changes, _grant(access)))
    await ctx.key_cache.refresh()
    await ctx.audit.record(
        actor=access.caller.actor,
        action="key.updated",
        workspace_id=workspace_id,
        target=("key", key_id),
        detail={"changed": sorted(changes), **_audit_detail(row)},
        client_ip=access.caller.client_ip,
    )
    return KeyOut(**key_out(row))


@router.delete("/{key_id}", summary="Revoke a key for good")
async def revoke_key(workspace_id: str, key_id: str, request: Request) -> KeyOut:
    """Developer and above; revoked keys stop working within a second everywhere."""
    access = await authorize(request, workspace_id, Action.MANAGE_KEYS)
    ctx = context(request)
    row = await _apply(ctx.keys.revoke(workspace_id, key_id, _grant(access)))
    await ctx.key_cache.refresh()
    await ctx.audit.record(
        actor=access.caller.actor,
        action="key.revoked",
        workspace_id=workspace_id,
        target=("key", key_id),
        client_ip=access.caller.client_ip,
    )
    return KeyOut(**key_out(row))


async def _apply(change: Any) -> KeyRow:
    try:
        row: KeyRow = await change
    except KeyNotFound:
        raise ApiError(404, "key_not_found", "no such key") from None
    except KeyStateError as exc:
        raise ApiError(409, "key_state", str(exc)) from None
    except GrantExceeded as exc:
        raise ApiError(403, "grant_exceeded", str(exc)) from None
    except LimitError as exc:
        raise ApiError(400, "invalid_limits", str(exc)) from None
    return row
