"""Rate limits per key and per workspace on the real gateway, through the official SDKs.

A refused request answers 429 in the client's envelope with ``Retry-After``, leaves a usage
record, and never reaches the upstream.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer
from tests.support.management import PASSWORD, Api
from tests.support.replay import ReplayUpstream, json_answer, openai_chunk, sse_answer

OK = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []}
CLAUDE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 1},
}
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
HI_CLAUDE: list[MessageParam] = [{"role": "user", "content": "hi"}]
_counter = itertools.count()


def _call(gateway: GatewayProcess, method: str, path: str, body: Any, token: str) -> Answer:
    return Api(gateway.base_url).call(method, path, body, token)


def _new_key(
    gateway: GatewayProcess, workspace: str = "ws_default", token: str = ADMIN_KEY, **extra: Any
) -> dict[str, Any]:
    answer = _call(
        gateway,
        "POST",
        f"/api/workspaces/{workspace}/keys",
        {"name": f"rate-{next(_counter)}", **extra},
        token,
    )
    assert answer.status == 201, answer.body
    created: dict[str, Any] = answer.json()
    return created


def _fresh_workspace(gateway: GatewayProcess) -> tuple[str, str]:
    """A new user with its own workspace (an admin key may register users): (id, token)."""
    api = Api(gateway.base_url)
    email = f"rate-limits-{next(_counter)}-{time.monotonic_ns()}@example.com"
    body = {"email": email, "password": PASSWORD, "workspace_name": "Rate limited"}
    made = api.call("POST", "/api/auth/register", body, ADMIN_KEY)
    assert made.status == 201, made.body
    login = api.login(email)
    assert login.status == 200, login.body
    return str(made.json()["workspace"]["id"]), str(login.json()["token"])


def _openai(gateway: GatewayProcess, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)


def test_requests_per_minute_refusal_is_an_openai_rate_limit_error(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    key = _new_key(gateway, rpm_limit=2)
    assert (key["rpm_limit"], key["tpm_limit"], key["concurrency_limit"]) == (2, None, None)
    client = _openai(gateway, key["secret"])
    remaining = []
    for _ in range(2):
        upstream.expect(json_answer(OK))
        raw = client.chat.completions.with_raw_response.create(
            model="replay-openai/rpm", messages=HI
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-tokens" not in raw.headers  # no token limit applies
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["1", "0"]
    before = len(upstream.received)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="replay-openai/rpm", messages=HI)
    assert len(upstream.received) == before  # refused before any upstream call
    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert (error.body["type"], error.body["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "requests per minute" in error.message
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 30  # one request comes back every 30 s
    assert headers["x-ratelimit-remaining-requests"] == "0"
    record = gateway.usage_record(headers["x-orca-request-id"])
    assert (record["status_code"], record["outcome"], record["error_type"]) == (
        429,
        "error",
        "rate_limited",
    )
    assert (record["key_id"], record["model_requested"]) == (key["id"], "replay-openai/rpm")
    assert record["provider_id"] is None


def test_anthropic_clients_get_their_own_rate_limit_envelope(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    key = _new_key(gateway, rpm_limit=1)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key["secret"], max_retries=0)
    upstream.expect(json_answer(CLAUDE))
    client.messages.create(model="replay-anthropic/claude-x", max_tokens=5, messages=HI_CLAUDE)
    before = len(upstream.received)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="replay-anthropic/claude-x", max_tokens=5, messages=HI_CLAUDE)
    assert len(upstream.received) == before
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }
    headers = caught.value.response.headers
    assert 55 <= int(headers["retry-after"]) <= 60
    record = gateway.usage_record(headers["x-orca-request-id"])
    assert (record["status_code"], record["error_type"], record["endpoint"]) == (
        429,
        "rate_limited",
        "anthropic.messages",
    )


def test_tokens_per_minute_count_the_actual_usage(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    key = _new_key(gateway, tpm_limit=50)
    client = _openai(gateway, key["secret"])
    usage = {"prompt_tokens": 300, "completion_tokens": 100, "total_tokens": 400}
    upstream.expect(json_answer({**OK, "usage": usage}))
    raw = client.chat.completions.with_raw_response.create(model="replay-openai/tpm", messages=HI)
    assert raw.headers["x-ratelimit-limit-tokens"] == "50"
    estimated = 50 - int(raw.headers["x-ratelimit-remaining-tokens"])
    assert 0 < estimated < 25  # a short prompt, estimated from its size
    assert "x-ratelimit-limit-requests" not in raw.headers
    before = len(upstream.received)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="replay-openai/tpm", messages=HI)
    assert len(upstream.received) == before
    assert "tokens per minute" in caught.value.message
    headers = caught.value.response.headers
    # The estimate alone would have left room; the 400 tokens used are owed for about 7 min.
    assert int(headers["retry-after"]) > 400
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    record = gateway.usage_record(headers["x-orca-request-id"])
    assert (record["status_code"], record["error_type"]) == (429, "rate_limited")


def test_a_held_stream_takes_the_only_concurrency_slot_until_it_ends(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    key = _new_key(gateway, concurrency_limit=1)
    client = _openai(gateway, key["secret"])
    upstream.expect(sse_answer([openai_chunk({"role": "assistant", "content": "Hi"})], "hang"))
    stream = client.chat.completions.create(model="replay-openai/held", messages=HI, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.content == "Hi"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="replay-openai/held", messages=HI)
    assert "concurrent requests" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "1"
    assert len(upstream.received) == 1  # only the stream reached the upstream
    stream.close()  # the client goes away: the gateway cancels and frees the slot
    assert upstream.received[0].client_closed.wait(5), "upstream never saw the close"
    upstream.expect(json_answer(OK))
    for _ in range(50):
        try:
            client.chat.completions.create(model="replay-openai/held", messages=HI)
            break
        except openai.RateLimitError:
            time.sleep(0.05)
    else:
        pytest.fail("the concurrency slot was never released")
    # A request that fails upstream frees its slot too.
    upstream.expect(json_answer({"error": {"message": "bad", "type": "invalid"}}, status=400))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="replay-openai/held", messages=HI)
    upstream.expect(json_answer(OK))
    client.chat.completions.create(model="replay-openai/held", messages=HI)


def test_a_workspace_limit_is_shared_by_all_its_keys(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    workspace, token = _fresh_workspace(gateway)
    path = f"/api/workspaces/{workspace}"
    changed = _call(gateway, "PATCH", path, {"rpm_limit": 2, "concurrency_limit": 10}, token)
    assert changed.status == 200, changed.body
    assert (changed.json()["rpm_limit"], changed.json()["concurrency_limit"]) == (2, 10)
    shown = _call(gateway, "GET", path, None, token).json()
    assert (shown["name"], shown["rpm_limit"], shown["tpm_limit"]) == ("Rate limited", 2, None)
    clients = [_openai(gateway, _new_key(gateway, workspace, token)["secret"]) for _ in range(2)]
    for client in clients:
        upstream.expect(json_answer(OK))
        raw = client.chat.completions.with_raw_response.create(
            model="replay-openai/ws", messages=HI
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
    before = len(upstream.received)
    for client in clients:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="replay-openai/ws", messages=HI)
        assert "workspace" in caught.value.message
    assert len(upstream.received) == before
    record = gateway.usage_record(caught.value.response.headers["x-orca-request-id"])
    assert (record["workspace_id"], record["error_type"]) == (workspace, "rate_limited")
    lifted = _call(gateway, "PATCH", path, {"rpm_limit": None}, token)
    assert lifted.status == 200 and lifted.json()["rpm_limit"] is None
    assert lifted.json()["concurrency_limit"] == 10  # untouched
    upstream.expect(json_answer(OK))
    clients[0].chat.completions.create(model="replay-openai/ws", messages=HI)
    bad = _call(gateway, "PATCH", path, {"tpm_limit": 0}, token)
    assert (bad.status, bad.json()["error"]["code"]) == (400, "invalid_request")


def test_a_limited_key_creates_only_keys_limited_as_tightly(gateway: GatewayProcess) -> None:
    limits: dict[str, Any] = {"rpm_limit": 10, "tpm_limit": 1000, "concurrency_limit": 2}
    parent = _new_key(gateway, role="developer", **limits)["secret"]
    keys = "/api/workspaces/ws_default/keys"
    for looser in (
        {"tpm_limit": 1000, "concurrency_limit": 2},  # no requests limit at all
        {**limits, "rpm_limit": 11},
        {**limits, "tpm_limit": 5000},
        {**limits, "concurrency_limit": None},
    ):
        answer = _call(gateway, "POST", keys, {"name": "child", **looser}, parent)
        assert answer.status == 403, (looser, answer.body)
        assert answer.json()["error"]["code"] == "grant_exceeded"
    child = _new_key(gateway, token=parent, rpm_limit=5, tpm_limit=1000, concurrency_limit=1)
    assert (child["rpm_limit"], child["tpm_limit"], child["concurrency_limit"]) == (5, 1000, 1)
    assert (
        _call(gateway, "PATCH", f"{keys}/{child['id']}", {"rpm_limit": None}, parent).status == 403
    )
    changed = _call(gateway, "PATCH", f"{keys}/{child['id']}", {"rpm_limit": 3}, parent)
    assert changed.status == 200 and changed.json()["rpm_limit"] == 3
    listed = _call(gateway, "GET", f"{keys}/{child['id']}", None, ADMIN_KEY).json()
    assert listed["rpm_limit"] == 3
    zero = _call(gateway, "POST", keys, {"name": "zero", "rpm_limit": 0}, ADMIN_KEY)
    assert zero.status == 400
