"""``/api/workspaces/{id}/credentials``: the workspace's own provider keys (BYOK).

Viewers list them (provider, hint, dates), admins store and delete them. A stored key is never
returned, by any route, after the write: only its hint. The running gateway picks a change up
within about a second (``accounts/credentials.CredentialCache``).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from orcarouter.accounts.credentials import (
    BYOK_DISABLED,
    ByokDisabled,
    CredentialAdmin,
    UnknownProvider,
)
from orcarouter.accounts.roles import Action
from orcarouter.api.management.context import ApiError, WorkspaceAccess, authorize, context
from orcarouter.store.credentials import CredentialConflict, CredentialRow

router = APIRouter(prefix="/api/workspaces/{workspace_id}/credentials", tags=["credentials"])

# Visible ASCII without spaces: what every vendor's keys are made of, and safe in a header.
API_KEY = r"^[\x21-\x7e]+$"


class CredentialPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(
        min_length=8,
        max_length=4096,
        pattern=API_KEY,
        repr=False,
        description="the workspace's own key for the provider; stored encrypted, never shown",
    )


class CredentialOut(BaseModel):
    provider_id: str
    hint: str = Field(description="the key's first and last characters, e.g. sk-...abcd")
    created_at: datetime
    updated_at: datetime
    created_by: str | None


def credential_out(row: CredentialRow) -> CredentialOut:
    """A credential's public fields: never the key, never its ciphertext."""
    return CredentialOut(
        provider_id=row.provider_id,
        hint=row.hint,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
    )


def _admin(request: Request) -> CredentialAdmin:
    return cast(CredentialAdmin, request.app.state.credentials)


async def _audit(
    request: Request, access: WorkspaceAccess, action: str, provider_id: str, hint: str | None
) -> None:
    caller = access.caller
    await context(request).audit.record(
        actor=caller.actor,
        action=action,
        workspace_id=access.workspace_id,
        target=("provider_credential", provider_id),
        detail={"provider_id": provider_id, "hint": hint} if hint else {},
        client_ip=caller.client_ip,
    )


@router.get("", summary="The workspace's provider credentials (hints only)")
async def list_credentials(workspace_id: str, request: Request) -> list[CredentialOut]:
    """Viewer and above."""
    await authorize(request, workspace_id, Action.READ_CREDENTIALS)
    return [credential_out(r) for r in await _admin(request).list(workspace_id)]


@router.put("/{provider_id}", summary="Store the workspace's own key for a provider")
async def put_credential(
    workspace_id: str, provider_id: str, body: CredentialPut, request: Request
) -> CredentialOut:
    """Admin; the provider must be configured on the gateway (404 otherwise). Replaces the
    workspace's key for that provider if it had one. 409 while BYOK is disabled."""
    access = await authorize(request, workspace_id, Action.MANAGE_CREDENTIALS)
    admin = _admin(request)
    try:
        row = await admin.put(workspace_id, provider_id, body.api_key, access.caller.id)
    except ByokDisabled:
        raise ApiError(409, "byok_disabled", BYOK_DISABLED) from None
    except UnknownProvider:
        raise ApiError(404, "provider_not_found", "the gateway has no such provider") from None
    except CredentialConflict:
        raise ApiError(409, "conflict", "the credential changed meanwhile; try again") from None
    await _audit(request, access, "credential.stored", provider_id, row.hint)
    return credential_out(row)


@router.delete("/{provider_id}", status_code=204, summary="Delete a provider credential")
async def delete_credential(workspace_id: str, provider_id: str, request: Request) -> None:
    """Admin; the workspace's requests to the provider use the operator's key again."""
    access = await authorize(request, workspace_id, Action.MANAGE_CREDENTIALS)
    if not await _admin(request).delete(workspace_id, provider_id):
        raise ApiError(404, "credential_not_found", "no credential for this provider")
    await _audit(request, access, "credential.deleted", provider_id, None)
