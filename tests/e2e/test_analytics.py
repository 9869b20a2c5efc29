"""Usage analytics, the CSV export and OpenAI's legacy billing endpoints, on the real gateway.

Workspace A's key makes a few requests (served, streamed, refused upstream, unpriced, through
a router), workspace B's key one; each workspace sees its own usage and nothing of the other's.
One priced record is added to the ledger directly, as the usage writer stores it, so the money
figures can be checked to the micro-dollar.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from tests.conftest import ADMIN_KEY, OPENAI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.management import Api, unique_email
from tests.support.replay import ReplayUpstream, json_answer, openai_stream, sse_answer

PRICED_MICROS = 1_234_567  # $1.234567, 123.4567 cents


@pytest.fixture(scope="module")
def gateway_for_analytics(
    upstream: ReplayUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    config = {
        "providers": [
            {
                "id": "openai",
                "protocol": "openai",
                "base_url": upstream.base_url + "/openai/v1",
                "api_key_env": "ANALYTICS_OPENAI_KEY",
                "models": ["gpt-4o-mini"],
            },
            {
                "id": "local",
                "protocol": "openai",
                "base_url": upstream.base_url + "/local/v1",
                "models": ["llama3.2"],
            },
        ],
    }
    process = GatewayProcess(
        tmp_path_factory.mktemp("analytics"),
        config,
        env={
            "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
            "ORCAROUTER_OPEN_REGISTRATION": "true",
            "ANALYTICS_OPENAI_KEY": OPENAI_UPSTREAM_KEY,
        },
    )
    process.start()
    yield process
    process.stop()


@dataclass
class Tenant:
    """A registered user, the workspace it administers and one member key there."""

    token: str
    workspace: str
    key_id: str
    key_name: str
    secret: str
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scenario:
    gateway: GatewayProcess
    api: Api
    a: Tenant
    b: Tenant
    viewer_token: str


def _tenant(api: Api, tag: str, **key_fields: Any) -> Tenant:
    email = unique_email(tag)
    workspace = api.register(email, name=f"analytics {tag}")["workspace"]["id"]
    token = api.token(email)
    name = f"{tag}-key"
    made = api.call(
        "POST", f"/api/workspaces/{workspace}/keys", {"name": name, **key_fields}, token
    )
    assert made.status == 201, made.body
    key = made.json()
    return Tenant(token, workspace, key["id"], name, key["secret"])


def _completion(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _chat(gateway: GatewayProcess, tenant: Tenant, model: str, **extra: Any) -> str:
    """One chat request; its usage record is kept on the tenant once committed."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    answer = request(
        gateway.base_url + "/v1/chat/completions",
        orjson.dumps(body),
        {"authorization": f"Bearer {tenant.secret}", "content-type": "application/json"},
    )
    request_id = answer.headers["x-orca-request-id"]
    tenant.records.append(gateway.usage_record(request_id))
    return request_id


def _add_priced_record(gateway: GatewayProcess, tenant: Tenant) -> None:
    """A served, priced request, stored the way the usage writer stores one on SQLite."""
    now = datetime.now(UTC).replace(tzinfo=None)
    request_id = "req_priced_" + tenant.workspace
    row: dict[str, object] = {
        "request_id": request_id,
        "created_at": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "workspace_id": tenant.workspace,
        "key_id": tenant.key_id,
        "endpoint": "openai.chat",
        "model_requested": "openai/gpt-4o-mini",
        "model_served": "openai/gpt-4o-mini",
        "provider_id": "openai",
        "stream": 0,
        "status_code": 200,
        "outcome": "ok",
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "latency_ms": 250,
        "cost_micros": PRICED_MICROS,
    }
    statement = "INSERT INTO usage_records ({}) VALUES ({})".format(  # noqa: S608 - our names
        ", ".join(row), ", ".join("?" for _ in row)
    )
    with contextlib.closing(sqlite3.connect(gateway.database)) as conn, conn:
        conn.execute(statement, tuple(row.values()))
    tenant.records.append(gateway.usage_record(request_id))


