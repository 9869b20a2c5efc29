"""OpenAI's legacy billing endpoints, which many chat front-ends and relays still call to show
a balance (ChatGPT-Next-Web, one-api/new-api channel checks, quota widgets):

- ``GET /v1/dashboard/billing/subscription``: the key's limit as ``hard_limit_usd`` (dollars);
- ``GET /v1/dashboard/billing/usage?start_date=&end_date=``: the workspace's spend over the
  dates as ``total_usage`` in **cents**, with ``daily_costs`` per day and model (cents too).

Clients compute "remaining" as ``hard_limit_usd - total_usage / 100``, so the units are OpenAI's
own, mismatch included. Both answer any valid key of the workspace (as ``/v1/generation``
does), from the key's allowed addresses, errors in the OpenAI envelope; each is also served
without the ``/v1`` prefix, as OpenAI did and relays still do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import orjson
from sqlalchemy.exc import SQLAlchemyError

from orcarouter.accounts.access import check_access
from orcarouter.accounts.keys import KeyCache, Principal
from orcarouter.api.asgi import Receive, Scope, Send, header_map, respond, respond_error
from orcarouter.api.auth import authenticate, client_ip
from orcarouter.errors import GatewayError, InvalidRequest, ServiceUnavailable
from orcarouter.store.analytics import (
    MAX_SPAN,
    DaySpend,
    RangeError,
    TimeRange,
    UsageAnalytics,
    start_of_day,
)

log = logging.getLogger(__name__)

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

SUBSCRIPTION_PATH = "/v1/dashboard/billing/subscription"
USAGE_PATH = "/v1/dashboard/billing/usage"
# A key without a USD cap reports this limit: clients do arithmetic on the number and break
# on null (the usual relays report a number too).
UNLIMITED_USD = 100_000_000
_NO_STORE = [(b"cache-control", b"no-store")]
_MICROS_PER_CENT = 10_000


def _cents(micros: int) -> float:
    """Micro-dollars as cents: a JSON number, as the legacy shape has it (1234 -> 0.1234)."""
    return micros / _MICROS_PER_CENT


def _dollars(micros: int) -> float:
    return micros / 1_000_000


def subscription_body(principal: Principal) -> dict[str, Any]:
    """The legacy subscription object for a key: its USD cap is its hard limit."""
    cap = principal.usd_cap_micros
    limit = _dollars(cap) if cap is not None else float(UNLIMITED_USD)
    expires = principal.expires_at
    return {
        "object": "billing_subscription",
        # False makes some clients treat the account as a free trial and ask for credit grants.
        "has_payment_method": True,
        "canceled": False,
        "canceled_at": None,
        "delinquent": None,
        "access_until": int(expires.timestamp()) if expires is not None else 0,
        "soft_limit_usd": limit,
        "hard_limit_usd": limit,
        "system_hard_limit_usd": limit,
        "plan": {"title": "OrcaRouter", "id": "self-hosted"},
        "account_name": principal.key_name,
        "po_number": None,
        "billing_email": None,
        "tax_ids": None,
        "billing_address": None,
        "business_address": None,
        # Extensions: the exact cap in micro-dollars (null: none) and the workspace.
        "hard_limit_micros": cap,
        "workspace_id": principal.workspace_id,
    }


def usage_body(days: list[date], spend: list[DaySpend]) -> dict[str, Any]:
    """The legacy usage object: every day of the range, its models' costs, the total."""
    by_day: dict[date, list[dict[str, Any]]] = {day: [] for day in days}
    total = 0
    for item in spend:
        total += item.cost_micros
        if item.model is not None:  # nothing was served (every candidate failed): no cost
            line = {"name": item.model, "cost": _cents(item.cost_micros)}
            by_day.setdefault(item.day, []).append(line)
    daily = [
        {"timestamp": start_of_day(day).timestamp(), "line_items": items}
        for day, items in by_day.items()
    ]
    return {
        "object": "list",
        "daily_costs": daily,
        "total_usage": _cents(total),
        "total_usage_micros": total,  # an extension: the exact figure
    }


def _date(query: Mapping[str, list[str]], name: str, default: date) -> date:
    values = query.get(name)
    if not values:
        return default
    try:
        return date.fromisoformat(values[-1].strip())
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date as YYYY-MM-DD", param=name) from None


def usage_range(query_string: bytes, today: date) -> TimeRange:
    """``start_date`` (inclusive) to ``end_date`` (exclusive, as OpenAI's was; the same date
    twice means that one day). Defaults: the current month up to and including today."""
    query = parse_qs(query_string.decode("latin-1"))
    start = _date(query, "start_date", today.replace(day=1))
    end = _date(query, "end_date", today + timedelta(days=1))
    if end == start:
        end = start + timedelta(days=1)
    if end < start:
        raise InvalidRequest("'end_date' must not be before 'start_date'", param="end_date")
    try:
        return TimeRange.of(start_of_day(start), start_of_day(end), MAX_SPAN)
    except RangeError as exc:
        raise InvalidRequest(str(exc), param="end_date") from None


class BillingRoutes:
    """The two legacy billing endpoints, key-authenticated."""

    def __init__(
        self,
        keys: KeyCache,
        analytics: UsageAnalytics,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._keys = keys
        self._analytics = analytics
        self._today = today

    @property
    def routes(self) -> dict[tuple[str, str], Handler]:
        """The exact-path routes, with and without ``/v1``."""
        routes: dict[tuple[str, str], Handler] = {}
        for path, handler in ((SUBSCRIPTION_PATH, self.subscription), (USAGE_PATH, self.usage)):
            routes[("GET", path)] = handler
            routes[("GET", path.removeprefix("/v1"))] = handler
        return routes

    async def _caller(self, scope: Scope) -> Principal:
        principal = await authenticate(self._keys, header_map(scope))
        denied = check_access(principal, client_ip(scope), None)
        if denied is not None:
            raise denied
        return principal

    async def subscription(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/dashboard/billing/subscription``."""
        try:
            principal = await self._caller(scope)
        except GatewayError as error:
            await respond_error(send, error, False, _NO_STORE)
            return
        await respond(send, 200, orjson.dumps(subscription_body(principal)), _NO_STORE)

    async def usage(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/dashboard/billing/usage``: the caller's workspace."""
        try:
            principal = await self._caller(scope)
            span = usage_range(scope.get("query_string", b""), self._today())
            try:
                spend = await self._analytics.daily_spend(principal.workspace_id, span)
            except SQLAlchemyError:
                log.warning("billing usage: the database could not be read", exc_info=True)
                raise ServiceUnavailable("usage cannot be read right now; retry shortly") from None
        except GatewayError as error:
            await respond_error(send, error, False, _NO_STORE)
            return
        body = usage_body(span.days(), spend)
        await respond(send, 200, orjson.dumps(body), _NO_STORE)
