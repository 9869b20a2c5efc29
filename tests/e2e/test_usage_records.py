"""Every authenticated request leaves one usage record: served, failed and streamed alike."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.replay import (
    ReplayUpstream,
    anthropic_event,
    json_answer,
    openai_stream,
    sse_answer,
)


def _admin_key_id(gateway: GatewayProcess) -> str:
    rows = gateway.query("SELECT id FROM api_keys WHERE role = 'admin' AND status = 'active'")
    return str(rows[0]["id"])


def test_non_stream_record_has_tokens_and_cache(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(
        json_answer(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-2024-08-06",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "ok"},
                    }
                ],
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "total_tokens": 120,
                    "prompt_tokens_details": {"cached_tokens": 64},
                    "completion_tokens_details": {"reasoning_tokens": 8},
                },
            }
        )
    )
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    raw = client.chat.completions.with_raw_response.create(
        model="replay-openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    record = gateway.usage_record(raw.headers["x-orca-request-id"])
    assert record["key_id"] == _admin_key_id(gateway)
    assert record["workspace_id"] == "ws_default"
    assert record["endpoint"] == "openai.chat"
    assert (record["model_requested"], record["model_served"], record["provider_id"]) == (
        "replay-openai/gpt-4o",
        "replay-openai/gpt-4o",
        "replay-openai",
    )
    assert record["upstream_model"] == "gpt-4o-2024-08-06"
    assert (record["status_code"], record["outcome"], record["stream"]) == (200, "ok", 0)
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (
        100,
        20,
        120,
    )
    assert (record["cache_read_tokens"], record["reasoning_tokens"]) == (64, 8)
    assert record["latency_ms"] >= 0 and record["ttft_ms"] is None


def test_anthropic_stream_record_counts_cache_and_ttft(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(
        sse_answer(
            [
                anthropic_event(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": "m",
                            "type": "message",
                            "role": "assistant",
                            "model": "claude-x-1",
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {
                                "input_tokens": 10,
                                "cache_read_input_tokens": 200,
                                "cache_creation_input_tokens": 30,
                                "output_tokens": 1,
                            },
                        },
                    },
                ),
                anthropic_event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                anthropic_event("ping", {"type": "ping"}),
                anthropic_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "Hi"},
                    },
                ),
                anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
                anthropic_event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 12},
                    },
                ),
                anthropic_event("message_stop", {"type": "message_stop"}),
            ]
        )
    )
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    with client.messages.stream(
        model="replay-anthropic/claude-x",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        message = stream.get_final_message()
        request_id = stream.response.headers["x-orca-request-id"]
    assert message.content[0].type == "text" and message.content[0].text == "Hi"
    record = gateway.usage_record(request_id)
    assert (record["stream"], record["outcome"], record["endpoint"]) == (
        1,
        "ok",
        "anthropic.messages",
    )
    # Anthropic's input_tokens excludes the cache; the record counts all input tokens.
    assert (record["prompt_tokens"], record["cache_read_tokens"], record["cache_write_tokens"]) == (
        240,
        200,
        30,
    )
    assert (record["completion_tokens"], record["total_tokens"]) == (12, 252)
    assert record["ttft_ms"] is not None and record["ttft_ms"] <= record["latency_ms"]


def test_openai_stream_usage_is_recorded_even_when_not_forwarded(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(sse_answer(openai_stream(["a", "b"], usage=(7, 2))))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    response = client.chat.completions.with_raw_response.create(
        model="replay-openai/gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(response.parse())
    assert all(chunk.usage is None for chunk in chunks)
    record = gateway.usage_record(response.headers["x-orca-request-id"])
    assert (record["prompt_tokens"], record["completion_tokens"]) == (7, 2)


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        (b"{bad", 400, "invalid_json"),
        (orjson.dumps({"model": "nope/x", "messages": []}), 404, "model_not_found"),
        (orjson.dumps({"model": "dead/x", "messages": []}), 502, "upstream_unreachable"),
    ],
)
def test_failed_requests_are_recorded(
    gateway: GatewayProcess, body: bytes, status: int, error_type: str
) -> None:
    answer = request(
        gateway.base_url + "/v1/chat/completions",
        body,
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    assert answer.status == status
    record = gateway.usage_record(answer.headers["x-orca-request-id"])
    assert (record["status_code"], record["outcome"], record["error_type"]) == (
        status,
        "error",
        error_type,
    )


def test_upstream_error_is_recorded_with_its_type(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(
        json_answer(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            status=529,
        )
    )
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="replay-anthropic/c", max_tokens=5, messages=[])
    assert caught.value.status_code == 529
    record = gateway.usage_record(caught.value.response.headers["x-orca-request-id"])
    assert (record["status_code"], record["error_type"]) == (529, "overloaded_error")