@pytest.fixture(scope="module")
def scenario(gateway_for_analytics: GatewayProcess, upstream: ReplayUpstream) -> Scenario:
    gateway = gateway_for_analytics
    api = Api(gateway.base_url)
    a = _tenant(api, "alpha")
    b = _tenant(api, "beta", usd_cap_micros=12_345_000)
    viewer_email = unique_email("viewer")
    api.register(viewer_email)
    added = api.call(
        "POST",
        f"/api/workspaces/{a.workspace}/members",
        {"email": viewer_email, "role": "viewer"},
        a.token,
    )
    assert added.status == 201, added.body
    made = api.call(
        "POST",
        f"/api/workspaces/{a.workspace}/routers",
        {"name": "analytics", "allowed_models": ["openai/*"]},
        a.token,
    )
    assert made.status == 201, made.body

    upstream.expect(json_answer(_completion(1000, 500)))
    _chat(gateway, a, "openai/gpt-4o-mini")
    upstream.expect(sse_answer(openai_stream(["Hel", "lo"], usage=(40, 2))))
    _chat(gateway, a, "openai/gpt-4o-mini", stream=True)
    upstream.expect(
        json_answer({"error": {"message": "bad", "type": "invalid_request_error"}}, status=400)
    )
    _chat(gateway, a, "openai/gpt-4o-mini")
    upstream.expect(json_answer(_completion(9, 1)))
    _chat(gateway, a, "local/llama3.2")
    upstream.expect(json_answer(_completion(20, 5)))
    _chat(gateway, a, "orcarouter/analytics")
    _add_priced_record(gateway, a)
    upstream.expect(json_answer(_completion(3, 3)))
    _chat(gateway, b, "openai/gpt-4o-mini")
    return Scenario(gateway, api, a, b, api.token(viewer_email))


def _analytics(s: Scenario, tenant: Tenant, token: str | None = None, **query: str) -> Answer:
    params = urlencode(query)
    return s.api.call(
        "GET", f"/api/workspaces/{tenant.workspace}/analytics?{params}", None, token or tenant.token
    )


def _spend(records: list[dict[str, Any]]) -> int:
    return sum(r["cost_micros"] or 0 for r in records)


def _usd(micros: int) -> str:
    return format(Decimal(micros) / 1_000_000, "f")


