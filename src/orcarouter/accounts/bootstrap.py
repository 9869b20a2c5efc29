"""First start: the default workspace and the bootstrap admin key."""

from __future__ import annotations

from orcarouter.accounts.keys import DEFAULT_WORKSPACE, hash_key, issue_key
from orcarouter.store.locks import exclusive
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.routers import RouterRepository

ADMIN_ROLE = "admin"


async def ensure_workspace(
    workspaces: WorkspaceRepository, routers: RouterRepository | None, workspace_id: str, name: str
) -> None:
    """Create the workspace unless it exists, seeding ``orcarouter/auto`` when it is new.

    Seeding only at creation (and in migration 0003 for workspaces that existed before
    routers) keeps a deleted ``orcarouter/auto`` deleted across restarts.
    """
    if await workspaces.ensure(workspace_id, name) and routers is not None:
        await routers.seed_auto(workspace_id)


async def bootstrap(
    workspaces: WorkspaceRepository,
    keys: KeyRepository,
    admin_key: str | None,
    routers: RouterRepository | None = None,
) -> str | None:
    """Ensure the default workspace and an admin key; return a newly generated secret, if any.

    With ``ORCAROUTER_ADMIN_KEY`` set, that key becomes the admin key (a previous bootstrap
    key is revoked). Without it, the first start generates one, stores only its hash and
    returns the secret so the caller can print it once. Replicas starting together take turns
    (a lock on the database), so exactly one of them creates what is missing.
    """
    async with exclusive(keys.engine, "bootstrap"):
        return await _bootstrap(workspaces, keys, admin_key, routers)


async def _bootstrap(
    workspaces: WorkspaceRepository,
    keys: KeyRepository,
    admin_key: str | None,
    routers: RouterRepository | None,
) -> str | None:
    await ensure_workspace(workspaces, routers, DEFAULT_WORKSPACE, "Default workspace")
    if admin_key is not None:
        key_hash = hash_key(admin_key)
        existing = await keys.find_by_hash(key_hash)
        if existing is None:
            await issue_key(keys, "bootstrap admin", role=ADMIN_ROLE, secret=admin_key)
        elif existing.status != "active":
            await keys.set_status(existing.id, "active")
        await keys.revoke_role_except(ADMIN_ROLE, key_hash)
        return None
    if await keys.count_active(ADMIN_ROLE) > 0:
        return None
    issued = await issue_key(keys, "bootstrap admin", role=ADMIN_ROLE)
    return issued.secret
