"""Prometheus metrics, served at ``GET /metrics``; one registry per gateway (no global state).

Degraded decisions (a rate limit, a budget or a usage record handled without the shared store
or the database) are counted here, each with a log line: the first of each kind at once, then
at most one line a second with how many more there were, so an outage cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("orcarouter.degraded")

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The gateway's counters and gauges."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self.degraded_decisions = Counter(
            "orcarouter_degraded_decisions",
            "Decisions taken without a shared dependency (Redis or the database).",
            ("component", "reason"),
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "orcarouter_dependency_up",
            "Whether a dependency answered on its last use (1) or not (0).",
            ("dependency",),
            registry=self.registry,
        )
        self.usage_spooled = Gauge(
            "orcarouter_usage_records_pending",
            "Usage records journaled locally and not yet committed to the database.",
            registry=self.registry,
        )
        self._last_line: dict[tuple[str, str], float] = {}
        self._unlogged: dict[tuple[str, str], int] = {}

    def degraded(self, component: str, reason: str) -> None:
        """Count one degraded decision and log it (at most a line a second per kind)."""
        self.degraded_decisions.labels(component, reason).inc()
        kind = (component, reason)
        now = self._clock()
        last = self._last_line.get(kind)
        if last is not None and now - last < 1.0:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return
        self._last_line[kind] = now
        more = self._unlogged.pop(kind, 0)
        suffix = f" (and {more} more since the last line)" if more else ""
        log.warning("degraded %s decision: %s%s", component, reason, suffix)

    def up(self, dependency: str, value: bool) -> None:
        """Record whether a dependency answered."""
        self.dependency_up.labels(dependency).set(1 if value else 0)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
