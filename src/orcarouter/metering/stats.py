"""Live per-model statistics from the gateway's own traffic: latency, throughput, errors, uptime.

Every usage record is observed once (``ModelStats.observe``, O(1), no I/O) and lands in fixed
time slots per served model (``provider/model``), so memory stays bounded whatever the traffic:

- hourly slots over ``window_days`` hold request and error counts, output tokens and generation
  time, and two latency histograms (total and time to first token): exact below 64 ms, then
  bins 5% wide (a percentile is off by at most 2.5%), capped at one hour, so a histogram never
  has more than ``MAX_BINS`` entries;
- minute slots over 24 hours (three arrays of 1,440 numbers) hold requests and upstream
  failures, for uptime;
- at most ``max_models`` models are tracked; the one observed least recently is dropped first.

A slot remembers which minute or hour it holds and is cleared when it is reused, so old data
expires without a timer. How a request counts (see ``classify``):

- *down*: the upstream failed it: a 5xx, a timeout, a refused or reset connection, an error
  event in a 200 stream that is a server error, a stream cut short by the upstream;
- *throttled* (429) and *client errors* (other 4xx): the upstream was up;
- *cancelled* by the client, or never resolved to a model: says nothing, not counted.

Uptime is the share of counted requests that were not down; the error rate is the share that
were down or throttled (a client's bad request is not the model's error). Latency and tokens/s
come from successful requests only: a fast 500 is not a fast model.
"""

from __future__ import annotations

import enum
import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from orcarouter.metering.usage import UsageRecord

UPTIME_HOURS: Final = 24
_MINUTES: Final = UPTIME_HOURS * 60
_EXACT_BELOW_MS: Final = 64  # histogram bins are 1 ms wide below this
_RATIO: Final = 1.05  # then each bin is 5% wider than the last
_LOG_RATIO: Final = math.log(_RATIO)
_LONGEST_MS: Final = 3_600_000  # slower requests count in the last bin
MAX_BINS: Final = _EXACT_BELOW_MS + int(math.log(_LONGEST_MS / _EXACT_BELOW_MS) / _LOG_RATIO) + 1
# Error types that mean the upstream (not the client) failed, whatever the HTTP status: the
# gateway's own transport errors and the vendors' server-side error events.
SERVER_ERROR_TYPES: Final = frozenset(
    {
        "upstream_timeout",
        "upstream_unreachable",
        "upstream_protocol_error",
        "api_error",  # Anthropic: https://docs.claude.com/en/api/errors
        "overloaded_error",
        "timeout_error",
        "server_error",  # OpenAI
        "service_unavailable",
    }
)
_THROTTLE_TYPES: Final = frozenset({"rate_limit_error", "rate_limit_exceeded"})


class Outcome(enum.Enum):
    """How one request counts in the statistics."""

    OK = "ok"
    CLIENT_ERROR = "client_error"
    THROTTLED = "throttled"
    DOWN = "down"
    IGNORED = "ignored"


def classify(record: UsageRecord) -> Outcome:
    """How ``record`` counts: served, refused for the client's fault, throttled, or down."""
    if record.model_served is None or record.outcome == "client_cancelled":
        return Outcome.IGNORED
    status = record.status_code
    if status >= 500 or record.error_type in SERVER_ERROR_TYPES:
        return Outcome.DOWN
    if status == 429 or record.error_type in _THROTTLE_TYPES:
        return Outcome.THROTTLED
    if record.outcome == "incomplete":  # a stream the upstream broke off, for whatever reason
        return Outcome.DOWN
    if status >= 400 or record.outcome != "ok":
        return Outcome.CLIENT_ERROR
    return Outcome.OK


def _bin(ms: int) -> int:
    if ms < _EXACT_BELOW_MS:
        return max(ms, 0)
    return _EXACT_BELOW_MS + int(math.log(min(ms, _LONGEST_MS) / _EXACT_BELOW_MS) / _LOG_RATIO)


def _bin_value(index: int) -> float:
    """The value a bin stands for: its own value when exact, else its geometric middle."""
    if index < _EXACT_BELOW_MS:
        return float(index)
    return _EXACT_BELOW_MS * math.pow(_RATIO, index - _EXACT_BELOW_MS + 0.5)


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of a histogram of binned values."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return _bin_value(index)
    raise AssertionError("unreachable: rank is within the total")


@dataclass(slots=True)
class _HourSlot:
    """What one model did during one hour."""

    hour: int
    requests: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    ttft: dict[int, int] = field(default_factory=dict)
    output_tokens: int = 0
    generation_ms: int = 0


