"""Target health shared by replicas: an ejection or cool-down seen by one applies to all.

Each replica keeps its own ``HealthBook`` (decisions stay in memory, O(1) per request) and
publishes every ejection, cool-down and readmission on the shared store's event channel;
the others apply it. Messages carry the sender's id so a replica skips its own. If Redis is
down, each replica goes on judging targets by its own traffic.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import orjson

from orcarouter.routing.health import HealthBook, HealthEvent
from orcarouter.state.redis import SharedStore

log = logging.getLogger(__name__)

TOPIC = "health"


class HealthSync:
    """Connects one replica's ``HealthBook`` to the others through the event channel."""

    def __init__(self, book: HealthBook, store: SharedStore, replica: str | None = None) -> None:
        self._book = book
        self._store = store
        self.replica = replica or secrets.token_hex(6)
        self._sending: set[asyncio.Task[bool]] = set()
        book.listener = self._publish
        store.subscribe(TOPIC, self._receive)

    def _publish(self, event: HealthEvent) -> None:
        payload = orjson.dumps(
            {"r": self.replica, "m": event.model_id, "k": event.kind, "s": event.seconds}
        ).decode()
        task = asyncio.get_running_loop().create_task(self._store.publish(TOPIC, payload))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _receive(self, payload: str) -> None:
        if not payload:  # a resync after reconnecting: nothing to catch up on
            return
        try:
            message = orjson.loads(payload)
            if message["r"] == self.replica:
                return
            event = HealthEvent(str(message["m"]), str(message["k"]), float(message["s"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed health message")
            return
        self._book.apply(event)

    async def drain(self) -> None:
        """Wait for messages still being published (shutdown, tests)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
