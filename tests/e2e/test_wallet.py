"""Money through the real gateway: a wallet that never goes below zero, 402 when it cannot
cover a request, a key's USD cap, the ledger summing to the recorded costs, and
``/v1/generation`` showing each request's cost.

The upstream is a ``Fleet`` model priced at $1 per million tokens in and out, so a token
costs one micro-dollar and every figure below can be checked by hand.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from orcarouter.metering.pricing import PROMPT_HOLD_FACTOR
from orcarouter.routing.needs import needs_of
from tests.conftest import ADMIN_KEY
from tests.support.fleet import Fleet
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request

MODEL = "cheap/m-cheap"
AUTH = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}


@pytest.fixture
def paying(fleet: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway whose one model costs $1 per million tokens each way."""
    fleet.reset()
    config = {
        "providers": [
            {
                "id": "cheap",
                "protocol": "openai",
                "base_url": fleet.url("cheap"),
                "models": ["m-cheap"],
                "timeouts": {"first_byte": 10, "idle": 10, "total": 30},
            }
        ],
        "models": [
            {
                "provider": "cheap",
                "model": "m-cheap",
                "max_output": 4096,
                "context_window": 100000,
                "prices": [{"effective_from": "2020-01-01", "input": "1", "output": "1"}],
            }
        ],
    }
    process = GatewayProcess(tmp_path, config, env={"ORCAROUTER_ADMIN_KEY": ADMIN_KEY})
    process.start()
    yield process
    process.stop()


def _api(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> Answer:
    data = orjson.dumps(body) if body is not None else None
    return request(gateway.base_url + path, data, AUTH, method=method)


def _top_up(gateway: GatewayProcess, usd: str) -> dict[str, Any]:
    answer = _api(gateway, "POST", "/api/workspaces/ws_default/wallet/topups", {"amount_usd": usd})
    assert answer.status == 201, answer.body
    result: dict[str, Any] = answer.json()
    return result


def _wait_for_budget(gateway: GatewayProcess, balance_micros: int) -> None:
    """The gateway reads balances back within about a second."""
    time.sleep(1.5)
    wallet = _api(gateway, "GET", "/api/workspaces/ws_default/wallet").json()
    assert wallet["balance_micros"] == balance_micros


def _body(max_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    )


def _worst_case(max_tokens: int) -> int:
    """What the gateway holds for one request: the prompt estimate plus max_tokens, at 1
    micro-dollar a token."""
    body = _body(max_tokens)
    return needs_of(orjson.loads(body), len(body)).prompt_tokens * PROMPT_HOLD_FACTOR + max_tokens


def _chat(gateway: GatewayProcess, key: str = ADMIN_KEY, max_tokens: int = 100) -> Answer:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return request(gateway.base_url + "/v1/chat/completions", _body(max_tokens), headers)


def _ledger(gateway: GatewayProcess) -> list[dict[str, Any]]:
    answer = _api(gateway, "GET", "/api/workspaces/ws_default/wallet/ledger?limit=1000")
    assert answer.status == 200, answer.body
    entries: list[dict[str, Any]] = answer.json()
    return entries


def test_a_wallet_for_50_requests_serves_50_of_200_concurrent_streams(
    paying: GatewayProcess, fleet: Fleet
) -> None:
    fleet.set("cheap", "slow")  # every stream is still open when the last one arrives
    per_request = _worst_case(100)
    _top_up(paying, f"{50 * per_request / 1_000_000:.6f}")
    _wait_for_budget(paying, 50 * per_request)

    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda _: _chat(paying), range(200)))
    statuses = [a.status for a in answers]
    assert set(statuses) <= {200, 402}
    served = statuses.count(200)
    assert 50 <= served < 200
    refused = next(a for a in answers if a.status == 402)
    error = refused.json()["error"]
    assert error["code"] == "insufficient_user_quota"
    assert "balance" in error["message"]

    time.sleep(0.5)  # the writer commits charges in batches
    records = [paying.usage_record(a.headers["x-orca-request-id"]) for a in answers]
    costs = [r["cost_micros"] for r in records if r["status_code"] == 200]
    assert len(costs) == served and all(c == 6 for c in costs)  # 5 in + 1 out, as the upstream said
    assert all(r["cost_micros"] in (0, None) for r in records if r["status_code"] == 402)
    charges = [e for e in _ledger(paying) if e["kind"] == "charge"]
    assert sorted(e["request_id"] for e in charges) == sorted(
        r["request_id"] for r in records if r["status_code"] == 200
    )
    assert -sum(e["amount_micros"] for e in charges) == sum(costs)  # to the micro-dollar
    wallet = _api(paying, "GET", "/api/workspaces/ws_default/wallet").json()
    assert wallet["balance_micros"] == 50 * per_request - sum(costs) >= 0


