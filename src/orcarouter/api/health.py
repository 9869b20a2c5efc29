"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from orcarouter.api.asgi import Receive, Scope, Send, respond


class HealthEndpoints:
    """``/healthz``: the process answers. ``/readyz``: the database answers and config loaded."""

    def __init__(self, database_ready: Callable[[], Awaitable[bool]]) -> None:
        self._database_ready = database_ready

    async def healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Always 200 while the process serves."""
        await respond(send, 200, b'{"status":"ok"}', [])

    async def readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 when the database answers, else 503 with what failed."""
        database = await self._database_ready()
        body = orjson.dumps(
            {
                "status": "ready" if database else "unavailable",
                "checks": {"database": "ok" if database else "unreachable", "config": "ok"},
            }
        )
        await respond(send, 200 if database else 503, body, [])
