"""Recording management actions: who did what to which object, from where. Never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orcarouter.accounts.keys import new_id
from orcarouter.store.audit import AuditEntry, AuditRepository

__all__ = ["AuditEntry", "AuditTrail"]

# Field names that may hold secrets; dropped from every detail whatever the caller passes.
_SECRET_FIELDS = frozenset(
    {"secret", "password", "password_hash", "key_hash", "token", "csrf_token", "key"}
)


class AuditTrail:
    """Appends audit entries, scrubbing secret-named fields from their details."""

    def __init__(self, repo: AuditRepository) -> None:
        self._repo = repo

    async def record(
        self,
        *,
        actor: tuple[str, str],
        action: str,
        workspace_id: str | None,
        target: tuple[str, str] | None = None,
        detail: Mapping[str, Any] | None = None,
        client_ip: str | None = None,
    ) -> None:
        """Append one entry; ``actor`` and ``target`` are (type, id) pairs."""
        await self._repo.add(
            AuditEntry(
                id=new_id("aud"),
                workspace_id=workspace_id,
                actor_type=actor[0],
                actor_id=actor[1],
                action=action,
                target_type=target[0] if target else None,
                target_id=target[1] if target else None,
                detail={k: v for k, v in (detail or {}).items() if k not in _SECRET_FIELDS},
                client_ip=client_ip,
            )
        )

    async def list(self, workspace_id: str, limit: int = 100) -> list[AuditEntry]:
        """The workspace's newest entries first."""
        return await self._repo.list(workspace_id, limit)
