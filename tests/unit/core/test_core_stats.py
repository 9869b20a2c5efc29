"""Live model statistics: percentiles, throughput, uptime classification, expiry, memory bound."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from orcarouter.canonical import Usage
from orcarouter.metering.stats import MAX_BINS, ModelStats, Outcome, classify
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.writer import UsageWriter

if TYPE_CHECKING:
    from tests.unit.core.conftest import Store

MODEL = "openai/gpt-4o-mini"
T0 = 1_800_000_000.0  # a whole hour: 2027-01-15T08:00:00Z


class Clock:
    """A settable clock, in seconds since the epoch."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _record(
    *,
    status: int = 200,
    outcome: str = "ok",
    error_type: str | None = None,
    latency_ms: int = 500,
    ttft_ms: int | None = None,
    output_tokens: int = 0,
    model: str | None = MODEL,
) -> UsageRecord:
    return UsageRecord(
        request_id="req_1",
        created_at=datetime(2027, 1, 15, tzinfo=UTC),
        workspace_id="ws_default",
        key_id=None,
        endpoint="openai.chat",
        stream=ttft_ms is not None,
        model_served=model,
        status_code=status,
        outcome=outcome,
        error_type=error_type,
        usage=Usage(input_tokens=10, output_tokens=output_tokens),
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
    )


@pytest.mark.parametrize(
    ("status", "outcome", "error_type", "expected"),
    [
        (200, "ok", None, Outcome.OK),
        (500, "error", "api_error", Outcome.DOWN),
        (502, "error", "upstream_unreachable", Outcome.DOWN),
        (504, "error", "upstream_timeout", Outcome.DOWN),
        (503, "error", "overloaded_error", Outcome.DOWN),  # Anthropic 529 as seen by OpenAI
        (200, "error", "overloaded_error", Outcome.DOWN),  # error as the first stream event
        (200, "incomplete", "upstream_timeout", Outcome.DOWN),  # idle timeout mid-stream
        (200, "incomplete", "upstream_protocol_error", Outcome.DOWN),
        (429, "error", "rate_limit_error", Outcome.THROTTLED),
        (200, "error", "rate_limit_error", Outcome.THROTTLED),
        (400, "error", "invalid_request_error", Outcome.CLIENT_ERROR),
        (404, "error", "not_found_error", Outcome.CLIENT_ERROR),
        (413, "error", "request_too_large", Outcome.CLIENT_ERROR),
        (499, "client_cancelled", None, Outcome.IGNORED),
    ],
)
def test_classification(
    status: int, outcome: str, error_type: str | None, expected: Outcome
) -> None:
    assert classify(_record(status=status, outcome=outcome, error_type=error_type)) is expected


def test_unresolved_and_cancelled_requests_are_not_counted() -> None:
    stats = ModelStats(clock=Clock())
    stats.observe(_record(model=None, status=404, outcome="error"))
    stats.observe(_record(status=499, outcome="client_cancelled"))
    assert len(stats) == 0
    assert stats.uptime(MODEL).requests == 0
    assert not stats.uptime(MODEL).has_data


def test_exact_percentiles_below_64_ms() -> None:
    stats = ModelStats(clock=Clock())
    for ms in random.Random(1).sample(range(1, 61), 60):
        stats.observe(_record(latency_ms=ms))
    summary = stats.latency(MODEL)
    assert (summary.requests, summary.p50_ms, summary.p95_ms) == (60, 30, 57)  # nearest rank


def test_percentiles_within_bin_precision() -> None:
    stats = ModelStats(clock=Clock())
    values = list(range(100, 10_100, 10))  # 1,000 requests from 100 ms to 10 s
    for ms in values:
        stats.observe(_record(latency_ms=ms))
    summary = stats.latency(MODEL)
    assert summary.p50_ms is not None and summary.p95_ms is not None
    assert summary.p50_ms == pytest.approx(values[499], rel=0.025)
    assert summary.p95_ms == pytest.approx(values[949], rel=0.025)


def test_tokens_per_second_uses_generation_time() -> None:
    stats = ModelStats(clock=Clock())
    stats.observe(_record(latency_ms=1_100, ttft_ms=100, output_tokens=500))  # stream: 1 s
    stats.observe(_record(latency_ms=2_000, output_tokens=100))  # whole answer: 2 s
    summary = stats.latency(MODEL)
    assert summary.output_tok_per_sec == 200.0  # 600 tokens over 3 s
    # the stream's first token and the answer's whole latency, to the histogram's 2.5%
    assert summary.ttft_p50_ms == pytest.approx(100, rel=0.025)


