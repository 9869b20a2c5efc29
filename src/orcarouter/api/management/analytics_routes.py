"""``/api/workspaces/{id}/analytics`` and ``/usage.csv``: the workspace's usage (viewers read).

Ranges are ``[start, end)``: ISO dates (midnight UTC) or date-times, by default the 30 days up
to now, at most 366 days. Money is exact: ``spend_usd`` is a decimal string made from integer
micro-dollars (``spend_micros``), never a float.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from orcarouter.accounts.roles import Action
from orcarouter.api.management.context import ApiError, authorize
from orcarouter.metering.pricing import usd
from orcarouter.store.analytics import (
    GroupBy,
    RangeError,
    TimeRange,
    UsageAnalytics,
    UsageGroup,
    parse_instant,
)

router = APIRouter(prefix="/api/workspaces/{workspace_id}", tags=["analytics"])

# Usage is read as keys are: viewers and above (member keys call models only).
READ = Action.READ_KEYS
DEFAULT_WINDOW = timedelta(days=30)

_START = Query(description="inclusive; ISO date or date-time (default: 30 days before end)")
_END = Query(description="exclusive; ISO date or date-time (default: now)")


class UsageGroupOut(BaseModel):
    group: str | None = Field(
        description="the day (YYYY-MM-DD, UTC), served model, key id or router id; "
        "null: none (a failed request, or no router)"
    )
    key_name: str | None = Field(default=None, description="group_by=key: the key's name")
    requests: int
    errors: int = Field(description="requests whose outcome is not ok")
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    spend_usd: str = Field(description="decimal USD of the priced requests")
    spend_micros: int = Field(description="the same in micro-dollars (USD x 1e6)")
    unpriced_requests: int = Field(description="requests to models without a price")
    latency_p50_ms: int | None = Field(description="successful requests, nearest rank")
    latency_p99_ms: int | None
    ttft_p50_ms: int | None = Field(description="successful streams: time to first token")


class AnalyticsOut(BaseModel):
    object: Literal["analytics"] = "analytics"
    workspace_id: str
    group_by: GroupBy
    start: datetime
    end: datetime
    currency: Literal["USD"] = "USD"
    totals: UsageGroupOut
    groups: list[UsageGroupOut]


def _analytics(request: Request) -> UsageAnalytics:
    return cast(UsageAnalytics, request.app.state.analytics)


def _range(start: str | None, end: str | None) -> TimeRange:
    """The checked range, or 400 ``invalid_range`` saying what is wrong."""
    try:
        until = parse_instant(end, "end") if end is not None else datetime.now(UTC)
        since = parse_instant(start, "start") if start is not None else until - DEFAULT_WINDOW
        return TimeRange.of(since, until)
    except RangeError as exc:
        raise ApiError(400, "invalid_range", str(exc)) from None


def group_out(group: UsageGroup) -> UsageGroupOut:
    """One group's public fields."""
    return UsageGroupOut(
        group=group.group,
        key_name=group.key_name,
        requests=group.requests,
        errors=group.errors,
        error_rate=round(group.error_rate, 6),
        prompt_tokens=group.prompt_tokens,
        completion_tokens=group.completion_tokens,
        total_tokens=group.total_tokens,
        cache_read_tokens=group.cache_read_tokens,
        cache_write_tokens=group.cache_write_tokens,
        reasoning_tokens=group.reasoning_tokens,
        spend_usd=usd(group.cost_micros),
        spend_micros=group.cost_micros,
        unpriced_requests=group.unpriced_requests,
        latency_p50_ms=group.latency_ms.get(50),
        latency_p99_ms=group.latency_ms.get(99),
        ttft_p50_ms=group.ttft_ms.get(50),
    )


@router.get("/analytics", summary="Usage, spend, errors and latency by day, model, key or router")
async def get_analytics(
    workspace_id: str,
    request: Request,
    group_by: GroupBy = "day",
    start: Annotated[str | None, _START] = None,
    end: Annotated[str | None, _END] = None,
) -> AnalyticsOut:
    """Viewer and above. Days with no requests are left out."""
    await authorize(request, workspace_id, READ)
    span = _range(start, end)
    report = await _analytics(request).report(workspace_id, group_by, span)
    return AnalyticsOut(
        workspace_id=workspace_id,
        group_by=group_by,
        start=span.start,
        end=span.end,
        totals=group_out(report.totals),
        groups=[group_out(g) for g in report.groups],
    )


CSV_HEADER = (
    "request_id",
    "created_at",
    "key_id",
    "key_name",
    "endpoint",
    "model_requested",
    "model_served",
    "upstream_model",
    "provider_id",
    "router",
    "stream",
    "status_code",
    "outcome",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_micros",
    "latency_ms",
    "ttft_ms",
)
# A cell starting with one of these runs as a formula in spreadsheets (CSV injection), and
# model names and key names come from callers: such cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_row(record: Mapping[str, Any], key_names: Mapping[str, str]) -> list[object]:
    """One record's cells, in ``CSV_HEADER`` order."""
    values = dict(record)
    values["created_at"] = record["created_at"].isoformat().replace("+00:00", "Z")
    values["key_name"] = key_names.get(record["key_id"] or "")
    cost = record["cost_micros"]
    values["cost_usd"] = usd(cost) if cost is not None else None
    return [_cell(values[name]) for name in CSV_HEADER]


async def _csv_lines(
    analytics: UsageAnalytics, workspace_id: str, span: TimeRange, key_names: Mapping[str, str]
) -> AsyncIterator[bytes]:
    """The header, then one chunk per page of records (RFC 4180 line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    async for page in analytics.export(workspace_id, span):
        writer.writerows(csv_row(record, key_names) for record in page)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no records at all: the header alone
        yield buffer.getvalue().encode()


@router.get(
    "/usage.csv",
    summary="Every request in a range, as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one row per request"}},
)
async def export_usage(
    workspace_id: str,
    request: Request,
    start: Annotated[str | None, _START] = None,
    end: Annotated[str | None, _END] = None,
) -> StreamingResponse:
    """Viewer and above. Oldest first; streamed page by page, never held in memory whole."""
    await authorize(request, workspace_id, READ)
    span = _range(start, end)
    analytics = _analytics(request)
    key_names = await analytics.key_names(workspace_id)
    stamp = f"{span.start:%Y%m%dT%H%M%SZ}-{span.end:%Y%m%dT%H%M%SZ}"
    return StreamingResponse(
        _csv_lines(analytics, workspace_id, span, key_names),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="usage-{workspace_id}-{stamp}.csv"',
            "cache-control": "no-store",
        },
    )
