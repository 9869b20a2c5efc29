"""``/api/workspaces/{id}/wallet``: the balance and ledger (viewers), top-ups (admins).

Amounts travel as decimal USD strings and are kept as integer micro-dollars; an amount finer
than a micro-dollar is refused rather than rounded. The process that commits a top-up counts
it at once (a first top-up starts metering, a withdrawal is held against the next request);
other processes pick it up within about a second (the budgets refresh from the database).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from orcarouter.accounts.roles import Action
from orcarouter.api.management.context import ApiError, authorize, context
from orcarouter.metering.pricing import parse_usd, usd
from orcarouter.metering.wallet import BudgetBook
from orcarouter.store.wallets import WalletRepository

router = APIRouter(prefix="/api/workspaces/{workspace_id}/wallet", tags=["wallet"])


def micros_from_usd(amount: str) -> int:
    """Decimal USD to micro-dollars; 400 for anything that is not whole micro-dollars."""
    try:
        return parse_usd(amount)
    except ValueError as exc:
        raise ApiError(400, "invalid_amount", f"amount_usd: {exc}") from None


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_usd: str = Field(description="decimal USD; negative takes money back", max_length=32)
    note: str | None = Field(default=None, max_length=200)


class WalletOut(BaseModel):
    workspace_id: str
    has_wallet: bool
    balance_usd: str | None
    balance_micros: int | None


class LedgerEntryOut(BaseModel):
    id: str
    created_at: datetime
    kind: str
    amount_usd: str
    amount_micros: int
    balance_after_micros: int | None
    request_id: str | None
    key_id: str | None
    actor: str | None
    note: str | None


def _repo(request: Request) -> WalletRepository:
    return cast(WalletRepository, request.app.state.wallets)


def _out(workspace_id: str, balance: int | None) -> WalletOut:
    return WalletOut(
        workspace_id=workspace_id,
        has_wallet=balance is not None,
        balance_usd=usd(balance) if balance is not None else None,
        balance_micros=balance,
    )


@router.get("", summary="The workspace's balance")
async def get_wallet(workspace_id: str, request: Request) -> WalletOut:
    """Viewer and above. Without a wallet the workspace is not metered in money."""
    await authorize(request, workspace_id, Action.READ_BILLING)
    return _out(workspace_id, await _repo(request).balance(workspace_id))


@router.post("/topups", status_code=201, summary="Add money (or take it back)")
async def top_up(workspace_id: str, body: TopUp, request: Request) -> WalletOut:
    """Admin only. The first top-up opens the wallet; from then on requests pay from it."""
    access = await authorize(request, workspace_id, Action.MANAGE_BILLING)
    amount = micros_from_usd(body.amount_usd)
    actor = f"{access.caller.actor[0]}:{access.caller.actor[1]}"
    balance = await _repo(request).top_up(workspace_id, amount, actor, body.note)
    budgets: BudgetBook | None = request.app.state.budgets
    if budgets is not None:
        budgets.credit(workspace_id, amount, balance)
    await context(request).audit.record(
        actor=access.caller.actor,
        action="wallet.topup",
        workspace_id=workspace_id,
        target=("wallet", workspace_id),
        detail={"amount_micros": amount, "balance_micros": balance},
        client_ip=access.caller.client_ip,
    )
    return _out(workspace_id, balance)


@router.get("/ledger", summary="Every money movement, newest first")
async def ledger(
    workspace_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[LedgerEntryOut]:
    """Viewer and above: top-ups, adjustments and each request's charge."""
    await authorize(request, workspace_id, Action.READ_BILLING)
    entries = await _repo(request).ledger(workspace_id, limit)
    return [LedgerEntryOut(**e, amount_usd=usd(e["amount_micros"])) for e in entries]
