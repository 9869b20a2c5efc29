"""The catalog API without a key: both SDKs list models, filters, model cards with live stats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.replay import Handler, Received, ReplayUpstream, json_answer

NOT_A_KEY = "sk-not-a-valid-key"
LLAMA_OVERRIDE = {
    "provider": "local",
    "model": "llama3.2",
    "context_window": 131072,
    "max_output": 8192,
    "capabilities": ["tools"],
    "prices": [
        {"effective_from": "2026-01-01", "input": "0.15", "output": "0.6", "cache_read": "0.075"},
        {"effective_from": "2099-01-01", "input": "9", "output": "9"},
    ],
}


@pytest.fixture(scope="module")
def catalog_gateway(
    upstream: ReplayUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway serving the shipped catalog's OpenAI and Anthropic models plus a local model."""
    config = {
        "providers": [
            {
                "id": "openai",
                "protocol": "openai",
                "base_url": upstream.base_url + "/openai/v1",
                "api_key_env": "CATALOG_OPENAI_KEY",
            },
            {
                "id": "anthropic",
                "protocol": "anthropic",
                "base_url": upstream.base_url + "/anthropic/v1",
                "api_key_env": "CATALOG_ANTHROPIC_KEY",
            },
            {
                "id": "local",
                "protocol": "openai",
                "base_url": upstream.base_url + "/local/v1",
                "models": ["llama3.2"],
            },
        ],
        "models": [LLAMA_OVERRIDE],
    }
    process = GatewayProcess(
        tmp_path_factory.mktemp("catalog-gateway"),
        config,
        env={
            "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
            "CATALOG_OPENAI_KEY": "sk-upstream-openai-catalog",
            "CATALOG_ANTHROPIC_KEY": "sk-ant-upstream-catalog",
        },
    )
    process.start()
    yield process
    process.stop()


def _get(gateway: GatewayProcess, path: str, headers: dict[str, str] | None = None) -> Answer:
    return request(gateway.base_url + path, headers=headers, method="GET")


def _ids(answer: Answer) -> list[str]:
    assert answer.status == 200, answer.body
    return [model["id"] for model in answer.json()["data"]]


def test_openai_sdk_lists_and_retrieves_models_without_a_key(gateway: GatewayProcess) -> None:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=NOT_A_KEY) as client:
        models = list(client.models.list())
        model = client.models.retrieve("local/llama3.2")  # the SDK sends local%2Fllama3.2
    ids = [model.id for model in models]
    assert "local/llama3.2" in ids
    assert all("/" in model_id for model_id in ids)
    assert all(model.object == "model" and model.owned_by for model in models)
    assert (model.id, model.owned_by) == ("local/llama3.2", "local")


def test_anthropic_sdk_lists_and_retrieves_models_without_a_key(gateway: GatewayProcess) -> None:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=NOT_A_KEY) as client:
        models = list(client.models.list())
        model = client.models.retrieve("local/llama3.2")
    assert "local/llama3.2" in [model.id for model in models]
    assert all(model.type == "model" and model.display_name for model in models)
    assert (model.id, model.lifecycle) == ("local/llama3.2", "active")


def test_unknown_models_are_404_in_each_envelope(gateway: GatewayProcess) -> None:
    with (
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=NOT_A_KEY) as client,
        pytest.raises(openai.NotFoundError) as openai_error,
    ):
        client.models.retrieve("nope/missing")
    assert openai_error.value.code == "model_not_found"
    with (
        anthropic.Anthropic(base_url=gateway.base_url, api_key=NOT_A_KEY) as anthropic_client,
        pytest.raises(anthropic.NotFoundError) as anthropic_error,
    ):
        anthropic_client.models.retrieve("nope/missing")
    assert anthropic_error.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "model 'nope/missing' is not served here (see GET /v1/models)",
        },
    }
    card = _get(gateway, "/api/public/models/nope/missing")
    assert card.status == 404
    assert card.json() == {"success": False, "message": "model 'nope/missing' not found"}
    assert _get(gateway, "/v1/models/").status == 404
    wrong_method = request(gateway.base_url + "/v1/models/local/llama3.2", b"{}")
    assert wrong_method.status == 405


