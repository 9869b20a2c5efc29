"""``/api/workspaces/{id}/audit``: the workspace's audit log, newest first (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from orcarouter.accounts.roles import Action
from orcarouter.api.management.context import authorize, context
from orcarouter.api.management.schemas import AuditOut

router = APIRouter(prefix="/api/workspaces/{workspace_id}/audit", tags=["audit"])


@router.get("", summary="Management actions in this workspace")
async def list_audit(
    workspace_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[AuditOut]:
    """Admin only: who did what, when, to which object (never a secret)."""
    await authorize(request, workspace_id, Action.READ_AUDIT)
    entries = await context(request).audit.list(workspace_id, limit)
    return [
        AuditOut(
            id=e.id,
            created_at=e.created_at,
            actor_type=e.actor_type,
            actor_id=e.actor_id,
            action=e.action,
            target_type=e.target_type,
            target_id=e.target_id,
            detail=e.detail,
            client_ip=e.client_ip,
        )
        for e in entries
    ]
