"""A client that walks away is billed for what the upstream consumed."""

from __future__ import annotations

from orcarouter.api.inference import cancelled_usage
from orcarouter.canonical import Usage
from orcarouter.metering.usage import UsageRecord
from orcarouter.routing.needs import needs_of
from orcarouter.store.ids import utcnow

PAYLOAD = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
NEEDS = needs_of(PAYLOAD, 460)


def _record(usage: Usage | None, produced: int, served: str | None = "p/m") -> UsageRecord:
    record = UsageRecord("req_1", utcnow(), "ws", "k", "openai.chat", True)
    record.model_served, record.usage, record.produced = served, usage, produced
    return record


def test_nothing_reported_yet_bills_the_estimated_prompt_and_the_deltas_seen() -> None:
    usage = cancelled_usage(_record(None, 7), NEEDS)
    assert usage is not None and usage.output_tokens == 7
    assert usage.input_tokens >= 100  # 400 characters of prompt


def test_reported_usage_is_kept_and_output_raised_to_what_passed() -> None:
    reported = Usage(input_tokens=120, output_tokens=1, cache_read_tokens=30)
    usage = cancelled_usage(_record(reported, 42), NEEDS)
    assert usage == Usage(input_tokens=120, output_tokens=42, cache_read_tokens=30)
    final = Usage(input_tokens=120, output_tokens=80)
    assert cancelled_usage(_record(final, 42), NEEDS) == final


def test_a_request_that_reached_no_upstream_costs_nothing() -> None:
    assert cancelled_usage(_record(None, 0, served=None), NEEDS) is None