def test_listing_has_openrouter_fields_and_decimal_prices(
    catalog_gateway: GatewayProcess,
) -> None:
    models = {model["id"]: model for model in _get(catalog_gateway, "/v1/models").json()["data"]}
    prefixes = {model_id.split("/")[0] for model_id in models}
    assert prefixes == {"openai", "anthropic", "local", "orcarouter"}
    auto = models["orcarouter/auto"]  # every workspace has it, so it is listed without a key
    assert (auto["kind"], auto["owned_by"]) == ("router", "orcarouter")
    assert "pricing" not in auto and auto["supported_endpoint_types"] == ["openai", "anthropic"]
    mini = models["openai/gpt-4o-mini"]
    assert mini["pricing"]["prompt"] == "0.00000015"
    assert mini["pricing"]["completion"] == "0.0000006"
    assert mini["pricing"]["prompt_per_million"] == "0.15"
    assert mini["context_length"] == mini["top_provider"]["context_length"] == 128000
    assert mini["architecture"]["input_modalities"][0] == "text"
    assert mini["supported_endpoint_types"] == ["openai", "anthropic"]
    assert isinstance(mini["created"], int) and mini["created"] > 1_700_000_000
    for model in models.values():
        for value in model.get("pricing", {}).values():
            assert isinstance(value, str) and Decimal(value) >= 0  # never a float
    llama = models["local/llama3.2"]  # the operator's entry, at today's (not 2099's) price
    assert llama["pricing"]["prompt_per_million"] == "0.15"
    assert llama["pricing"]["input_cache_read"] == "0.000000075"
    assert (llama["context_length"], llama["max_completion_tokens"]) == (131072, 8192)
    embedding = models["openai/text-embedding-3-small"]
    assert embedding["supported_endpoint_types"] == []


def test_filters(catalog_gateway: GatewayProcess) -> None:
    everything = _ids(_get(catalog_gateway, "/v1/models"))
    anthropic_only = _ids(_get(catalog_gateway, "/v1/models?provider=anthropic"))
    assert anthropic_only and all(m.startswith("anthropic/") for m in anthropic_only)
    assert anthropic_only == [m for m in everything if m.startswith("anthropic/")]
    embeddings = _ids(_get(catalog_gateway, "/v1/models?capability=embedding"))
    assert "openai/text-embedding-3-small" in embeddings
    assert all("embedding" in m for m in embeddings)
    chat = _ids(_get(catalog_gateway, "/v1/models?capability=chat"))
    assert "openai/gpt-4o" in chat and "openai/text-embedding-3-small" not in chat
    answer = _get(catalog_gateway, "/v1/models?capability=tools,vision&min_context=400000")
    wide = answer.json()["data"]
    assert wide
    for model in wide:
        assert model["context_length"] >= 400000
        assert {"tools", "vision"} <= set(model["capabilities"])
    reasoning = _ids(_get(catalog_gateway, "/v1/models?provider=anthropic&capability=reasoning"))
    assert reasoning and set(reasoning) < set(anthropic_only)
    assert _ids(_get(catalog_gateway, "/v1/models?provider=nobody")) == []
    assert _ids(_get(catalog_gateway, "/v1/models?provider=orcarouter")) == ["orcarouter/auto"]
    assert "orcarouter/auto" not in chat  # a router has no capabilities of its own


def test_a_key_lists_its_workspace_routers(gateway: GatewayProcess) -> None:
    created = gateway.cli("routers", "create", "listed-router", "--strategy", "cheapest")
    assert created.returncode == 0, created.stderr
    try:
        deadline = time.monotonic() + 5
        while True:
            with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY) as client:
                ids = [model.id for model in client.models.list()]
            if "orcarouter/listed-router" in ids or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {"orcarouter/auto", "orcarouter/listed-router"} <= set(ids)
        with anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY) as client:
            listed = [model.id for model in client.models.list(limit=1000)]
        assert "orcarouter/listed-router" in listed
        anonymous = _ids(_get(gateway, "/v1/models"))
        assert "orcarouter/auto" in anonymous and "orcarouter/listed-router" not in anonymous
    finally:
        gateway.cli("routers", "delete", "listed-router")


