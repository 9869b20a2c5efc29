"""Cache invalidation across replicas: a management write anywhere reloads every replica now.

Each replica polls its caches (keys, routers, credentials, wallet balances) about once a
second anyway; with a shared store, a successful write through the management API also
publishes ``changed`` on the event channel, and every replica (the writer included) reloads
at once. Reloads are cheap (keys load incrementally; tables reload only when their stored
version moved), so one topic serves every kind of change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from orcarouter.api.asgi import Message, Receive, Scope, Send
from orcarouter.state.redis import SharedStore

log = logging.getLogger(__name__)

TOPIC = "changed"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Reload = Callable[[], Awaitable[None]]


class Invalidation:
    """Publishes changes and reloads the caches when any replica publishes one."""

    def __init__(self, store: SharedStore, reloads: Sequence[Reload]) -> None:
        self._store = store
        self._reloads = tuple(reloads)
        store.subscribe(TOPIC, self._reload)

    async def changed(self) -> None:
        """Tell every replica that stored data changed (best effort: polling still covers)."""
        if not await self._store.publish(TOPIC):
            log.warning("could not announce a change; other replicas see it within a second")

    async def _reload(self, _payload: str) -> None:
        results = await asyncio.gather(
            *(reload() for reload in self._reloads), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("reload after a change failed: %s", result)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` (the management API) announcing each successful write when it is answered."""

        async def announcing(scope: Scope, receive: Receive, send: Send) -> None:
            if scope.get("type") != "http" or scope.get("method") not in _WRITES:
                await app(scope, receive, send)
                return
            held: list[Message] = []

            async def hold_until_announced(message: Message) -> None:
                # The answer is held back until the change is announced, so a client that got
                # it can rely on every replica having been told.
                held.append(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    status = int(held[0].get("status", 0))
                    if 200 <= status < 300:
                        await self.changed()
                    for part in held:
                        await send(part)
                    held.clear()

            await app(scope, receive, hold_until_announced)
            for part in held:  # an app that ended without a final body part
                await send(part)

        return announcing