def test_analytics_by_model_sums_the_workspace_records(scenario: Scenario) -> None:
    a = scenario.a
    answer = _analytics(scenario, a, group_by="model")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["object"], body["group_by"], body["currency"]) == ("analytics", "model", "USD")
    assert body["workspace_id"] == a.workspace
    totals = body["totals"]
    assert totals["requests"] == len(a.records) == 6
    assert totals["errors"] == sum(r["outcome"] != "ok" for r in a.records) == 1
    assert totals["total_tokens"] == sum(r["total_tokens"] or 0 for r in a.records)
    assert totals["spend_micros"] == _spend(a.records)
    assert totals["spend_usd"] == _usd(_spend(a.records))
    assert totals["unpriced_requests"] == sum(r["cost_micros"] is None for r in a.records)
    groups = {g["group"]: g for g in body["groups"]}
    assert set(groups) == {r["model_served"] for r in a.records}
    mini = groups["openai/gpt-4o-mini"]
    served = [r for r in a.records if r["model_served"] == "openai/gpt-4o-mini"]
    assert (mini["requests"], mini["errors"]) == (len(served), 1)
    assert mini["error_rate"] == round(1 / len(served), 6)
    assert mini["prompt_tokens"] == sum(r["prompt_tokens"] or 0 for r in served)
    assert mini["spend_micros"] == _spend(served) >= PRICED_MICROS
    ok_latencies = sorted(r["latency_ms"] for r in served if r["outcome"] == "ok")
    assert mini["latency_p99_ms"] == ok_latencies[-1]
    assert mini["latency_p50_ms"] == ok_latencies[(len(ok_latencies) + 1) // 2 - 1]
    streamed = [r for r in served if r["stream"]]
    assert len(streamed) == 1 and mini["ttft_p50_ms"] == streamed[0]["ttft_ms"] is not None
    assert groups["local/llama3.2"]["requests"] == 1


def test_analytics_by_key_day_and_router(scenario: Scenario) -> None:
    a = scenario.a
    by_key = _analytics(scenario, a, group_by="key").json()
    assert [(g["group"], g["key_name"], g["requests"]) for g in by_key["groups"]] == [
        (a.key_id, a.key_name, 6)
    ]
    today = datetime.now(UTC).date()
    query = {"start": str(today - timedelta(days=1)), "end": str(today + timedelta(days=2))}
    by_day = _analytics(scenario, a, group_by="day", **query).json()
    assert by_day["start"] == f"{today - timedelta(days=1)}T00:00:00Z"
    assert sum(g["requests"] for g in by_day["groups"]) == 6
    assert {g["group"] for g in by_day["groups"]} <= {str(today - timedelta(days=1)), str(today)}
    by_router = _analytics(scenario, a, group_by="router").json()
    routers = {g["group"]: g["requests"] for g in by_router["groups"]}
    assert routers == {"orcarouter/analytics": 1, None: 5}


def test_each_workspace_sees_only_its_own_usage(scenario: Scenario) -> None:
    a, b = scenario.a, scenario.b
    theirs = _analytics(scenario, b, group_by="key").json()
    assert theirs["totals"]["requests"] == 1
    assert [g["group"] for g in theirs["groups"]] == [b.key_id]
    for token in (b.token, b.secret):
        refused = _analytics(scenario, a, token=token)
        assert (refused.status, refused.json()["error"]["code"]) == (404, "workspace_not_found")
    viewer = _analytics(scenario, a, token=scenario.viewer_token, group_by="model")
    assert viewer.status == 200 and viewer.json()["totals"]["requests"] == 6
    member_key = _analytics(scenario, a, token=a.secret)
    assert (member_key.status, member_key.json()["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    ("query", "code", "words"),
    [
        ({"start": "2026-02-01", "end": "2026-01-01"}, "invalid_range", "before"),
        ({"start": "2026-01-01", "end": "2026-01-01"}, "invalid_range", "before"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "invalid_range", "366 days"),
        ({"start": "last week"}, "invalid_range", "'start' must be an ISO 8601"),
        ({"end": "2026-01-01T99:00"}, "invalid_range", "'end' must be an ISO 8601"),
        ({"group_by": "provider"}, "invalid_request", "group_by"),
    ],
)
def test_bad_ranges_are_400_in_the_management_envelope(
    scenario: Scenario, query: dict[str, str], code: str, words: str
) -> None:
    answer = _analytics(scenario, scenario.a, **query)
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert (error["code"], error["type"]) == (code, "invalid_request_error")
    assert words in error["message"]


def _csv(s: Scenario, tenant: Tenant, token: str | None = None, query: str = "") -> Answer:
    path = f"/api/workspaces/{tenant.workspace}/usage.csv{query}"
    return s.api.call("GET", path, None, token or tenant.token)


def test_csv_export_has_a_header_and_one_row_per_request(scenario: Scenario) -> None:
    a = scenario.a
    answer = _csv(scenario, a)
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
    assert [r["request_id"] for r in rows] == [r["request_id"] for r in a.records]
    assert {r["key_name"] for r in rows} == {a.key_name}
    priced = next(r for r in rows if r["cost_micros"] == str(PRICED_MICROS))
    assert (priced["cost_usd"], priced["stream"]) == ("1.234567", "false")
    assert priced["created_at"].endswith("Z")
    routed = [r for r in rows if r["router"]]
    assert [r["router"] for r in routed] == ["orcarouter/analytics"]
    streamed = [r for r in rows if r["stream"] == "true"]
    assert len(streamed) == 1 and streamed[0]["ttft_ms"].isdigit()
    theirs = list(csv.DictReader(io.StringIO(_csv(scenario, scenario.b).body.decode())))
    assert [r["request_id"] for r in theirs] == [r["request_id"] for r in scenario.b.records]
    assert _csv(scenario, a, token=scenario.b.token).status == 404


def test_csv_of_an_empty_range_is_the_header_alone(scenario: Scenario) -> None:
    answer = _csv(scenario, scenario.a, query="?start=2020-01-01&end=2020-02-01")
    assert answer.status == 200
    assert answer.body.decode().splitlines() == [
        "request_id,created_at,key_id,key_name,endpoint,model_requested,model_served,"
        "upstream_model,provider_id,router,stream,status_code,outcome,error_type,prompt_tokens,"
        "completion_tokens,total_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,"
        "cost_usd,cost_micros,latency_ms,ttft_ms"
    ]
    assert _csv(scenario, scenario.a, query="?start=2020-02-01&end=2020-01-01").status == 400


def _legacy(s: Scenario, path: str, secret: str | None) -> Answer:
    headers = {"authorization": f"Bearer {secret}"} if secret is not None else {}
    return request(s.gateway.base_url + path, None, headers, method="GET")


def test_legacy_subscription_reports_the_key_cap(scenario: Scenario) -> None:
    capped = _legacy(scenario, "/v1/dashboard/billing/subscription", scenario.b.secret)
    assert capped.status == 200, capped.body
    body = capped.json()
    assert (body["object"], body["has_payment_method"]) == ("billing_subscription", True)
    assert (body["hard_limit_usd"], body["hard_limit_micros"]) == (12.345, 12_345_000)
    assert body["account_name"] == scenario.b.key_name
    uncapped = _legacy(scenario, "/dashboard/billing/subscription", scenario.a.secret).json()
    assert uncapped["hard_limit_usd"] == 100_000_000 and uncapped["hard_limit_micros"] is None


def test_legacy_usage_reports_the_workspace_spend_in_cents(scenario: Scenario) -> None:
    a = scenario.a
    today = datetime.now(UTC).date()
    start = today - timedelta(days=2)
    path = f"/v1/dashboard/billing/usage?start_date={start}&end_date={today + timedelta(days=1)}"
    answer = _legacy(scenario, path, a.secret)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["object"] == "list"
    spend = _spend(a.records)
    assert body["total_usage_micros"] == spend
    assert body["total_usage"] == spend / 10_000  # cents, as OpenAI's legacy shape
    days = body["daily_costs"]
    assert [d["timestamp"] for d in days] == [
        datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        for d in (start, start + timedelta(days=1), today)
    ]
    costs = {item["name"]: item["cost"] for d in days for item in d["line_items"]}
    assert costs["openai/gpt-4o-mini"] >= PRICED_MICROS / 10_000
    assert sum(item["cost"] for d in days for item in d["line_items"]) == pytest.approx(
        spend / 10_000
    )
    theirs = _legacy(scenario, path, scenario.b.secret).json()
    assert theirs["total_usage_micros"] == _spend(scenario.b.records)
    defaults = _legacy(scenario, "/dashboard/billing/usage", a.secret).json()
    assert defaults["total_usage_micros"] == spend  # this month so far


@pytest.mark.parametrize(
    ("path", "secret", "status", "code"),
    [
        ("/v1/dashboard/billing/usage", None, 401, "invalid_api_key"),
        ("/v1/dashboard/billing/subscription", "sk-orca-unknown", 401, "invalid_api_key"),
        ("/v1/dashboard/billing/usage?start_date=2026-13-01", "a", 400, "invalid_request"),
        (
            "/v1/dashboard/billing/usage?start_date=2026-02-01&end_date=2026-01-01",
            "a",
            400,
            "invalid_request",
        ),
        (
            "/v1/dashboard/billing/usage?start_date=2024-01-01&end_date=2026-01-01",
            "a",
            400,
            "invalid_request",
        ),
    ],
)
def test_legacy_errors_use_the_openai_envelope(
    scenario: Scenario, path: str, secret: str | None, status: int, code: str
) -> None:
    answer = _legacy(scenario, path, scenario.a.secret if secret == "a" else secret)
    assert answer.status == status, answer.body
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and "type" in error and "param" in error


def test_legacy_usage_refuses_a_key_outside_its_allowed_addresses(scenario: Scenario) -> None:
    made = scenario.api.call(
        "POST",
        f"/api/workspaces/{scenario.a.workspace}/keys",
        {"name": "far away", "allow_ips": ["10.0.0.0/8"]},
        scenario.a.token,
    )
    assert made.status == 201, made.body
    answer = _legacy(scenario, "/v1/dashboard/billing/usage", made.json()["secret"])
    assert (answer.status, answer.json()["error"]["code"]) == (403, "access_denied")