def test_failed_requests_count_in_errors_not_in_latency() -> None:
    stats = ModelStats(clock=Clock())
    for _ in range(3):
        stats.observe(_record(latency_ms=800, output_tokens=10))
    stats.observe(_record(status=500, outcome="error", error_type="api_error", latency_ms=5))
    stats.observe(_record(status=429, outcome="error", error_type="rate_limit_error"))
    stats.observe(_record(status=400, outcome="error", error_type="invalid_request_error"))
    latency, uptime = stats.latency(MODEL), stats.uptime(MODEL)
    assert latency.p50_ms == latency.p95_ms == pytest.approx(800, rel=0.025)
    assert latency.requests == 6
    assert latency.error_rate_percent == 33.33  # the 500 and the 429
    assert (uptime.requests, uptime.down, uptime.percent) == (6, 1, 83.33)  # only the 500


def test_window_expiry_follows_the_clock() -> None:
    clock = Clock()
    stats = ModelStats(clock=clock)
    stats.observe(_record(status=500, outcome="error", error_type="api_error"))
    clock.now += 12 * 3600
    stats.observe(_record(latency_ms=300))
    assert stats.uptime(MODEL).percent == 50.0
    clock.now += 12 * 3600 - 60  # the failure is 23 h 59 min old
    assert stats.uptime(MODEL).percent == 50.0
    clock.now += 60  # now 24 h old: out of the window
    assert stats.uptime(MODEL).percent == 100.0
    assert stats.latency(MODEL).error_rate_percent == 0.0
    clock.now += 13 * 3600
    assert not stats.uptime(MODEL).has_data
    assert stats.latency(MODEL).requests == 0
    assert stats.latency(MODEL).p50_ms is None


def test_slots_are_reused_when_the_clock_wraps_the_ring() -> None:
    clock = Clock()
    stats = ModelStats(clock=clock)
    stats.observe(_record(status=503, outcome="error", error_type="overloaded_error"))
    clock.now += 24 * 3600  # same minute and hour slot, next day
    stats.observe(_record(latency_ms=42))
    assert (stats.uptime(MODEL).requests, stats.uptime(MODEL).percent) == (1, 100.0)
    assert stats.latency(MODEL).p50_ms == 42


def test_memory_stays_bounded() -> None:
    clock = Clock()
    stats = ModelStats(clock=clock, window_days=2, max_models=3)
    rng = random.Random(7)
    for _ in range(20_000):  # ten days of traffic with wildly spread latencies
        clock.now += rng.uniform(0, 86)
        stats.observe(_record(latency_ms=rng.randint(0, 10_000_000), ttft_ms=rng.randint(0, 10)))
    window = stats._models[MODEL]
    assert len(window.hours) == 48
    assert len(window.minute_of) == len(window.minute_requests) == 24 * 60
    for slot in window.hours:
        assert slot is not None
        assert len(slot.latency) <= MAX_BINS and len(slot.ttft) <= MAX_BINS
    assert MAX_BINS < 300


def test_least_recently_observed_model_is_dropped() -> None:
    stats = ModelStats(clock=Clock(), max_models=2)
    stats.observe(_record(model="p/a"))
    stats.observe(_record(model="p/b"))
    stats.observe(_record(model="p/a"))
    stats.observe(_record(model="p/c"))
    assert len(stats) == 2
    assert stats.uptime("p/b").requests == 0
    assert stats.uptime("p/a").requests == 2
    assert stats.uptime("p/c").requests == 1


async def test_writer_shows_every_record_to_its_observers(sqlite_store: Store) -> None:
    stats = ModelStats(clock=Clock())
    seen: list[UsageRecord] = []

    def broken(record: UsageRecord) -> None:
        raise RuntimeError("observer bug")

    writer = UsageWriter(
        sqlite_store.usage, sqlite_store.keys, observers=(broken, seen.append, stats.observe)
    )
    record = _record(latency_ms=120)
    writer.submit(record)  # a failing observer neither raises nor stops the others
    assert seen == [record]
    assert stats.latency(MODEL).p50_ms == pytest.approx(120, rel=0.025)
    assert writer.pending == 1
    await writer.flush()
    assert writer.pending == 0