class _ModelWindow:
    """The slots of one model: hourly performance, per-minute availability."""

    __slots__ = ("hours", "minute_down", "minute_of", "minute_requests")

    def __init__(self, hours: int) -> None:
        self.hours: list[_HourSlot | None] = [None] * hours
        self.minute_of = array("q", [-1]) * _MINUTES
        self.minute_requests = array("L", [0]) * _MINUTES
        self.minute_down = array("L", [0]) * _MINUTES

    def hour_slot(self, hour: int) -> _HourSlot:
        index = hour % len(self.hours)
        slot = self.hours[index]
        if slot is None or slot.hour != hour:
            slot = _HourSlot(hour)
            self.hours[index] = slot
        return slot

    def count_minute(self, minute: int, down: bool) -> None:
        index = minute % _MINUTES
        if self.minute_of[index] != minute:
            self.minute_of[index] = minute
            self.minute_requests[index] = 0
            self.minute_down[index] = 0
        self.minute_requests[index] += 1
        self.minute_down[index] += down

    def live_hours(self, now_hour: int) -> Iterator[_HourSlot]:
        oldest = now_hour - len(self.hours)
        for slot in self.hours:
            if slot is not None and oldest < slot.hour <= now_hour:
                yield slot


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Performance over the window; each value is None until there is data for it."""

    requests: int
    p50_ms: int | None
    p95_ms: int | None
    ttft_p50_ms: int | None
    output_tok_per_sec: float | None
    error_rate_percent: float | None
    window_days: int


@dataclass(frozen=True, slots=True)
class UptimeSummary:
    """Availability over the last 24 hours."""

    requests: int
    down: int
    percent: float | None  # None while no request was counted

    @property
    def has_data(self) -> bool:
        """Whether any request was counted."""
        return self.requests > 0


class ModelStats:
    """Rolling statistics per served model, fed with every usage record."""

    def __init__(
        self,
        *,
        window_days: int = 1,
        max_models: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_days < 1 or max_models < 1:
            raise ValueError("window_days and max_models must be at least 1")
        self.window_days = window_days
        self.max_models = max_models
        self._clock = clock
        self._models: OrderedDict[str, _ModelWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def observe(self, record: UsageRecord) -> None:
        """Count one finished request (O(1): a few dict and list updates)."""
        outcome = classify(record)
        model = record.model_served
        if outcome is Outcome.IGNORED or model is None:
            return
        window = self._window(model)
        now = self._clock()
        window.count_minute(int(now // 60), outcome is Outcome.DOWN)
        slot = window.hour_slot(int(now // 3600))
        slot.requests += 1
        if outcome in (Outcome.DOWN, Outcome.THROTTLED):
            slot.errors += 1
        if outcome is not Outcome.OK:
            return
        latency = max(record.latency_ms, 0)
        first = _bin(latency)
        slot.latency[first] = slot.latency.get(first, 0) + 1
        ttft = record.ttft_ms if record.stream and record.ttft_ms is not None else latency
        first = _bin(ttft)
        slot.ttft[first] = slot.ttft.get(first, 0) + 1
        output = record.usage.output_tokens if record.usage is not None else 0
        generating = latency - ttft if latency > ttft else latency
        if output and generating > 0:
            slot.output_tokens += output
            slot.generation_ms += generating

    def latency(self, model: str) -> LatencySummary:
        """p50/p95 latency, time to first token, tokens/s and error rate over the window."""
        window = self._models.get(model)
        slots = [] if window is None else list(window.live_hours(self._hour()))
        latency: dict[int, int] = {}
        ttft: dict[int, int] = {}
        for slot in slots:
            _merge(latency, slot.latency)
            _merge(ttft, slot.ttft)
        requests = sum(slot.requests for slot in slots)
        errors = sum(slot.errors for slot in slots)
        tokens = sum(slot.output_tokens for slot in slots)
        generation_ms = sum(slot.generation_ms for slot in slots)
        return LatencySummary(
            requests=requests,
            p50_ms=_rounded(percentile(latency, 0.50)),
            p95_ms=_rounded(percentile(latency, 0.95)),
            ttft_p50_ms=_rounded(percentile(ttft, 0.50)),
            output_tok_per_sec=(round(tokens * 1000 / generation_ms, 1) if generation_ms else None),
            error_rate_percent=round(100 * errors / requests, 2) if requests else None,
            window_days=self.window_days,
        )

    def uptime(self, model: str) -> UptimeSummary:
        """The share of the last 24 hours' counted requests the upstream did not fail."""
        window = self._models.get(model)
        if window is None:
            return UptimeSummary(0, 0, None)
        now_minute = int(self._clock() // 60)
        requests = down = 0
        for index, minute in enumerate(window.minute_of):
            if now_minute - _MINUTES < minute <= now_minute:
                requests += window.minute_requests[index]
                down += window.minute_down[index]
        percent = round(100 * (requests - down) / requests, 2) if requests else None
        return UptimeSummary(requests, down, percent)

    def _window(self, model: str) -> _ModelWindow:
        window = self._models.get(model)
        if window is None:
            if len(self._models) >= self.max_models:
                self._models.popitem(last=False)
            window = _ModelWindow(self.window_days * 24)
            self._models[model] = window
        else:
            self._models.move_to_end(model)
        return window

    def _hour(self) -> int:
        return int(self._clock() // 3600)


def _merge(into: dict[int, int], histogram: dict[int, int]) -> None:
    for index, count in histogram.items():
        into[index] = into.get(index, 0) + count


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)
