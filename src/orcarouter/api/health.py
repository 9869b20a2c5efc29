"""Liveness and readiness.

``/healthz`` answers 200 while the process serves. ``/readyz`` asks each dependency, all at
once and each for at most ``timeout`` seconds, and answers::

    {"status": "ready" | "degraded" | "unavailable",
     "checks": {"database": "ok" | "unreachable",
                "redis": "ok" | "unreachable" | "not configured",
                "config": "ok",
                "usage_journal": {"pending": 0}}}

- ``ready`` (200): every configured dependency answers.
- ``degraded`` (200): a *degrading* dependency (Redis) is down but the required ones answer.
  The replica still serves, with per-process fallbacks (rate limits, budgets), so a load
  balancer should keep routing to it.
- ``unavailable`` (503): a *required* dependency (the database) is down. The replica still
  serves known keys from its cache and keeps usage for later, but answers 503 to unknown keys
  and management calls, so a load balancer should prefer a replica whose database answers.
  The price: when every replica shares the one database that is down, all of them report 503
  together, and a balancer that drops every unready backend stops traffic the replicas could
  still serve (LiteLLM #34929). Which dependencies are required is the caller's choice: the
  gateway lists the database under ``degrading``, keeping replicas in rotation through its
  outages (they serve known keys and journal usage); ``unavailable`` is for required checks.

Liveness (``/healthz``) never depends on a dependency, so an outage restarts nothing.

``usage_journal.pending`` counts usage records served but not yet committed to the database;
it grows during a database outage and drains after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson

from orcarouter.api.asgi import Receive, Scope, Send, respond

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]
"""An async check: True when the dependency answers."""

OK = "ok"
UNREACHABLE = "unreachable"
NOT_CONFIGURED = "not configured"
_NO_STORE = [(b"cache-control", b"no-store")]


class HealthEndpoints:
    """``/healthz`` and ``/readyz`` over named dependency probes.

    ``required``: name to probe for dependencies the replica cannot do without (a failure makes
    it ``unavailable``, 503); ``degrading``: name to probe for those it can serve without (a
    failure makes it ``degraded``, still 200). A probe of None reports ``not configured`` and
    never fails. ``pending``: how many usage records wait to be committed.
    """

    def __init__(
        self,
        required: Mapping[str, Probe | None],
        *,
        degrading: Mapping[str, Probe | None] | None = None,
        pending: Callable[[], int] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self._required = dict(required)
        self._degrading = dict(degrading or {})
        overlap = self._required.keys() & self._degrading.keys()
        if overlap:
            raise ValueError(f"checks named twice: {sorted(overlap)}")
        self._pending = pending
        self._timeout = timeout

    async def healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Always 200 while the process serves."""
        await respond(send, 200, b'{"status":"ok"}', _NO_STORE)

    async def readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 ``ready`` or ``degraded``, 503 ``unavailable``, with every check's state."""
        status, body = await self.report()
        await respond(send, status, orjson.dumps(body), _NO_STORE)

    async def report(self) -> tuple[int, dict[str, object]]:
        """The HTTP status and body of ``/readyz``."""
        names = [*self._required, *self._degrading]
        probes = [*self._required.values(), *self._degrading.values()]
        states = await asyncio.gather(
            *(self._ask(name, probe) for name, probe in zip(names, probes, strict=True))
        )
        checks: dict[str, object] = dict(zip(names, states, strict=True))
        checks["config"] = OK  # the process would not be serving with an invalid config
        if self._pending is not None:
            checks["usage_journal"] = {"pending": self._pending()}
        if any(checks[name] == UNREACHABLE for name in self._required):
            return 503, {"status": "unavailable", "checks": checks}
        if any(checks[name] == UNREACHABLE for name in self._degrading):
            return 200, {"status": "degraded", "checks": checks}
        return 200, {"status": "ready", "checks": checks}

    async def _ask(self, name: str, probe: Probe | None) -> str:
        if probe is None:
            return NOT_CONFIGURED
        try:
            async with asyncio.timeout(self._timeout):
                answered = await probe()
        except Exception as exc:  # a probe that raises or hangs counts as a failed check
            log.warning("readiness: %s check failed: %s: %s", name, type(exc).__name__, exc)
            return UNREACHABLE
        return OK if answered else UNREACHABLE
