"""Usage analytics over hand-made ledger rows, on every backend: sums, percentiles, groups,
ranges, workspace isolation, unpriced requests, the daily spend and the paged export."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from orcarouter.accounts.keys import issue_key
from orcarouter.store.analytics import (
    MAX_SPAN,
    RangeError,
    TimeRange,
    UsageAnalytics,
    UsageGroup,
    parse_instant,
)

if TYPE_CHECKING:
    from tests.unit.core.conftest import Store

WS = "ws_a"
OTHER = "ws_b"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SPAN = TimeRange.of(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
_ids = itertools.count()


def _row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_id": f"req_{next(_ids):06d}",
        "created_at": T0,
        "workspace_id": WS,
        "key_id": "key_1",
        "endpoint": "openai.chat",
        "model_requested": "openai/gpt-4o-mini",
        "model_served": "openai/gpt-4o-mini",
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "provider_id": "openai",
        "stream": False,
        "status_code": 200,
        "outcome": "ok",
        "error_type": None,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "latency_ms": 100,
        "ttft_ms": None,
        "route_reason": None,
        "cost_micros": 1_000,
    }
    row.update(values)
    return row


def _error(**values: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "status_code": 502,
        "outcome": "error",
        "error_type": "upstream_unreachable",
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
        "reasoning_tokens": None,
        "latency_ms": 3,
        "cost_micros": 0,
    }
    return _row(**{**defaults, **values})


def _by_group(groups: list[UsageGroup]) -> dict[str | None, UsageGroup]:
    return {g.group: g for g in groups}


async def test_model_groups_sum_exactly_and_count_errors_and_unpriced(any_store: Store) -> None:
    await any_store.usage.insert_many(
        [
            _row(
                prompt_tokens=100,
                completion_tokens=40,
                total_tokens=140,
                cache_read_tokens=64,
                cache_write_tokens=8,
                reasoning_tokens=16,
                cost_micros=123_456_789_012,  # $123,456.789012: no float would keep it
                latency_ms=400,
            ),
            _row(latency_ms=100, cost_micros=1),
            _row(latency_ms=300, cost_micros=None),  # unpriced
            _row(latency_ms=200),
            _error(),
            _row(model_served="local/llama3.2", provider_id="local", cost_micros=None),
            _error(model_served=None, provider_id=None, cost_micros=None),
        ]
    )
    report = await UsageAnalytics(any_store.engine).report(WS, "model", SPAN)
    groups = _by_group(report.groups)
    assert [g.group for g in report.groups] == [
        "openai/gpt-4o-mini",
        "local/llama3.2",
        None,
    ]
    mini = groups["openai/gpt-4o-mini"]
    assert (mini.requests, mini.errors, mini.error_rate) == (5, 1, 0.2)
    assert (mini.prompt_tokens, mini.completion_tokens, mini.total_tokens) == (130, 55, 185)
    assert (mini.cache_read_tokens, mini.cache_write_tokens, mini.reasoning_tokens) == (64, 8, 16)
    assert (mini.cost_micros, mini.unpriced_requests) == (123_456_789_012 + 1 + 1_000, 1)
    # Latency of the four successful requests only (100, 200, 300, 400): nearest rank.
    assert mini.latency_ms == {50: 200, 99: 400}
    assert mini.ttft_ms == {}
    local = groups["local/llama3.2"]
    assert (local.requests, local.cost_micros, local.unpriced_requests) == (1, 0, 1)
    failed = groups[None]
    assert (failed.requests, failed.errors, failed.error_rate, failed.latency_ms) == (1, 1, 1, {})
    totals = report.totals
    assert totals.requests == 7 and totals.errors == 2
    assert totals.cost_micros == sum(g.cost_micros for g in report.groups)
    assert totals.unpriced_requests == 3
    assert totals.total_tokens == 185 + 15
    assert totals.latency_ms == {50: 200, 99: 400}  # 100, 100, 200, 300, 400: ranks 3, 5


@pytest.mark.parametrize(
    ("count", "p50", "p99"), [(1, 7, 7), (2, 1, 2), (100, 50, 99), (101, 51, 100)]
)
async def test_percentiles_are_exact_nearest_rank(
    any_store: Store, count: int, p50: int, p99: int
) -> None:
    latencies = list(range(1, count + 1)) if count > 1 else [7]
    random.Random(count).shuffle(latencies)
    await any_store.usage.insert_many(
        [
            _row(latency_ms=ms, stream=True, ttft_ms=ms * 10, created_at=T0 + timedelta(seconds=n))
            for n, ms in enumerate(latencies)
        ]
    )
    report = await UsageAnalytics(any_store.engine).report(WS, "model", SPAN)
    (group,) = report.groups
    assert group.latency_ms == {50: p50, 99: p99}
    assert group.ttft_ms == {50: p50 * 10}
    assert report.totals.latency_ms == group.latency_ms


async def test_ttft_counts_successful_streams_only(any_store: Store) -> None:
    await any_store.usage.insert_many(
        [
            _row(stream=True, ttft_ms=50),
            _row(stream=True, ttft_ms=70),
            _row(stream=True, ttft_ms=90),
            _row(stream=False, ttft_ms=1),  # not a stream: ignored
            _row(stream=True, ttft_ms=None),  # no first token: ignored
            _error(stream=True, ttft_ms=2, outcome="incomplete"),  # failed: ignored
        ]
    )
    report = await UsageAnalytics(any_store.engine).report(WS, "model", SPAN)
    assert report.totals.ttft_ms == {50: 70}
    assert report.totals.errors == 1


async def test_days_are_utc_dates_in_order(any_store: Store) -> None:
    midnight = datetime(2026, 3, 11, tzinfo=UTC)
    await any_store.usage.insert_many(
        [
            _row(created_at=midnight - timedelta(microseconds=1)),
            _row(created_at=midnight),
            _row(created_at=midnight + timedelta(hours=23, minutes=59)),
            _row(created_at=datetime(2026, 3, 2, 1, tzinfo=UTC)),
        ]
    )
    report = await UsageAnalytics(any_store.engine).report(WS, "day", SPAN)
    assert [(g.group, g.requests) for g in report.groups] == [
        ("2026-03-02", 1),
        ("2026-03-10", 1),
        ("2026-03-11", 2),
    ]


async def test_the_range_is_half_open_and_one_workspace(any_store: Store) -> None:
    start, end = datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC)
    await any_store.usage.insert_many(
        [
            _row(created_at=start, latency_ms=1),  # in: start is inclusive
            _row(created_at=end - timedelta(microseconds=1), latency_ms=2),  # in
            _row(created_at=end, latency_ms=1000),  # out: end is exclusive
            _row(created_at=start - timedelta(microseconds=1), latency_ms=1000),  # out
            _row(workspace_id=OTHER, latency_ms=1000, cost_micros=999),  # another workspace
            _row(workspace_id=None, latency_ms=1000),
        ]
    )
    analytics = UsageAnalytics(any_store.engine)
    report = await analytics.report(WS, "model", TimeRange.of(start, end))
    assert (report.totals.requests, report.totals.latency_ms) == (2, {50: 1, 99: 2})
    other = await analytics.report(OTHER, "key", TimeRange.of(start, end))
    assert (other.totals.requests, other.totals.cost_micros) == (1, 999)
    nobody = await analytics.report("ws_none", "day", TimeRange.of(start, end))
    assert nobody.groups == []
    assert (nobody.totals.requests, nobody.totals.cost_micros, nobody.totals.latency_ms) == (
        0,
        0,
        {},
    )


async def test_keys_carry_their_names(any_store: Store) -> None:
    await any_store.workspaces.ensure(WS, "A")
    await any_store.workspaces.ensure(OTHER, "B")
    ours = await issue_key(any_store.keys, "ci-bot", workspace_id=WS)
    theirs = await issue_key(any_store.keys, "not yours", workspace_id=OTHER)
    await any_store.usage.insert_many(
        [
            _row(key_id=ours.row.id, cost_micros=5),
            _row(key_id=ours.row.id, cost_micros=5),
            # A record naming another workspace's key still shows no name from there.
            _row(key_id=theirs.row.id, cost_micros=50),
            _row(key_id=None, cost_micros=500),
        ]
    )
    report = await UsageAnalytics(any_store.engine).report(WS, "key", SPAN)
    assert [(g.group, g.key_name, g.requests, g.cost_micros) for g in report.groups] == [
        (theirs.row.id, None, 1, 50),
        (ours.row.id, "ci-bot", 2, 10),
        (None, None, 1, 500),
    ]


async def test_router_groups_come_from_the_recorded_decision(any_store: Store) -> None:
    def decision(router: str) -> str:
        return orjson.dumps(
            {"router": router, "strategy": "cheapest", "chosen": {"model": "m", "score": "1"}}
        ).decode()

    await any_store.usage.insert_many(
        [
            _row(route_reason=decision("orcarouter/auto"), latency_ms=10),
            _row(route_reason=decision("orcarouter/auto"), latency_ms=30),
            _row(route_reason=decision("orcarouter/cheap"), cost_micros=7),
            # Failed attempts without a router, and a direct request: no router.
            _row(route_reason=orjson.dumps({"attempts": [{"model": "x"}]}).decode()),
            _row(route_reason=None),
        ]
    )
    report = await UsageAnalytics(any_store.engine).report(WS, "router", SPAN)
    groups = _by_group(report.groups)
    assert set(groups) == {"orcarouter/auto", "orcarouter/cheap", None}
    assert (groups["orcarouter/auto"].requests, groups["orcarouter/auto"].latency_ms) == (
        2,
        {50: 10, 99: 30},
    )
    assert (groups["orcarouter/cheap"].requests, groups["orcarouter/cheap"].cost_micros) == (1, 7)
    assert groups[None].requests == 2
    assert report.groups[-1].group is None


async def test_unknown_dimension_is_refused(any_store: Store) -> None:
    with pytest.raises(ValueError, match="unknown dimension"):
        await UsageAnalytics(any_store.engine).report(WS, "provider", SPAN)


async def test_daily_spend_per_model(any_store: Store) -> None:
    await any_store.usage.insert_many(
        [
            _row(cost_micros=10),
            _row(cost_micros=20),
            _row(cost_micros=None),
            _row(model_served="openai/gpt-4o", cost_micros=1_000_000),
            _row(created_at=T0 + timedelta(days=1), cost_micros=3),
            _row(workspace_id=OTHER, cost_micros=10_000),
        ]
    )
    spend = await UsageAnalytics(any_store.engine).daily_spend(WS, SPAN)
    assert [(s.day, s.model, s.requests, s.cost_micros) for s in spend] == [
        (date(2026, 3, 10), "openai/gpt-4o", 1, 1_000_000),
        (date(2026, 3, 10), "openai/gpt-4o-mini", 3, 30),
        (date(2026, 3, 11), "openai/gpt-4o-mini", 1, 3),
    ]


async def test_export_pages_every_record_once_in_order(any_store: Store) -> None:
    same = T0 + timedelta(minutes=1)
    rows = [
        _row(created_at=T0 + timedelta(minutes=3), request_id="req_e"),
        _row(created_at=same, request_id="req_c", stream=True, ttft_ms=12),
        _row(created_at=same, request_id="req_b"),  # same instant: ordered by id
        _row(created_at=same, request_id="req_d"),
        _row(created_at=T0, request_id="req_a", route_reason='{"router":"orcarouter/auto"}'),
        _row(created_at=T0, request_id="req_z", workspace_id=OTHER),
    ]
    await any_store.usage.insert_many(rows)
    pages = [page async for page in UsageAnalytics(any_store.engine).export(WS, SPAN, page_size=2)]
    assert [len(p) for p in pages] == [2, 2, 1]
    records = [r for page in pages for r in page]
    assert [r["request_id"] for r in records] == ["req_a", "req_b", "req_c", "req_d", "req_e"]
    first = records[0]
    assert first["created_at"] == T0 and first["created_at"].tzinfo is not None
    assert (first["router"], records[1]["router"]) == ("orcarouter/auto", None)
    assert (records[2]["stream"], records[2]["ttft_ms"]) == (True, 12)
    assert first["cost_micros"] == 1_000


async def test_export_of_an_empty_range_yields_nothing(any_store: Store) -> None:
    pages = [page async for page in UsageAnalytics(any_store.engine).export(WS, SPAN)]
    assert pages == []


def test_ranges_are_checked() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(RangeError, match="before"):
        TimeRange.of(start, start)
    with pytest.raises(RangeError, match="366 days"):
        TimeRange.of(start, start + MAX_SPAN + timedelta(seconds=1))
    assert TimeRange.of(start, start + MAX_SPAN).end == start + MAX_SPAN
    naive = TimeRange.of(datetime(2026, 1, 1), datetime(2026, 1, 2))
    assert naive.start == start
    span = TimeRange.of(datetime(2026, 1, 30, 12, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
    assert span.days() == [date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:30:00Z", datetime(2026, 1, 31, 12, 30, tzinfo=UTC)),
        ("2026-01-31T12:30:00+02:00", datetime(2026, 1, 31, 10, 30, tzinfo=UTC)),
        ("2026-01-31T12:30:00", datetime(2026, 1, 31, 12, 30, tzinfo=UTC)),
    ],
)
def test_instants_parse_as_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text, "start") == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "2026-01-31T25:00Z", "1700000000"])
def test_bad_instants_name_the_parameter(text: str) -> None:
    with pytest.raises(RangeError, match="'end' must be an ISO 8601"):
        parse_instant(text, "end")
