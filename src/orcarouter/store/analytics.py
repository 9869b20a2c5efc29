"""Usage analytics over the ledger (``usage_records``): one workspace, a range ``[start, end)``.

Everything is computed in the database, on SQLite and PostgreSQL alike, and only small results
come back: one row per group for the sums, and for the percentiles only the rows at the wanted
ranks.

- **Groups.** ``day`` is the UTC calendar date, ``model`` the served model, ``key`` the API key
  (its name read from ``api_keys``), ``router`` the router that chose the model: the
  ``"router"`` member of ``route_reason`` (``routing.RouteDecision.reason``), extracted with the
  backend's JSON function (SQLite ``json_extract``, PostgreSQL ``->>``). The gateway alone
  writes that column, always as JSON from ``orjson``; a request no router decided (a direct
  model, or a fallback list alone) falls in the ``None`` group. Extracting in SQL lets the
  router dimension share the one grouped query with the others, instead of fetching and parsing
  every row's decision in Python.
- **Percentiles** are exact and nearest-rank (PostgreSQL's ``percentile_disc``): the p-th
  percentile of ``n`` sorted values is the one at rank ``ceil(p * n / 100)``, in integers.
  ``row_number()`` and ``count()`` over a window per group find those rows, so the database
  sorts and only two rows per group travel. Latency counts successful requests only (a 400
  answered in a millisecond says nothing about the models); TTFT, successful streams only.
- **Spend** is the sum of ``cost_micros`` (USD x 1e6, exact integers); requests of a model
  without a price (``cost_micros`` None) add nothing and are counted as ``unpriced_requests``.
- **Export** reads raw rows in pages by keyset (``created_at``, ``request_id``), each page on a
  short-lived connection: memory stays at one page, and a slow reader holds no connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    and_,
    case,
    cast,
    func,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orcarouter.store.repositories import as_utc
from orcarouter.store.schema import api_keys, usage_records

GroupBy = Literal["day", "model", "key", "router"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)
PERCENTILES = (50, 99)  # latency; TTFT uses the first
MAX_SPAN = timedelta(days=366)
EXPORT_PAGE = 1000

_u = usage_records.c


class RangeError(ValueError):
    """A time range that cannot be queried; the message says why."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: datetime, end: datetime, max_span: timedelta = MAX_SPAN) -> TimeRange:
        """A checked range: times in UTC (naive ones taken as UTC), start before end, at most
        ``max_span`` long."""
        start, end = _utc(start), _utc(end)
        if start >= end:
            raise RangeError("'start' must be before 'end'")
        if end - start > max_span:
            raise RangeError(f"the range may span at most {max_span.days} days")
        return cls(start, end)

    def days(self) -> list[date]:
        """Every UTC date the range touches, in order."""
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_instant(text: str, name: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date-time (``Z`` or an offset; naive means UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise RangeError(
            f"'{name}' must be an ISO 8601 date (2026-01-31) or date-time (2026-01-31T12:00:00Z)"
        ) from None


def start_of_day(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(), UTC)


@dataclass(slots=True)
class UsageGroup:
    """The requests of one group (or of the whole range)."""

    group: str | None
    requests: int = 0
    errors: int = 0  # outcome other than "ok": errors, incomplete and cancelled streams
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0  # priced requests only
    unpriced_requests: int = 0
    latency_ms: dict[int, int] = field(default_factory=dict)  # percentile -> ms
    ttft_ms: dict[int, int] = field(default_factory=dict)
    key_name: str | None = None  # group_by=key: the key's current name

    @property
    def error_rate(self) -> float:
        """Errors per request (0 for none)."""
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One workspace's usage over a range, by one dimension, with totals."""

    workspace_id: str
    group_by: str
    range: TimeRange
    groups: list[UsageGroup]
    totals: UsageGroup


@dataclass(frozen=True, slots=True)
class DaySpend:
    """What one served model cost on one UTC day."""

    day: date
    model: str | None
    requests: int
    cost_micros: int


EXPORT_COLUMNS = (
    "request_id",
    "created_at",
    "key_id",
    "endpoint",
    "model_requested",
    "model_served",
    "upstream_model",
    "provider_id",
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
    "cost_micros",
    "latency_ms",
    "ttft_ms",
)

_SUMMED = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
)


class UsageAnalytics:
    """Read-only queries over the ledger; every one is scoped to one workspace."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    # --- group expressions, per backend ---------------------------------------------------

    def _day(self) -> ColumnElement[Any]:
        if self._postgres:  # timestamptz -> the UTC date, whatever the session's time zone
            return cast(func.timezone("UTC", _u.created_at), Date)
        return func.date(_u.created_at)  # SQLite stores UTC text: 'YYYY-MM-DD HH:MM:SS…'

    def router_expression(self) -> ColumnElement[Any]:
        """The router id (``orcarouter/{name}``) recorded in ``route_reason``, else NULL."""
        if self._postgres:
            router: ColumnElement[Any] = cast(_u.route_reason, JSONB)["router"].astext
            return router
        reason = _u.route_reason
        return case((func.json_valid(reason) == 1, func.json_extract(reason, "$.router")))

    def _dimension(self, group_by: str) -> ColumnElement[Any]:
        if group_by == "day":
            return self._day()
        if group_by == "model":
            return _u.model_served
        if group_by == "key":
            return _u.key_id
        if group_by == "router":
            return self.router_expression()
        raise ValueError(f"unknown dimension {group_by!r}; use one of {', '.join(GROUP_BY)}")

    # --- the report -----------------------------------------------------------------------

    async def report(self, workspace_id: str, group_by: str, span: TimeRange) -> UsageReport:
        """Sums, error rate, spend and percentiles per group, and for the whole range."""
        dimension = self._dimension(group_by)
        where = _scope(workspace_id, span)
        async with self._engine.connect() as conn:
            groups = await self._groups(conn, dimension, where)
            totals = await self._groups(conn, None, where)
            names: dict[str, str] = {}
            if group_by == "key":
                query = select(api_keys.c.id, api_keys.c.name).where(
                    api_keys.c.workspace_id == workspace_id
                )
                names = {row.id: row.name for row in await conn.execute(query)}
        for group in groups.values():
            group.key_name = names.get(group.group or "")
        total = totals.get(None) or UsageGroup(None)
        return UsageReport(workspace_id, group_by, span, _ordered(groups, group_by), total)

    async def _groups(
        self,
        conn: AsyncConnection,
        dimension: ColumnElement[Any] | None,
        where: list[ColumnElement[bool]],
    ) -> dict[str | None, UsageGroup]:
        groups: dict[str | None, UsageGroup] = {}
        for row in await conn.execute(_sums(dimension, where)):
            group = UsageGroup(_text(row.g), requests=int(row.requests), errors=int(row.errors))
            for name in _SUMMED:
                setattr(group, name, int(getattr(row, name)))
            group.unpriced_requests = int(row.unpriced)
            groups[group.group] = group
        ok = _u.outcome == "ok"
        streamed = [*where, ok, _u.stream.is_(true()), _u.ttft_ms.is_not(None)]
        wanted = (
            ("latency_ms", _u.latency_ms, [*where, ok], PERCENTILES),
            ("ttft_ms", _u.ttft_ms, streamed, PERCENTILES[:1]),
        )
        for slot, value, conditions, percentiles in wanted:
            for row in await conn.execute(_ranks(dimension, value, conditions, percentiles)):
                found = groups.get(_text(row.g))
                if found is None:
                    continue
                for p in percentiles:
                    if row.rn == _rank(p, row.n):
                        getattr(found, slot)[p] = int(row.v)
        return groups

    # --- legacy billing: spend per day and model ------------------------------------------

    async def daily_spend(self, workspace_id: str, span: TimeRange) -> list[DaySpend]:
        """Requests and spend per UTC day and served model, in day order."""
        inner = (
            select(
                self._day().label("day"),
                _u.model_served.label("model"),
                _u.cost_micros.label("cost"),
            )
            .where(*_scope(workspace_id, span))
            .subquery()
        )
        query = (
            select(
                inner.c.day,
                inner.c.model,
                func.count().label("requests"),
                func.coalesce(func.sum(inner.c.cost), 0).label("cost"),
            )
            .group_by(inner.c.day, inner.c.model)
            .order_by(inner.c.day, inner.c.model)
        )
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [DaySpend(_as_date(r.day), r.model, int(r.requests), int(r.cost or 0)) for r in rows]

    # --- raw export -----------------------------------------------------------------------

    async def key_names(self, workspace_id: str) -> dict[str, str]:
        """The workspace's key ids to their names."""
        query = select(api_keys.c.id, api_keys.c.name).where(
            api_keys.c.workspace_id == workspace_id
        )
        async with self._engine.connect() as conn:
            return {row.id: row.name for row in await conn.execute(query)}

    async def export(
        self, workspace_id: str, span: TimeRange, page_size: int = EXPORT_PAGE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The range's records, oldest first, in pages of at most ``page_size``; each record
        carries ``router`` (see ``router_expression``) and ``created_at`` in UTC."""
        columns = [getattr(_u, name) for name in EXPORT_COLUMNS]
        base = select(*columns, self.router_expression().label("router")).where(
            *_scope(workspace_id, span)
        )
        after: tuple[Any, str] | None = None
        while True:
            query = base.order_by(_u.created_at, _u.request_id).limit(page_size)
            if after is not None:
                stamp, request_id = after
                query = query.where(
                    or_(
                        _u.created_at > stamp,
                        and_(_u.created_at == stamp, _u.request_id > request_id),
                    )
                )
            async with self._engine.connect() as conn:
                rows = list(await conn.execute(query))
            if rows:
                after = (rows[-1].created_at, rows[-1].request_id)
                page = [dict(row._mapping) for row in rows]
                for record in page:
                    record["created_at"] = as_utc(record["created_at"])
                    record["stream"] = bool(record["stream"])
                yield page
            if len(rows) < page_size:
                return


def _scope(workspace_id: str, span: TimeRange) -> list[ColumnElement[bool]]:
    return [
        _u.workspace_id == workspace_id,
        _u.created_at >= span.start,
        _u.created_at < span.end,
    ]


def _sums(dimension: ColumnElement[Any] | None, where: list[ColumnElement[bool]]) -> Select[Any]:
    """One row per group. The dimension is computed in a subquery and grouped by column, so
    PostgreSQL sees one expression (a JSON path or a time zone repeated in ``GROUP BY`` would
    carry parameters of its own and not match the selected one)."""
    group = (dimension if dimension is not None else null()).label("g")
    inner = select(
        group,
        _u.outcome,
        _u.cost_micros,
        *(getattr(_u, name) for name in _SUMMED if name != "cost_micros"),
    ).where(*where)
    sub = inner.subquery()
    query = select(
        sub.c.g if dimension is not None else null().label("g"),
        func.count().label("requests"),
        func.count(case((sub.c.outcome != "ok", 1))).label("errors"),
        *(func.coalesce(func.sum(sub.c[name]), 0).label(name) for name in _SUMMED),
        func.count(case((sub.c.cost_micros.is_(None), 1))).label("unpriced"),
    )
    return query.group_by(sub.c.g) if dimension is not None else query


def _ranks(
    dimension: ColumnElement[Any] | None,
    value: ColumnElement[Any],
    where: list[ColumnElement[bool]],
    percentiles: Sequence[int],
) -> Select[Any]:
    """The rows at each percentile's nearest rank, per group: (g, v, rn, n)."""
    partition = [dimension] if dimension is not None else None
    group = (dimension if dimension is not None else null()).label("g")
    ranked = (
        select(
            group,
            value.label("v"),
            func.row_number().over(partition_by=partition, order_by=value).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(*where)
        .subquery()
    )
    wanted = [ranked.c.rn == (ranked.c.n * p + 99) // 100 for p in percentiles]
    return select(ranked.c.g, ranked.c.v, ranked.c.rn, ranked.c.n).where(or_(*wanted))


def _rank(percentile: int, n: int) -> int:
    """The nearest rank (1-based) of ``percentile`` among ``n`` values: ceil(p * n / 100)."""
    return max(1, (percentile * n + 99) // 100)


def _text(value: object) -> str | None:
    """A group value as text: dates as ``YYYY-MM-DD`` on both backends."""
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _ordered(groups: dict[str | None, UsageGroup], group_by: str) -> list[UsageGroup]:
    """Days in order; other groups by spend, then requests, the ``None`` group last."""
    values = list(groups.values())
    if group_by == "day":
        return sorted(values, key=lambda g: g.group or "")
    return sorted(
        values,
        key=lambda g: (g.group is None, -g.cost_micros, -g.requests, g.group or ""),
    )