def test_an_empty_wallet_refuses_in_each_envelope_and_records_nothing_upstream(
    paying: GatewayProcess, fleet: Fleet
) -> None:
    enough = _worst_case(1)  # covers a 1-token answer, not a 100-token one
    _top_up(paying, f"{enough / 1_000_000:.6f}")
    _wait_for_budget(paying, enough)
    with (
        openai.OpenAI(base_url=paying.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0) as oc,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        oc.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_user_quota"
    with (
        anthropic.Anthropic(base_url=paying.base_url, api_key=ADMIN_KEY, max_retries=0) as ac,
        pytest.raises(anthropic.APIStatusError) as refused,
    ):
        ac.messages.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 402
    body = refused.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "billing_error"
    assert fleet.hits["cheap"] == 0
    record = paying.usage_record(caught.value.response.headers["x-orca-request-id"])
    assert (record["status_code"], record["error_type"]) == (402, "insufficient_user_quota")
    small = _chat(paying, max_tokens=1)  # a request the balance can cover is served
    assert small.status == 200


def test_a_top_up_or_withdrawal_counts_at_once_in_the_gateway_that_made_it(
    paying: GatewayProcess, fleet: Fleet
) -> None:
    opened = _top_up(paying, "0.000001")  # no wait: the first top-up starts metering now
    assert opened["balance_micros"] == 1
    assert _chat(paying, max_tokens=1).status == 402
    enough = 10 * _worst_case(1)
    _top_up(paying, f"{enough / 1_000_000:.6f}")
    assert _chat(paying, max_tokens=1).status == 200
    wallet = _api(paying, "GET", "/api/workspaces/ws_default/wallet").json()
    taken = _top_up(paying, f"-{wallet['balance_micros'] / 1_000_000:.6f}")
    assert taken["balance_micros"] <= 0  # a charge may commit in between
    refused = _chat(paying, max_tokens=1)  # not served on money already taken back
    assert refused.status == 402, refused.body
    assert fleet.hits["cheap"] == 1


def test_a_key_over_its_usd_cap_gets_402(paying: GatewayProcess, fleet: Fleet) -> None:
    created = _api(
        paying,
        "POST",
        "/api/workspaces/ws_default/keys",
        {"name": "capped", "usd_cap_micros": _worst_case(40) + 12},
    )
    assert created.status == 201, created.body
    key = created.json()["secret"]
    time.sleep(1.5)
    answers = [_chat(paying, key, max_tokens=40) for _ in range(6)]
    statuses = [a.status for a in answers]
    # Each request holds its worst case and costs 6: the third still fits (12 spent + hold),
    # the fourth would not, and the cap is never passed.
    assert statuses == [200, 200, 200, 402, 402, 402]
    assert answers[3].json()["error"]["message"].startswith("the key's USD cap is reached")
    spent = 0
    for answer in answers:
        record = paying.usage_record(answer.headers["x-orca-request-id"])
        spent += record["cost_micros"] or 0
    assert spent == 18


def test_generation_shows_the_cost_of_a_request(paying: GatewayProcess) -> None:
    with openai.OpenAI(base_url=paying.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    request_id = raw.headers["x-orca-request-id"]
    answer = request(
        paying.base_url + f"/v1/generation?id={request_id}", headers=AUTH, method="GET"
    )
    assert answer.status == 200, answer.body
    data = answer.json()["data"]
    assert (data["id"], data["model"], data["streamed"]) == (request_id, MODEL, False)
    assert (data["prompt_tokens"], data["completion_tokens"]) == (5, 1)
    assert (data["total_cost"], data["cost_micros"], data["currency"]) == ("0.000006", 6, "USD")
    missing = request(paying.base_url + "/v1/generation", headers=AUTH, method="GET")
    assert missing.status == 400 and missing.json()["error"]["param"] == "id"
    unknown = request(paying.base_url + "/v1/generation?id=req_nope", headers=AUTH, method="GET")
    assert unknown.status == 404


def test_the_cli_tops_up_and_shows_the_ledger(paying: GatewayProcess) -> None:
    added = paying.cli("wallet", "topup", "--usd", "2.5", "--note", "invoice 7")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "balance: $2.5"
    taken = paying.cli("wallet", "topup", "--usd", "-0.5")
    assert taken.stdout.strip() == "balance: $2"
    shown = paying.cli("wallet", "show")
    assert shown.stdout.splitlines()[0] == "balance: $2"
    assert "invoice 7" in shown.stdout and "adjustment" in shown.stdout
    bad = paying.cli("wallet", "topup", "--usd", "0.0000001")
    assert bad.returncode == 2 and "6 decimal places" in bad.stderr
    api = _api(paying, "POST", "/api/workspaces/ws_default/wallet/topups", {"amount_usd": "1e-9"})
    assert api.status == 400 and api.json()["error"]["code"] == "invalid_amount"
