"""Named routers and ``orcarouter/auto`` through the real gateway, with catalog-priced models.

The gateway here serves three OpenAI catalog models from the replay upstream; an operator
price entry makes ``gpt-3.5-turbo`` (no tools, 16k context) the cheapest, ``gpt-4o-mini`` (tools,
128k) the next and ``gpt-4.1-mini`` (tools, 1M context) the dearest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.conftest import ADMIN_KEY, OPENAI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.replay import ReplayUpstream, json_answer

MODELS = ["gpt-3.5-turbo", "gpt-4o-mini", "gpt-4.1-mini"]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def priced(
    upstream: ReplayUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    config = {
        "providers": [
            {
                "id": "openai",
                "protocol": "openai",
                "base_url": upstream.base_url + "/openai/v1",
                "api_key_env": "ROUTERS_OPENAI_KEY",
                "models": MODELS,
            }
        ],
        "models": [
            {
                "provider": "openai",
                "model": "gpt-3.5-turbo",
                "prices": [{"effective_from": "2020-01-01", "input": "0.01", "output": "0.02"}],
            }
        ],
    }
    process = GatewayProcess(
        tmp_path_factory.mktemp("routers"),
        config,
        env={"ORCAROUTER_ADMIN_KEY": ADMIN_KEY, "ROUTERS_OPENAI_KEY": OPENAI_UPSTREAM_KEY},
    )
    process.start()
    yield process
    process.stop()


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def _chat(gateway: GatewayProcess, model: str = "orcarouter/auto", **extra: Any) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return request(
        gateway.base_url + "/v1/chat/completions",
        orjson.dumps(body),
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )


def _manage(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> Answer:
    return request(
        gateway.base_url + "/api/workspaces/ws_default/routers" + path,
        orjson.dumps(body) if body is not None else None,
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
        method=method,
    )


def _served(upstream: ReplayUpstream) -> str:
    return str(upstream.received[-1].body["model"])


def test_auto_picks_the_cheapest_model_and_says_why(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer(_completion("gpt-3.5-turbo")))
    client = openai.OpenAI(base_url=priced.base_url + "/v1", api_key=ADMIN_KEY)
    raw = client.chat.completions.with_raw_response.create(
        model="orcarouter/auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "ok"
    assert _served(upstream) == "gpt-3.5-turbo"
    assert raw.headers["x-orca-router"] == "orcarouter/auto"
    assert raw.headers["x-orca-resolved-model"] == "openai/gpt-3.5-turbo"
    reason = raw.headers["x-orca-route-reason"]
    assert reason.startswith("cheapest; chose openai/gpt-3.5-turbo ($") and "3 candidates" in reason
    record = priced.usage_record(raw.headers["x-orca-request-id"])
    assert (record["model_requested"], record["model_served"]) == (
        "orcarouter/auto",
        "openai/gpt-3.5-turbo",
    )
    decision = orjson.loads(record["route_reason"])
    assert decision["strategy"] == "cheapest"
    assert decision["chosen"]["model"] == "openai/gpt-3.5-turbo"
    assert [c["model"] for c in decision["candidates"]] == [f"openai/{m}" for m in MODELS]


def test_a_request_with_tools_never_reaches_the_model_without_them(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer(_completion("gpt-4o-mini")))
    answer = _chat(priced, tools=[TOOL])
    assert answer.status == 200, answer.body
    assert _served(upstream) == "gpt-4o-mini"
    assert answer.headers["x-orca-resolved-model"] == "openai/gpt-4o-mini"
    assert "excluded tools=1" in answer.headers["x-orca-route-reason"]
    record = priced.usage_record(answer.headers["x-orca-request-id"])
    excluded = orjson.loads(record["route_reason"])["excluded"]
    assert [(e["model"], e["need"]) for e in excluded] == [("openai/gpt-3.5-turbo", "tools")]


def test_a_150k_token_prompt_never_reaches_a_128k_model(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer(_completion("gpt-4.1-mini")))
    long_prompt = "word " * 120_000  # 600,000 characters: about 150,000 tokens
    messages = [{"role": "user", "content": long_prompt}]
    answer = _chat(priced, messages=messages, max_tokens=1000)
    assert answer.status == 200, answer.body
    assert _served(upstream) == "gpt-4.1-mini"
    reason = answer.headers["x-orca-route-reason"]
    assert "chose openai/gpt-4.1-mini" in reason and "excluded context=2" in reason


def test_a_request_no_candidate_can_serve_is_refused_saying_what_was_missing(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    answer = _chat(priced, max_tokens=5_000_000)
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "no_candidate" and "max_tokens" in error["message"]
    unknown = _chat(priced, "orcarouter/nothing-here")
    assert unknown.status == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert upstream.received == []


def test_the_anthropic_dialect_routes_too(priced: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(json_answer(_completion("gpt-3.5-turbo")))
    body = {
        "model": "orcarouter/auto",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    answer = request(
        priced.base_url + "/v1/messages",
        orjson.dumps(body),
        {"x-api-key": ADMIN_KEY, "content-type": "application/json"},
    )
    assert answer.status == 200, answer.body
    assert answer.json()["type"] == "message"
    assert answer.headers["x-orca-router"] == "orcarouter/auto"
    assert _served(upstream) == "gpt-3.5-turbo"


def test_routers_are_managed_through_the_api_and_take_effect_at_once(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    listed = _manage(priced, "GET", "")
    assert listed.status == 200
    assert [r["model"] for r in listed.json()] == ["orcarouter/auto"]
    created = _manage(
        priced,
        "POST",
        "",
        {"name": "pinned", "strategy": "priority", "priority": ["openai/gpt-4.1-mini"]},
    )
    assert created.status == 201, created.body
    assert created.json()["model"] == "orcarouter/pinned"
    assert _manage(priced, "POST", "", {"name": "pinned"}).status == 409
    bad = _manage(priced, "POST", "", {"name": "Not Valid"})
    assert (bad.status, bad.json()["error"]["code"]) == (400, "invalid_router")
    upstream.expect(json_answer(_completion("gpt-4.1-mini")))
    served = _chat(priced, "orcarouter/pinned")
    assert served.status == 200 and _served(upstream) == "gpt-4.1-mini"
    assert served.headers["x-orca-route-reason"].startswith("priority; chose openai/gpt-4.1-mini")
    patched = _manage(priced, "PATCH", "/pinned", {"enabled": False})
    assert patched.status == 200 and patched.json()["enabled"] is False
    assert _chat(priced, "orcarouter/pinned").status == 404
    assert _manage(priced, "DELETE", "/pinned").status == 204
    assert _manage(priced, "GET", "/pinned").status == 404


def test_the_cli_manages_routers_and_the_gateway_follows(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    made = priced.cli(
        "routers", "create", "quick", "--strategy", "cheapest", "--models", "openai/gpt-4o*"
    )
    assert made.returncode == 0, made.stderr
    listing = priced.cli("routers", "list")
    assert "orcarouter/quick" in listing.stdout and "orcarouter/auto" in listing.stdout
    assert priced.cli("routers", "create", "orcarouter").returncode == 1  # reserved
    deadline = time.monotonic() + 5
    upstream.expect(json_answer(_completion("gpt-4o-mini")))
    while (answer := _chat(priced, "orcarouter/quick")).status == 404:
        assert time.monotonic() < deadline, answer.body
        time.sleep(0.2)
    assert answer.status == 200 and _served(upstream) == "gpt-4o-mini"
    assert priced.cli("routers", "update", "quick", "--enabled", "false").returncode == 0
    assert priced.cli("routers", "delete", "quick").returncode == 0
    assert priced.cli("routers", "delete", "quick").returncode == 1


def test_the_keys_allow_list_narrows_what_a_router_may_pick(
    priced: GatewayProcess, upstream: ReplayUpstream
) -> None:
    made = request(
        priced.base_url + "/api/workspaces/ws_default/keys",
        orjson.dumps(
            {
                "name": "only 4o-mini",
                "model_limits_enabled": True,
                "model_limits": ["openai/gpt-4o-mini"],
            }
        ),
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    assert made.status == 201, made.body
    upstream.expect(json_answer(_completion("gpt-4o-mini")))
    client = openai.OpenAI(base_url=priced.base_url + "/v1", api_key=made.json()["secret"])
    raw = client.chat.completions.with_raw_response.create(
        model="orcarouter/auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-orca-resolved-model"] == "openai/gpt-4o-mini"
    assert "excluded key=2" in raw.headers["x-orca-route-reason"]
