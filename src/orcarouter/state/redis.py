"""The connection to Redis, which replicas share: scripts, pub/sub and a circuit breaker.

Parts that keep cross-replica state (rate limits, budgets, health, cache invalidation) call
Redis through ``SharedStore``. A failed call opens the circuit for ``retry_interval`` seconds:
meanwhile ``available`` is False and every part decides on its per-process fallback at once,
with no request waiting on a dead connection. The first call after the interval tries Redis
again; a success closes the circuit. Each transition is logged once and shown as the
``orcarouter_dependency_up{dependency="redis"}`` gauge.

Messages between replicas go over one pub/sub channel, ``{prefix}events``: each is
``topic`` or ``topic:payload``, and handlers are registered by topic. The listener reconnects
by itself; after a reconnect every handler runs once with an empty payload (``resync``), since
messages published while it was away are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.retry import Retry

from orcarouter.observability.metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None] | None]


class SharedStoreUnavailable(Exception):
    """Redis did not answer (or the circuit is open); the caller uses its fallback."""


class SharedStore:
    """A pooled Redis client with a circuit breaker, scripts and one event channel."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "orca:",
        retry_interval: float = 1.0,
        timeout: float = 0.5,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the circuit breaker decides when to try again
            decode_responses=False,
        )
        self.prefix = prefix
        self.channel = f"{prefix}events"
        self._retry_interval = retry_interval
        self._metrics = metrics
        self._clock = clock
        self._open_until = 0.0
        self._down = False
        self._handlers: dict[str, list[Handler]] = {}

    def key(self, *parts: str) -> str:
        """A Redis key under the configured prefix."""
        return self.prefix + ":".join(parts)

    @property
    def available(self) -> bool:
        """False while the circuit is open (a recent call failed)."""
        return not self._down or self._clock() >= self._open_until

    def failed(self, what: str, exc: BaseException | None = None) -> None:
        """A call failed: open the circuit (callers use their fallbacks for a while)."""
        self._open_until = self._clock() + self._retry_interval
        if not self._down:
            self._down = True
            log.error("redis unreachable (%s): %s; using per-process fallbacks", what, exc)
            if self._metrics is not None:
                self._metrics.up("redis", False)

    def succeeded(self) -> None:
        """A call succeeded: close the circuit."""
        if self._down:
            self._down = False
            log.warning("redis reachable again; shared state resumes")
            if self._metrics is not None:
                self._metrics.up("redis", True)

    def script(self, source: str) -> AsyncScript:
        """A Lua script, loaded by hash on first use (and again after a Redis restart)."""
        return self.client.register_script(source)

    async def run_script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], what: str
    ) -> Any:
        """Run a script through the circuit breaker; ``SharedStoreUnavailable`` if it fails."""
        if not self.available:
            raise SharedStoreUnavailable(what)
        try:
            result = await script(keys=list(keys), args=list(args))
        except Exception as exc:  # connection refused, timeout, a restarted server: all alike
            self.failed(what, exc)
            raise SharedStoreUnavailable(what) from exc
        self.succeeded()
        return result

    async def call(self, what: str, command: Callable[[Redis], Awaitable[Any]]) -> Any:
        """Run one client command through the circuit breaker."""
        if not self.available:
            raise SharedStoreUnavailable(what)
        try:
            result = await command(self.client)
        except Exception as exc:
            self.failed(what, exc)
            raise SharedStoreUnavailable(what) from exc
        self.succeeded()
        return result

    async def ping(self) -> bool:
        """Whether Redis answers now (used at startup and by ``/readyz``)."""
        try:
            await self.call("ping", lambda client: client.ping())
        except SharedStoreUnavailable:
            return False
        return True

    async def publish(self, topic: str, payload: str = "") -> bool:
        """Tell every replica (this one included) about a change; False if Redis is down."""
        message = f"{topic}:{payload}" if payload else topic
        try:
            await self.call("publish", lambda client: client.publish(self.channel, message))
        except SharedStoreUnavailable:
            return False
        return True

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Run ``handler(payload)`` for each message on ``topic`` (and with "" on resync)."""
        self._handlers.setdefault(topic, []).append(handler)

    async def listen(self, *, reconnect_delay: float = 0.5) -> None:
        """Deliver messages to handlers until cancelled, reconnecting after any failure."""
        first = True
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if not first:
                    await self._resync()
                first = False
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        await self._deliver(bytes(message["data"]).decode("utf-8", "replace"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Only the subscription is lost (an idle connection dropped, say): commands may
                # still work, so the circuit is left to them; events resume on reconnect.
                log.warning("redis events: %s; reconnecting", exc)
                first = False
                await asyncio.sleep(reconnect_delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _deliver(self, message: str) -> None:
        topic, _, payload = message.partition(":")
        for handler in self._handlers.get(topic, ()):
            await _run(handler, payload, topic)

    async def _resync(self) -> None:
        for topic, handlers in self._handlers.items():
            for handler in handlers:
                await _run(handler, "", topic)

    async def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(Exception):
            await self.client.aclose()


async def _run(handler: Handler, payload: str, topic: str) -> None:
    try:
        result = handler(payload)
        if result is not None:
            await result
    except Exception:  # one broken handler must not stop the others or the listener
        log.warning("handler for %r failed", topic, exc_info=True)
