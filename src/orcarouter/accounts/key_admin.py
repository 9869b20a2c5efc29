"""Creating and changing keys through the management API, within the caller's own grant.

A caller never grants more than it holds: a user grants up to its workspace role; a key
grants up to its own role, models, IP ranges, USD cap, expiry and rate limits
(``limits.check_within``): a rate-limited key makes only keys limited as tightly or more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from orcarouter.accounts.keys import IssuedKey, KeyRowLimits, Principal, issue_key
from orcarouter.accounts.limits import (
    MAX_NETWORKS,
    MAX_PATTERNS,
    RATE_LIMIT_FIELDS,
    GrantExceeded,
    KeyLimits,
    LimitError,
    check_within,
    parse_network,
    validate_model_pattern,
    validate_rate_limit,
)
from orcarouter.accounts.roles import KEY_ROLES, at_most
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRepository, KeyRow
from orcarouter.store.workspace_keys import WorkspaceKeys

ACTIVE, DISABLED, REVOKED = "active", "disabled", "revoked"


class KeyNotFound(LookupError):
    """The workspace has no key with this id."""


class KeyStateError(ValueError):
    """The key's status does not allow the change (a revoked key stays revoked)."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Everything a caller may set on a key."""

    name: str
    limits: KeyLimits
    environment: str | None = None


def grant_of_user(role: str) -> KeyLimits:
    """What a workspace member may grant: its role, with no other bound."""
    return KeyLimits(role=role)


def grant_of_key(principal: Principal) -> KeyLimits:
    """What a key may grant: everything it holds, no more."""
    return KeyLimits(
        role=principal.role,
        model_limits_enabled=principal.model_limits_enabled,
        model_limits=principal.model_limits,
        allow_ips=tuple(str(n) for n in principal.allow_ips),
        usd_cap_micros=principal.usd_cap_micros,
        expires_at=principal.expires_at,
        rpm_limit=principal.rate_limits.rpm,
        tpm_limit=principal.rate_limits.tpm,
        concurrency_limit=principal.rate_limits.concurrency,
    )


def normalized(limits: KeyLimits, *, new_expiry: bool = True) -> KeyLimits:
    """The limits validated and in canonical form (``LimitError`` on a bad value)."""
    if limits.role not in KEY_ROLES:
        raise LimitError(f"role must be one of {', '.join(KEY_ROLES)}")
    if len(limits.model_limits) > MAX_PATTERNS or len(limits.allow_ips) > MAX_NETWORKS:
        raise LimitError("too many allow-list entries")
    if new_expiry and limits.expires_at is not None and limits.expires_at <= utcnow():
        raise LimitError("expires_at must be in the future")
    for name in RATE_LIMIT_FIELDS:
        validate_rate_limit(name, getattr(limits, name))
    patterns = tuple(dict.fromkeys(validate_model_pattern(p) for p in limits.model_limits))
    networks = tuple(dict.fromkeys(str(parse_network(v)) for v in limits.allow_ips))
    return replace(limits, model_limits=patterns, allow_ips=networks)


def limits_of(row: KeyRow) -> KeyLimits:
    """A stored key's limits."""
    return KeyLimits(
        role=row.role,
        model_limits_enabled=row.model_limits_enabled,
        model_limits=row.model_limits,
        allow_ips=row.allow_ips,
        usd_cap_micros=row.usd_cap_micros,
        expires_at=row.expires_at,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        concurrency_limit=row.concurrency_limit,
    )


class KeyAdmin:
    """Key lifecycle for one caller's grant: create, update, disable, revoke."""

    def __init__(self, keys: KeyRepository, scoped: WorkspaceKeys) -> None:
        self._keys = keys
        self._scoped = scoped

    async def create(
        self, workspace_id: str, spec: KeySpec, grant: KeyLimits, created_by: str
    ) -> IssuedKey:
        """A new key within ``grant``; its secret is returned once."""
        limits = normalized(spec.limits)
        check_within(limits, grant, at_most(limits.role, grant.role))
        return await issue_key(
            self._keys,
            spec.name,
            role=limits.role,
            workspace_id=workspace_id,
            expires_at=limits.expires_at,
            limits=KeyRowLimits(
                model_limits_enabled=limits.model_limits_enabled,
                model_limits=limits.model_limits,
                allow_ips=limits.allow_ips,
                usd_cap_micros=limits.usd_cap_micros,
                environment=spec.environment,
                created_by=created_by,
                rpm_limit=limits.rpm_limit,
                tpm_limit=limits.tpm_limit,
                concurrency_limit=limits.concurrency_limit,
            ),
        )

    async def list(self, workspace_id: str) -> list[KeyRow]:
        """The workspace's keys."""
        return await self._scoped.list(workspace_id)

    async def get(self, workspace_id: str, key_id: str) -> KeyRow:
        """One key of the workspace, else ``KeyNotFound``."""
        row = await self._scoped.get(workspace_id, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return row

    async def update(
        self, workspace_id: str, key_id: str, changes: dict[str, Any], grant: KeyLimits
    ) -> KeyRow:
        """Apply ``changes`` (field -> value); the resulting key must lie within ``grant``."""
        row = await self.get(workspace_id, key_id)
        if row.status == REVOKED:
            raise KeyStateError("a revoked key cannot be changed")
        if not at_most(row.role, grant.role):
            raise GrantExceeded("the key's role is above the caller's")
        limit_fields = {k: v for k, v in changes.items() if k in KeyLimits.__slots__}
        limits = normalized(
            replace(limits_of(row), **limit_fields), new_expiry="expires_at" in limit_fields
        )
        resulting_status = changes.get("status", row.status)
        if limit_fields or resulting_status == ACTIVE:
            check_within(limits, grant, at_most(limits.role, grant.role))
        values = {k: v for k, v in changes.items() if k not in KeyLimits.__slots__}
        values.update(
            role=limits.role,
            model_limits_enabled=limits.model_limits_enabled,
            model_limits=limits.model_limits,
            allow_ips=limits.allow_ips,
            usd_cap_micros=limits.usd_cap_micros,
            expires_at=limits.expires_at,
            rpm_limit=limits.rpm_limit,
            tpm_limit=limits.tpm_limit,
            concurrency_limit=limits.concurrency_limit,
        )
        await self._scoped.update(workspace_id, key_id, values)
        return await self.get(workspace_id, key_id)

    async def revoke(self, workspace_id: str, key_id: str, grant: KeyLimits) -> KeyRow:
        """Revoke for good (idempotent); a caller may not revoke a key above its role."""
        row = await self.get(workspace_id, key_id)
        if not at_most(row.role, grant.role):
            raise GrantExceeded("the key's role is above the caller's")
        if row.status != REVOKED:
            await self._scoped.update(workspace_id, key_id, {"status": REVOKED})
        return await self.get(workspace_id, key_id)


def expiry(value: datetime | None) -> datetime | None:
    """A timezone-aware expiry (a naive one is taken as UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=utcnow().tzinfo)
