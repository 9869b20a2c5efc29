"""``/api/workspaces/{id}/routers``: viewers read, developers and admins create, change, delete.

A router is addressed by its name (unique in the workspace); clients call it as
``orcarouter/{name}``. Every write refreshes the in-memory router table at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from orcarouter.accounts.roles import Action
from orcarouter.api.management.context import ApiError, WorkspaceAccess, authorize, context
from orcarouter.routing.routers import (
    DEFAULT_STRATEGY,
    ROUTER_PREFIX,
    RouterError,
    Strategy,
    check_fields,
)
from orcarouter.routing.table import RouterTable
from orcarouter.store.routers import RouterExists, RouterRepository, RouterRow, new_router_id

router = APIRouter(prefix="/api/workspaces/{workspace_id}/routers", tags=["routers"])

# Routers share the policy of keys: viewers read, developers and admins write.
READ = Action.READ_KEYS
MANAGE = Action.MANAGE_KEYS


@dataclass(frozen=True, slots=True)
class RouterAdmin:
    """The store and the in-memory table behind these routes."""

    repo: RouterRepository
    table: RouterTable | None


class RouterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=50)
    strategy: Strategy = DEFAULT_STRATEGY
    allowed_models: list[str] = Field(default_factory=list, description="globs; empty: all")
    default_model: str | None = Field(default=None, max_length=200)
    enabled: bool = True
    quality_bar: int | None = Field(default=None, ge=0, le=100)
    priority: list[str] = Field(default_factory=list)
    weights: dict[str, int] = Field(default_factory=dict)
    quality_scores: dict[str, int] = Field(default_factory=dict)


class RouterUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=50)
    strategy: Strategy | None = None
    allowed_models: list[str] | None = None
    default_model: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None
    quality_bar: int | None = Field(default=None, ge=0, le=100)
    priority: list[str] | None = None
    weights: dict[str, int] | None = None
    quality_scores: dict[str, int] | None = None


class RouterOut(BaseModel):
    id: str
    model: str = Field(description="what clients send as 'model': orcarouter/{name}")
    name: str
    strategy: str
    allowed_models: list[str]
    default_model: str | None
    enabled: bool
    quality_bar: int | None
    priority: list[str]
    weights: dict[str, int]
    quality_scores: dict[str, int]
    created_at: datetime
    updated_at: datetime


def router_out(row: RouterRow) -> RouterOut:
    """A router's public fields."""
    return RouterOut(
        id=row.id,
        model=ROUTER_PREFIX + row.name,
        name=row.name,
        strategy=row.strategy,
        allowed_models=list(row.allowed_models),
        default_model=row.default_model,
        enabled=row.enabled,
        quality_bar=row.quality_bar,
        priority=list(row.priority),
        weights=dict(row.weights),
        quality_scores=dict(row.quality_scores),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _admin(request: Request) -> RouterAdmin:
    return cast(RouterAdmin, request.app.state.routers)


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    try:
        check_fields(values)
    except RouterError as exc:
        raise ApiError(400, "invalid_router", str(exc)) from None
    return values


async def _changed(request: Request, access: WorkspaceAccess, action: str, name: str) -> None:
    admin = _admin(request)
    if admin.table is not None:
        await admin.table.refresh(force=True)
    caller = access.caller
    await context(request).audit.record(
        actor=caller.actor,
        action=action,
        workspace_id=access.workspace_id,
        target=("router", name),
        client_ip=caller.client_ip,
    )


@router.get("", summary="The workspace's routers")
async def list_routers(workspace_id: str, request: Request) -> list[RouterOut]:
    """Viewer and above."""
    await authorize(request, workspace_id, READ)
    return [router_out(r) for r in await _admin(request).repo.list(workspace_id)]


@router.post("", status_code=201, summary="Create a router")
async def create_router(workspace_id: str, body: RouterCreate, request: Request) -> RouterOut:
    """Developer and above; the name is unique in the workspace (409 otherwise)."""
    access = await authorize(request, workspace_id, MANAGE)
    values = _checked(body.model_dump())
    row = RouterRow(
        id=new_router_id(),
        workspace_id=workspace_id,
        name=values["name"],
        strategy=values["strategy"],
        allowed_models=tuple(values["allowed_models"]),
        default_model=values["default_model"],
        enabled=values["enabled"],
        quality_bar=values["quality_bar"],
        priority=tuple(values["priority"]),
        weights=values["weights"],
        quality_scores=values["quality_scores"],
    )
    try:
        await _admin(request).repo.create(row)
    except RouterExists:
        raise ApiError(409, "router_exists", f"a router named '{row.name}' exists") from None
    await _changed(request, access, "router.created", row.name)
    return router_out(row)


@router.get("/{name}", summary="One router")
async def get_router(workspace_id: str, name: str, request: Request) -> RouterOut:
    """Viewer and above."""
    await authorize(request, workspace_id, READ)
    row = await _admin(request).repo.get(workspace_id, name)
    if row is None:
        raise ApiError(404, "router_not_found", "no such router")
    return router_out(row)


@router.patch("/{name}", summary="Change, rename, enable or disable a router")
async def update_router(
    workspace_id: str, name: str, body: RouterUpdate, request: Request
) -> RouterOut:
    """Developer and above; fields left out keep their value."""
    access = await authorize(request, workspace_id, MANAGE)
    changes = _checked(body.model_dump(exclude_unset=True))
    for required in ("name", "strategy", "allowed_models", "enabled", "priority", "weights"):
        if required in changes and changes[required] is None:
            raise ApiError(400, "invalid_request", f"{required} cannot be null")
    if changes.get("quality_scores", {}) is None:
        raise ApiError(400, "invalid_request", "quality_scores cannot be null")
    try:
        row = await _admin(request).repo.update(workspace_id, name, changes)
    except RouterExists as exc:
        raise ApiError(409, "router_exists", f"a router named '{exc}' exists") from None
    if row is None:
        raise ApiError(404, "router_not_found", "no such router")
    await _changed(request, access, "router.updated", row.name)
    return router_out(row)


@router.delete("/{name}", status_code=204, summary="Delete a router")
async def delete_router(workspace_id: str, name: str, request: Request) -> None:
    """Developer and above; ``orcarouter/auto`` may be deleted too."""
    access = await authorize(request, workspace_id, MANAGE)
    if not await _admin(request).repo.delete(workspace_id, name):
        raise ApiError(404, "router_not_found", "no such router")
    await _changed(request, access, "router.deleted", name)
