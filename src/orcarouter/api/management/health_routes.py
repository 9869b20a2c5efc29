"""``/api/health/targets``: the live set as the gateway sees it (any signed-in caller).

Health is gateway-wide operational state, shown on the public model cards too; no workspace
owns it, so any authenticated caller may read it.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request
from pydantic import BaseModel

from orcarouter.api.management.context import current_caller
from orcarouter.routing.health import HealthBook, RetryBudget

router = APIRouter(prefix="/api/health", tags=["health"])


class TargetHealthOut(BaseModel):
    model: str
    status: str  # healthy | ejected | cooling_down
    consecutive_failures: int
    ejected_until: str | None
    cooldown_until: str | None
    last_error: str | None
    total_failures: int
    total_ejections: int


class HealthOut(BaseModel):
    targets: list[TargetHealthOut]
    retry_in_flight: int
    requests_in_flight: int


@router.get("/targets", summary="Health of every target the gateway has seen fail")
async def targets(request: Request) -> HealthOut:
    """Ejected and cooling-down targets first; a target never seen failing is healthy."""
    await current_caller(request)
    book = cast(HealthBook | None, request.app.state.health)
    budget = cast(RetryBudget | None, request.app.state.retry_budget)
    return HealthOut(
        targets=[TargetHealthOut(**state) for state in (book.snapshot() if book else [])],
        retry_in_flight=budget.retrying if budget is not None else 0,
        requests_in_flight=budget.in_flight if budget is not None else 0,
    )
