"""Which (provider, model) targets are live: passive outlier detection, 429 cool-down, retry budget.

A target is ejected after ``consecutive_failures`` server errors, timeouts or connection errors
in a row, for a back-off that doubles with each ejection in a row (``base_ejection`` up to
``max_ejection``); once the back-off has passed it is tried again, and one more failure ejects
it again while one success clears its record. Never more than ``max_ejected_share`` of the
targets are ejected at once, so a fault on the gateway's own side cannot empty the pool.
A 429 is not ill health: the target cools down for its ``Retry-After`` (or a default) and its
failure count is untouched. Everything is in memory, per process, O(1) per request; with a
shared store, ``listener`` hears each ejection, cool-down and readmission so that other replicas
can ``apply`` it (``state/shared_health.py``).
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orcarouter.metering.stats import Outcome
from orcarouter.settings import HealthConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A change other replicas should know: ``kind`` is eject, cool or readmit."""

    model_id: str
    kind: str
    seconds: float = 0.0


EJECT, COOL, READMIT = "eject", "cool", "readmit"


@dataclass(slots=True)
class _Target:
    failures: int = 0  # consecutive
    ejections: int = 0  # consecutive ejections, for the back-off
    ejected_until: float = 0.0
    cooldown_until: float = 0.0
    last_error: str | None = None
    total_failures: int = 0
    total_ejections: int = 0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        reference = now if now is not None else time.time()
        seconds = when.timestamp() - reference
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