def test_bad_filters_are_400(catalog_gateway: GatewayProcess) -> None:
    bad_capability = _get(catalog_gateway, "/v1/models?capability=telepathy")
    assert bad_capability.status == 400
    assert bad_capability.json()["error"]["param"] == "capability"
    bad_context = _get(catalog_gateway, "/v1/models?min_context=lots")
    assert bad_context.status == 400
    assert bad_context.json()["error"]["param"] == "min_context"
    anthropic_shape = _get(
        catalog_gateway, "/v1/models?limit=0", headers={"anthropic-version": "2023-06-01"}
    )
    assert anthropic_shape.status == 400
    assert anthropic_shape.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_sdk_pages_through_the_filtered_listing(
    catalog_gateway: GatewayProcess,
) -> None:
    expected = _ids(_get(catalog_gateway, "/v1/models?capability=chat"))
    with anthropic.Anthropic(base_url=catalog_gateway.base_url, api_key=NOT_A_KEY) as client:
        pages = client.models.list(limit=7, extra_query={"capability": "chat"})
        listed = [model.id for model in pages]  # follows after_id to the last page
    assert len(pages.data) == 7 and pages.has_more
    assert listed == expected
    first = pages.data[0]
    assert first.created_at.year >= 2020 and first.max_input_tokens is not None


def test_providers(catalog_gateway: GatewayProcess) -> None:
    answer = _get(catalog_gateway, "/api/public/providers")
    assert answer.status == 200
    body = answer.json()
    assert body["success"] is True
    providers = {p["provider_id"]: p for p in body["data"]["providers"]}
    assert list(providers) == ["openai", "anthropic", "local"]
    assert providers["openai"]["display_name"] == "OpenAI"
    assert providers["local"] == {
        "provider_id": "local",
        "model_count": 1,
        "display_name": "local",
        "icon_url": None,
    }
    listed = _ids(_get(catalog_gateway, "/v1/models"))
    for provider_id, provider in providers.items():
        assert provider["model_count"] == sum(m.startswith(provider_id + "/") for m in listed)
    assert body["data"]["unprefixed_model_count"] == 0


def test_model_card_by_alias(catalog_gateway: GatewayProcess) -> None:
    answer = _get(catalog_gateway, "/api/public/models/anthropic/claude-sonnet-4.6")
    assert answer.status == 200
    card = answer.json()["data"]
    assert (card["id"], card["provider_slug"], card["slug"]) == (
        "anthropic/claude-sonnet-4-6",
        "anthropic",
        "claude-sonnet-4-6",
    )
    assert card["pricing"]["currency"] == "USD"
    assert card["pricing"]["input_per_million_usd"] == "3"
    assert card["supported_endpoints"] == [
        {"type": "openai", "method": "POST", "path": "/v1/chat/completions"},
        {"type": "anthropic", "method": "POST", "path": "/v1/messages"},
    ]
    assert card["uptime"] == {
        "percent_24h": None,
        "window_hours": 24,
        "has_data": False,
        "requests": 0,
    }
    assert card["latency"]["source"] == "observed"


def _completion(output_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-card",
        "object": "chat.completion",
        "created": 1,
        "model": "llama3.2",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": output_tokens,
            "total_tokens": 5 + output_tokens,
        },
    }


def _after(delay: float, handler: Handler) -> Handler:
    async def slow(request: web.Request, seen: Received) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return await handler(request, seen)

    return slow


def _card(gateway: GatewayProcess, path: str, requests: int) -> dict[str, Any]:
    """The card once the gateway counted ``requests`` requests (records settle after replies)."""
    deadline = time.monotonic() + 5
    while True:
        card: dict[str, Any] = _get(gateway, path).json()["data"]
        if card["uptime"]["requests"] >= requests or time.monotonic() > deadline:
            return card
        time.sleep(0.02)


def test_model_card_shows_what_the_gateway_observed(
    catalog_gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    for _ in range(3):
        upstream.expect(_after(0.03, json_answer(_completion(60))))
    upstream.expect(json_answer({"error": {"message": "boom", "type": "server_error"}}, 500))
    with openai.OpenAI(
        base_url=catalog_gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
    ) as client:
        for _ in range(3):
            client.chat.completions.create(
                model="local/llama3.2", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="local/llama3.2", messages=[{"role": "user", "content": "hi"}]
            )
    card = _card(catalog_gateway, "/api/public/models/local/llama3.2", 4)
    assert card["uptime"] == {
        "percent_24h": 75.0,
        "window_hours": 24,
        "has_data": True,
        "requests": 4,
    }
    latency = card["latency"]
    assert latency["requests"] == 4
    assert latency["error_rate_percent"] == 25.0
    assert 29 <= latency["p50_ms"] <= latency["p95_ms"] < 5000
    assert 0 < latency["output_tok_per_sec"] <= 60 / 0.029
    assert latency["window_days"] == 1 and latency["source"] == "observed"
    assert card["pricing"]["input_per_million_usd"] == "0.15"
    assert card["pricing"]["cache_write_per_million_usd"] is None
