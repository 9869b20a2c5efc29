"""A key's own limits hold on the inference routes: its models, its addresses."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.replay import ReplayUpstream, json_answer

OK = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []}


def _new_key(gateway: GatewayProcess, **limits: object) -> str:
    answer = request(
        gateway.base_url + "/api/workspaces/ws_default/keys",
        orjson.dumps({"name": "limited", **limits}),
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    assert answer.status == 201, answer.body
    return str(answer.json()["secret"])


def test_key_may_only_use_its_models(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    secret = _new_key(
        gateway, model_limits_enabled=True, model_limits=["replay-openai/gpt-allowed*"]
    )
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
    upstream.expect(json_answer(OK))
    client.chat.completions.create(model="replay-openai/gpt-allowed-1", messages=[])
    before = len(upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="replay-openai/gpt-other", messages=[])
    assert "gpt-other" in caught.value.message
    assert len(upstream.received) == before  # refused before any upstream call
    record = gateway.usage_record(caught.value.response.headers["x-orca-request-id"])
    assert (record["status_code"], record["error_type"]) == (403, "model_not_allowed")


def test_switch_on_with_an_empty_list_allows_no_model(gateway: GatewayProcess) -> None:
    secret = _new_key(gateway, model_limits_enabled=True, model_limits=[])
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="replay-anthropic/c", max_tokens=5, messages=[])


def test_key_is_refused_from_an_address_outside_its_allow_list(gateway: GatewayProcess) -> None:
    secret = _new_key(gateway, allow_ips=["10.0.0.0/8", "fd00::/8"])
    answer = request(
        gateway.base_url + "/v1/chat/completions",
        b'{"model": "replay-openai/x", "messages": []}',
        {"authorization": f"Bearer {secret}", "content-type": "application/json"},
    )
    assert answer.status == 403
    assert answer.json()["error"]["code"] == "access_denied"
    allowed = _new_key(gateway, allow_ips=["127.0.0.0/8"])
    counted = anthropic.Anthropic(base_url=gateway.base_url, api_key=allowed).messages
    assert (
        counted.count_tokens(
            model="replay-openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
        ).input_tokens
        > 0
    )