class HealthBook:
    """Health state per target, keyed by the gateway model id (``provider/model``)."""

    def __init__(
        self,
        config: HealthConfig | None = None,
        *,
        targets: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or HealthConfig()
        self._targets = max(targets, 1)
        self._clock = clock
        self._book: dict[str, _Target] = {}
        self._down_until = 0.0  # no target is ejected or cooling down after this (a bound)
        self.listener: Callable[[HealthEvent], None] | None = None

    def is_live(self, model_id: str) -> bool:
        """True unless the target is ejected or cooling down after a 429."""
        entry = self._book.get(model_id)
        if entry is None:
            return True
        now = self._clock()
        return entry.ejected_until <= now and entry.cooldown_until <= now

    def all_live(self) -> bool:
        """True when no target can be ejected or cooling down now: a router over a whole
        catalog then skips asking about each of its hundreds of candidates."""
        return self._down_until <= self._clock()

    def observe(self, model_id: str, outcome: Outcome, retry_after: str | None = None) -> None:
        """Update the target with the outcome of one attempt (see ``metering.stats.classify``)."""
        if outcome is Outcome.OK:
            self.success(model_id)
        elif outcome is Outcome.DOWN:
            self.failure(model_id, "server error")
        elif outcome is Outcome.THROTTLED:
            self.throttled(model_id, retry_after)

    def success(self, model_id: str) -> None:
        """A served request clears the target's record."""
        entry = self._book.get(model_id)
        if entry is not None and (entry.failures or entry.ejections):
            entry.failures = entry.ejections = 0

    def failure(self, model_id: str, reason: str) -> None:
        """One more server error, timeout or connection error; eject at the threshold."""
        entry = self._book.setdefault(model_id, _Target())
        now = self._clock()
        entry.failures += 1
        entry.total_failures += 1
        entry.last_error = reason
        if entry.ejected_until > now:
            return  # already out (an attempt that started before the ejection)
        # After an ejection has run out, one failure is enough to eject again.
        threshold = 1 if entry.ejections else self.config.consecutive_failures
        if entry.failures < threshold:
            return
        if self._ejected(now) + 1 > self.config.max_ejected_share * self._targets:
            log.warning("not ejecting %s: too many targets are ejected already", model_id)
            return
        backoff = min(self.config.base_ejection * (2**entry.ejections), self.config.max_ejection)
        entry.ejections += 1
        entry.total_ejections += 1
        entry.ejected_until = now + backoff
        self._down_until = max(self._down_until, entry.ejected_until)
        log.warning("ejected %s for %.1f s after %s", model_id, backoff, reason)
        self._tell(HealthEvent(model_id, EJECT, backoff))

    def throttled(self, model_id: str, retry_after: str | None) -> None:
        """A 429: cool down for ``Retry-After`` (capped), without counting a failure."""
        entry = self._book.setdefault(model_id, _Target())
        seconds = retry_after_seconds(retry_after)
        if seconds is None:
            seconds = self.config.default_cooldown
        until = self._clock() + min(seconds, self.config.max_cooldown)
        if until > entry.cooldown_until:
            entry.cooldown_until = until
            self._down_until = max(self._down_until, until)
            self._tell(HealthEvent(model_id, COOL, min(seconds, self.config.max_cooldown)))

    def readmit(self, model_id: str) -> None:
        """An active probe succeeded: the target serves again at once."""
        entry = self._book.get(model_id)
        if entry is not None:
            entry.ejected_until = 0.0
            entry.failures = 0
        self._tell(HealthEvent(model_id, READMIT))

    def apply(self, event: HealthEvent) -> None:
        """Another replica's ejection, cool-down or readmission (not told on again)."""
        now = self._clock()
        entry = self._book.setdefault(event.model_id, _Target())
        if event.kind == READMIT:
            entry.ejected_until = 0.0
            entry.failures = 0
        elif event.kind == COOL:
            seconds = min(max(event.seconds, 0.0), self.config.max_cooldown)
            entry.cooldown_until = max(entry.cooldown_until, now + seconds)
            self._down_until = max(self._down_until, entry.cooldown_until)
        elif event.kind == EJECT and entry.ejected_until <= now:
            if self._ejected(now) + 1 > self.config.max_ejected_share * self._targets:
                return  # the same guard as for local ejections: never empty the pool
            entry.ejected_until = now + min(max(event.seconds, 0.0), self.config.max_ejection)
            self._down_until = max(self._down_until, entry.ejected_until)
            entry.last_error = "ejected by another replica"

    def _tell(self, event: HealthEvent) -> None:
        if self.listener is not None:
            try:
                self.listener(event)
            except Exception:  # sharing is best effort; local health stays right
                log.warning("health listener failed", exc_info=True)

    def ejected(self) -> list[str]:
        """Targets ejected right now (for the prober)."""
        now = self._clock()
        return [model for model, entry in self._book.items() if entry.ejected_until > now]

    def state(self, model_id: str) -> dict[str, Any]:
        """The target's health as JSON-ready data (for model cards and the management API)."""
        entry = self._book.get(model_id) or _Target()
        now = self._clock()
        wall = time.time()
        status = "healthy"
        if entry.ejected_until > now:
            status = "ejected"
        elif entry.cooldown_until > now:
            status = "cooling_down"
        return {
            "model": model_id,
            "status": status,
            "consecutive_failures": entry.failures,
            "ejected_until": _wall_time(entry.ejected_until, now, wall),
            "cooldown_until": _wall_time(entry.cooldown_until, now, wall),
            "last_error": entry.last_error,
            "total_failures": entry.total_failures,
            "total_ejections": entry.total_ejections,
        }

    def snapshot(self) -> list[dict[str, Any]]:
        """Every target with a health record, worst first."""
        order = {"ejected": 0, "cooling_down": 1, "healthy": 2}
        states = [self.state(model) for model in self._book]
        return sorted(states, key=lambda s: (order[s["status"]], s["model"]))

    def _ejected(self, now: float) -> int:
        return sum(1 for entry in self._book.values() if entry.ejected_until > now)


def _wall_time(deadline: float, now: float, wall: float) -> str | None:
    if deadline <= now:
        return None
    return datetime.fromtimestamp(wall + deadline - now, UTC).isoformat()


class RetryBudget:
    """Caps retries in progress at ``ratio`` of the requests in flight (never below ``floor``).

    A request enters when it starts and leaves when it ends; a second or later attempt needs a
    ticket, held until the request leaves. Under a flood of failures most requests then fail
    fast instead of multiplying the load on upstreams that are already struggling.
    """

    def __init__(self, ratio: float = 0.2, floor: int = 3) -> None:
        self.ratio = ratio
        self.floor = floor
        self.in_flight = 0
        self.retrying = 0

    def enter(self) -> None:
        """A request started."""
        self.in_flight += 1

    def leave(self, held: bool) -> None:
        """A request ended; ``held`` says whether it held a retry ticket."""
        self.in_flight -= 1
        if held:
            self.retrying -= 1

    def try_acquire(self) -> bool:
        """Take a retry ticket if the budget allows one now."""
        if self.retrying >= max(self.floor, self.ratio * self.in_flight):
            return False
        self.retrying += 1
        return True
