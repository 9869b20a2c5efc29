"""The official SDKs against the real gateway, streaming and not."""

from __future__ import annotations

import anthropic
import openai

from tests.conftest import ADMIN_KEY, ANTHROPIC_UPSTREAM_KEY, OPENAI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.replay import ReplayUpstream, json_answer, openai_stream, sse_answer

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris."}}
    ],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}


def test_openai_sdk_non_stream(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(json_answer(CHAT))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    raw = client.chat.completions.with_raw_response.create(
        model="replay-openai/gpt-4o-mini", messages=[{"role": "user", "content": "Capital?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris."
    assert completion.usage is not None and completion.usage.total_tokens == 14
    assert raw.headers["x-orca-resolved-model"] == "replay-openai/gpt-4o-mini"
    assert raw.headers["x-orca-request-id"].startswith("req_")
    seen = upstream.received[-1]
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.headers["Authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"


def test_openai_sdk_stream(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(sse_answer(openai_stream(["Hi"], usage=(3, 1))))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    chunks = list(
        client.chat.completions.create(
            model="replay-openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
    )
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hi", None]
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert upstream.received[-1].body["stream_options"] == {"include_usage": True}


def test_anthropic_sdk_non_stream(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(
        json_answer(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "Bonjour"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 2,
                    "cache_read_input_tokens": 10,
                    "cache_creation_input_tokens": 0,
                },
            }
        )
    )
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    message = client.messages.create(
        model="replay-anthropic/claude-x",
        max_tokens=20,
        messages=[{"role": "user", "content": "Hello"}],
        extra_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "beta-a,beta-b"},
    )
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour"
    seen = upstream.received[-1]
    assert seen.headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"  # the client's, forwarded
    assert seen.headers["anthropic-beta"] == "beta-a,beta-b"
    assert ADMIN_KEY not in str(seen.headers)  # the client's gateway key never goes upstream
