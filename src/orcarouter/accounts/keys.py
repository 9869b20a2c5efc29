"""API keys: ``sk-orca-`` plus 32 random bytes, stored as SHA-256, verified from memory.

A fast hash is right for high-entropy tokens (no dictionary to guess from), and looking keys
up by their hash means no secret is ever compared byte by byte or put in a SQL ``WHERE``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from orcarouter.accounts.limits import IPNetwork, LimitError, compile_patterns, parse_network
from orcarouter.accounts.rate_limits import NO_LIMITS, LimitScope, RateLimits, scopes_of
from orcarouter.settings import KEY_PREFIX
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRepository, KeyRow

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE: Final = "ws_default"


def hash_key(secret: str) -> str:
    """SHA-256 of the key, hex encoded: the only form of a key the database holds."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a key shown in lists: enough to recognise it, useless to use it."""
    return secret[: len(KEY_PREFIX) + 4] + "…"


def new_secret() -> str:
    """A fresh key with 32 bytes of randomness."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_id(prefix: str) -> str:
    """A short random identifier such as ``key_3f9a…``."""
    return f"{prefix}_{secrets.token_hex(12)}"


_NO_ADDRESS: Final = ipaddress.ip_network("::/128")  # the unspecified address: no client has it
_NOTHING: Final = compile_patterns(())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its workspace and its limits, as the cache holds them.

    ``model_matcher`` is ``model_limits`` compiled once when the key is loaded, so the
    per-request checks in ``accounts/access.py`` do no parsing; ``limit_scopes`` likewise holds
    the key's and its workspace's rate limits ready for the limiter (empty: unlimited).
    """

    key_id: str
    workspace_id: str
    key_name: str
    role: str
    expires_at: datetime | None
    model_limits_enabled: bool = False
    model_limits: tuple[str, ...] = ()
    allow_ips: tuple[IPNetwork, ...] = ()
    usd_cap_micros: int | None = None
    environment: str | None = None
    model_matcher: re.Pattern[str] = field(default=_NOTHING, compare=False)
    rate_limits: RateLimits = NO_LIMITS
    workspace_rate_limits: RateLimits = NO_LIMITS
    limit_scopes: tuple[LimitScope, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class KeyRowLimits:
    """The optional parts of a new key: its limits and who made it."""

    model_limits_enabled: bool = False
    model_limits: tuple[str, ...] = ()
    allow_ips: tuple[str, ...] = ()
    usd_cap_micros: int | None = None
    environment: str | None = None
    created_by: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    concurrency_limit: int | None = None


def principal_of(row: KeyRow) -> Principal:
    """The cached form of a stored key, with its allow-lists parsed and compiled."""
    own = RateLimits(row.rpm_limit, row.tpm_limit, row.concurrency_limit)
    workspace = RateLimits(
        row.workspace_rpm_limit, row.workspace_tpm_limit, row.workspace_concurrency_limit
    )
    return Principal(
        key_id=row.id,
        workspace_id=row.workspace_id,
        key_name=row.name,
        role=row.role,
        expires_at=row.expires_at,
        model_limits_enabled=row.model_limits_enabled,
        model_limits=row.model_limits,
        allow_ips=_networks(row),
        usd_cap_micros=row.usd_cap_micros,
        environment=row.environment,
        model_matcher=compile_patterns(row.model_limits),
        rate_limits=own,
        workspace_rate_limits=workspace,
        limit_scopes=scopes_of(row.id, own, row.workspace_id, workspace),
    )


def _networks(row: KeyRow) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for value in row.allow_ips:
        try:
            networks.append(parse_network(value))
        except LimitError:  # fail closed: a broken entry never widens the list to "any"
            log.warning("key %s has an unreadable IP allow-list entry", row.id)
            networks.append(_NO_ADDRESS)
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key; ``secret`` is shown once and never stored."""

    row: KeyRow
    secret: str


async def issue_key(
    repo: KeyRepository,
    name: str,
    *,
    role: str = "member",
    workspace_id: str = DEFAULT_WORKSPACE,
    secret: str | None = None,
    expires_at: datetime | None = None,
    limits: KeyRowLimits | None = None,
) -> IssuedKey:
    """Create and store a key; returns the secret once."""
    secret = secret or new_secret()
    now = utcnow()
    extra = limits or KeyRowLimits()
    row = KeyRow(
        id=new_id("key"),
        workspace_id=workspace_id,
        name=name,
        key_hash=hash_key(secret),
        display_prefix=display_prefix(secret),
        role=role,
        status="active",
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
        last_used_at=None,
        model_limits_enabled=extra.model_limits_enabled,
        model_limits=extra.model_limits,
        allow_ips=extra.allow_ips,
        usd_cap_micros=extra.usd_cap_micros,
        environment=extra.environment,
        created_by=extra.created_by,
        rpm_limit=extra.rpm_limit,
        tpm_limit=extra.tpm_limit,
        concurrency_limit=extra.concurrency_limit,
    )
    await repo.add(row)
    return IssuedKey(row, secret)


class KeyCache:
    """Active keys by hash, kept in memory and refreshed from the database incrementally.

    A background task calls ``refresh`` every ``interval`` seconds so a key revoked by another
    process stops working within that time. A miss waits for a refresh that begins after it
    (joining one, or starting one as soon as ``min_miss_interval`` has passed since the last),
    so a key created a moment ago by any process works at once, while a flood of wrong keys
    costs at most ``1 / min_miss_interval`` queries a second (and each wrong key a short wait).
    If the database is unreachable, known keys keep working and unknown keys fail closed.
    """

    def __init__(
        self,
        repo: KeyRepository,
        *,
        interval: float = 1.0,
        min_miss_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self._by_hash: dict[str, Principal] = {}
        self._hash_by_id: dict[str, str] = {}
        self._since: datetime | None = None
        self._last_refresh = 0.0
        self._interval = interval
        self._min_miss_interval = min_miss_interval
        self._refreshing: asyncio.Task[None] | None = None
        self.healthy = False

    def lookup(self, secret: str) -> Principal | None:
        """The principal for a presented key, from memory only."""
        principal = self._by_hash.get(hash_key(secret))
        if principal is None:
            return None
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            return None
        return principal

    async def lookup_or_refresh(self, secret: str) -> Principal | None:
        """Like ``lookup``, but a miss is looked up again after a refresh that began after it."""
        principal = self.lookup(secret)
        if principal is not None:
            return principal
        await self._refresh_after(self._clock())
        return self.lookup(secret)

    async def _refresh_after(self, missed_at: float) -> None:
        while self._last_refresh < missed_at:
            running = self._refreshing
            if running is not None and not running.done():
                await asyncio.shield(running)  # began before the miss: it may not see the key
                continue
            wait = self._last_refresh + self._min_miss_interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self.refresh()
            return
        running = self._refreshing
        if running is not None and not running.done():
            await asyncio.shield(running)

    async def refresh(self) -> None:
        """Apply every key change since the last refresh (single flight)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._load_changes())
        await asyncio.shield(self._refreshing)

    async def _load_changes(self) -> None:
        self._last_refresh = self._clock()
        try:
            rows = await self._repo.changed_since(self._since)
        except Exception:
            self.healthy = False
            log.warning("key cache refresh failed; serving known keys only", exc_info=True)
            return
        self.healthy = True
        for row in rows:
            self._apply(row)
            if self._since is None or row.updated_at > self._since:
                self._since = row.updated_at

    def _apply(self, row: KeyRow) -> None:
        old_hash = self._hash_by_id.pop(row.id, None)
        if old_hash is not None:
            self._by_hash.pop(old_hash, None)
        if row.status != "active":
            return
        self._hash_by_id[row.id] = row.key_hash
        self._by_hash[row.key_hash] = principal_of(row)

    async def run(self) -> None:
        """Refresh forever, every ``interval`` seconds (cancel to stop)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()
