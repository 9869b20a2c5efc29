"""A response cache over the shared store: the hook for caching identical requests later.

Not on the request path yet. ``fingerprint`` names a request by its workspace, its model and
its body with keys sorted, so two clients sending the same request in a different key order
share an entry, and workspaces never see each other's. Values are the response bytes as the
client would receive them, with a time to live. A cache miss, a Redis outage or a value too
large are all just misses: a cache must never fail a request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from orcarouter.state.redis import SharedStore, SharedStoreUnavailable


class ResponseCache(Protocol):
    """Where responses to repeatable requests may be kept."""

    async def get(self, fingerprint: str) -> bytes | None: ...
    async def put(self, fingerprint: str, body: bytes, ttl: float) -> bool: ...


def fingerprint(workspace_id: str, model: str, payload: Mapping[str, Any]) -> str:
    """A stable name for a request: same workspace, model and body (any key order)."""
    digest = hashlib.sha256()
    digest.update(workspace_id.encode())
    digest.update(b"\0")
    digest.update(model.encode())
    digest.update(b"\0")
    digest.update(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


class RedisResponseCache:
    """Responses in Redis under ``{prefix}cache:{fingerprint}``, each with its own expiry."""

    def __init__(self, store: SharedStore, *, max_bytes: int = 1 << 20) -> None:
        self._store = store
        self._max_bytes = max_bytes

    async def get(self, fingerprint: str) -> bytes | None:
        """The cached body, or None (absent, expired, or Redis unavailable)."""
        key = self._store.key("cache", fingerprint)
        try:
            value = await self._store.call("cache get", lambda client: client.get(key))
        except SharedStoreUnavailable:
            return None
        return bytes(value) if value is not None else None

    async def put(self, fingerprint: str, body: bytes, ttl: float) -> bool:
        """Keep ``body`` for ``ttl`` seconds; False when it is not kept."""
        if len(body) > self._max_bytes or ttl <= 0:
            return False
        key = self._store.key("cache", fingerprint)
        milliseconds = max(int(ttl * 1000), 1)
        try:
            await self._store.call(
                "cache put", lambda client: client.set(key, body, px=milliseconds)
            )
        except SharedStoreUnavailable:
            return False
        return True
