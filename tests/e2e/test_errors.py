"""Bad input and upstream failures get a clear error in the client's envelope and status."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from tests.conftest import ADMIN_KEY, MAX_BODY_BYTES, OPENAI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.replay import ReplayUpstream, json_answer

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
AUTH = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}


def _post(gateway: GatewayProcess, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    return request(gateway.base_url + path, body, headers)


def _assert_envelope(answer: Answer, path: str, status: int, anthropic_type: str) -> str:
    assert answer.status == status
    assert answer.headers["x-orca-request-id"].startswith("req_")
    body = answer.json()
    if path == MESSAGES:
        assert body["type"] == "error"
        assert body["error"]["type"] == anthropic_type
        return str(body["error"]["message"])
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return str(body["error"]["message"])


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"model": "x", "messages": [], "bad": "\xff\xfe"}', "not valid JSON"),
        (b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"messages": []}', "'model'"),
        (b'{"model": "replay-openai/x", "messages": "hi"}', "'messages'"),
        (b'{"model": "replay-openai/x", "messages": [], "stream": "yes"}', "'stream'"),
        (b'{"model": "replay-openai/x", "messages": [5]}', "array of objects"),
    ],
)
def test_invalid_body_is_400(
    gateway: GatewayProcess, path: str, body: bytes, fragment: str
) -> None:
    answer = _post(gateway, path, body, AUTH)
    message = _assert_envelope(answer, path, 400, "invalid_request_error")
    assert fragment in message


@pytest.mark.parametrize(
    ("path", "model", "field", "value"),
    [
        (CHAT, "replay-anthropic/claude-x", "temperature", "hot"),
        (CHAT, "replay-anthropic/claude-x", "stop", [1]),
        (CHAT, "replay-anthropic/claude-x", "top_k", 1.5),
        (CHAT, "replay-anthropic/claude-x", "user", 7),
        (CHAT, "replay-anthropic/claude-x", "max_tokens", "many"),
        (MESSAGES, "replay-openai/x", "temperature", "hot"),
        (MESSAGES, "replay-openai/x", "top_k", 2.5),
        (MESSAGES, "replay-openai/x", "stop_sequences", [1]),
    ],
)
def test_a_translated_field_of_the_wrong_type_is_400(
    gateway: GatewayProcess,
    upstream: ReplayUpstream,
    path: str,
    model: str,
    field: str,
    value: object,
) -> None:
    """The request is read to be translated for the other protocol: a field its own protocol
    types otherwise is named in the client's envelope, and no upstream is asked."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    answer = _post(gateway, path, orjson.dumps({**body, field: value}), AUTH)
    message = _assert_envelope(answer, path, 400, "invalid_request_error")
    assert f"'{field}'" in message
    if path == CHAT:
        assert answer.json()["error"]["param"] == field
    assert upstream.received == []


def test_the_openai_sdk_sees_a_mistyped_field_as_bad_request(gateway: GatewayProcess) -> None:
    oai = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model="replay-anthropic/claude-x",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"seed": "not a number"},
        )
    assert caught.value.body is not None
    assert "'seed' must be an integer" in str(caught.value)


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer sk-orca-not-a-real-key-000000000000000000000000000"},
        {"x-api-key": "sk-orca-not-a-real-key-000000000000000000000000000"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer ' OR '1'='1"},
        {"x-api-key": "sk-orca-' OR (SELECT 1) IS NOT NULL --"},
    ],
)
def test_missing_or_bad_key_is_401(
    gateway: GatewayProcess, path: str, headers: dict[str, str]
) -> None:
    body = orjson.dumps({"model": "replay-openai/x", "messages": []})
    answer = _post(gateway, path, body, {"content-type": "application/json", **headers})
    _assert_envelope(answer, path, 401, "authentication_error")


def test_sdks_see_authentication_errors(gateway: GatewayProcess) -> None:
    oai = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-orca-wrong" + "0" * 40)
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model="replay-openai/x", messages=[])
    ant = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-orca-wrong" + "0" * 40)
    with pytest.raises(anthropic.AuthenticationError):
        ant.messages.create(model="replay-anthropic/x", max_tokens=1, messages=[])


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
@pytest.mark.parametrize("model", ["nope/nothing", "no-such-model", "local/llama9"])
def test_unknown_model_is_404(gateway: GatewayProcess, path: str, model: str) -> None:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    message = _assert_envelope(_post(gateway, path, body, AUTH), path, 404, "not_found_error")
    assert model in message


def test_bare_alias_resolves_to_the_provider_serving_it(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer({"id": "x", "object": "chat.completion", "choices": []}))
    body = orjson.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]})
    answer = _post(gateway, CHAT, body, AUTH)
    assert answer.status == 200
    assert answer.headers["x-orca-resolved-model"] == "local/llama3.2"
    assert upstream.received[-1].path == "/local/v1/chat/completions"
    assert "Authorization" not in upstream.received[-1].headers  # keyless local provider


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_body_over_the_limit_is_413(gateway: GatewayProcess, path: str) -> None:
    filler = "x" * (MAX_BODY_BYTES + 1)
    body = orjson.dumps({"model": "replay-openai/x", "messages": [{"content": filler}]})
    _assert_envelope(_post(gateway, path, body, AUTH), path, 413, "request_too_large")


def test_upstream_429_keeps_status_type_and_retry_after(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    error = {
        "error": {
            "message": "Rate limit reached",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    upstream.expect(json_answer(error, status=429, headers={"retry-after": "7"}))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="replay-openai/gpt-x", messages=[])
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.json() == error


def test_upstream_error_outside_the_envelope_is_wrapped(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer({"detail": "bad gateway upstream"}, status=503))
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="replay-anthropic/c", max_tokens=5, messages=[])
    assert caught.value.status_code == 503
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "bad gateway upstream" in body["error"]["message"]


def test_upstream_echoing_its_key_is_redacted(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    echoed = {
        "error": {
            "message": f"Incorrect API key provided: {OPENAI_UPSTREAM_KEY}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    upstream.expect(json_answer(echoed, status=401))
    body = orjson.dumps({"model": "replay-openai/x", "messages": []})
    answer = _post(gateway, CHAT, body, AUTH)
    assert answer.status == 401
    assert OPENAI_UPSTREAM_KEY.encode() not in answer.body
    assert b"[redacted]" in answer.body


def test_unreachable_upstream_is_502(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="dead/gpt-x", messages=[])
    assert caught.value.status_code == 502
    assert caught.value.response.json()["error"]["code"] == "upstream_unreachable"


def test_unknown_route_and_wrong_method(gateway: GatewayProcess) -> None:
    answer = request(gateway.base_url + "/v1/nothing-here", method="GET")
    assert answer.status == 404 and answer.json()["error"]["code"] == "route_not_found"
    answer = request(gateway.base_url + CHAT, method="GET")
    assert answer.status == 405 and answer.json()["error"]["code"] == "method_not_allowed"
    assert answer.headers["x-orca-request-id"].startswith("req_")


def test_health_endpoints(gateway: GatewayProcess) -> None:
    assert request(gateway.base_url + "/healthz", method="GET").json() == {"status": "ok"}
    ready = request(gateway.base_url + "/readyz", method="GET")
    assert ready.status == 200
    assert ready.json()["status"] == "ready"
    checks = ready.json()["checks"]
    assert {name: checks[name] for name in ("database", "redis", "config")} == {
        "database": "ok",
        "redis": "not configured",
        "config": "ok",
    }
    assert checks["usage_journal"]["pending"] >= 0
