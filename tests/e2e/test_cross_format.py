"""Any client format reaches any provider: OpenAI clients on Anthropic models and back."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.replay import (
    ReplayUpstream,
    anthropic_event,
    json_answer,
    openai_stream,
    sse_answer,
)

CLAUDE_MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-x-20260101",
    "content": [
        {"type": "thinking", "thinking": "Paris is the capital.", "signature": "sig-abc"},
        {"type": "text", "text": "Let me check the weather."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 10,
        "output_tokens": 30,
    },
}
TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _claude_stream() -> list[bytes]:
    return [
        anthropic_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **CLAUDE_MESSAGE,
                    "content": [],
                    "stop_reason": None,
                    "usage": {
                        "input_tokens": 20,
                        "cache_read_input_tokens": 100,
                        "cache_creation_input_tokens": 10,
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
        anthropic_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Checking"},
            },
        ),
        anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        anthropic_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {},
                },
            },
        ),
        anthropic_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
            },
        ),
        anthropic_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
            },
        ),
        anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 1}),
        anthropic_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 30},
            },
        ),
        anthropic_event("message_stop", {"type": "message_stop"}),
    ]


def test_openai_client_to_anthropic_model(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer(CLAUDE_MESSAGE))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    raw = client.chat.completions.with_raw_response.create(
        model="replay-anthropic/claude-x",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        tools=TOOLS,
        max_tokens=300,
        presence_penalty=0.5,
    )
    completion = raw.parse()
    sent = upstream.received[-1]
    assert sent.path == "/anthropic/v1/messages"
    assert sent.body["system"] == "Be brief." or sent.body["system"][0]["text"] == "Be brief."
    assert sent.body["max_tokens"] == 300
    assert sent.body["tools"][0]["name"] == "get_weather"
    assert sent.body["tools"][0]["input_schema"]["required"] == ["city"]
    assert "presence_penalty" not in sent.body
    assert raw.headers["x-orca-dropped-params"] == "presence_penalty"
    message = completion.choices[0].message
    assert message.content == "Let me check the weather."
    assert completion.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls
    assert calls is not None and calls[0].type == "function"
    assert orjson.loads(calls[0].function.arguments) == {"city": "Paris"}
    extra = message.model_extra or {}
    assert extra["reasoning_content"] == "Paris is the capital."
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (130, 30)
    record = gateway.usage_record(raw.headers["x-orca-request-id"])
    assert (record["prompt_tokens"], record["cache_read_tokens"]) == (130, 100)


def test_openai_client_streams_from_anthropic_model(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(sse_answer(_claude_stream()))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    with client.chat.completions.stream(
        model="replay-anthropic/claude-x",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=TOOLS,
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Checking"
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert orjson.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 160
    assert upstream.received[-1].body["max_tokens"] > 0  # supplied: Anthropic requires it


def test_anthropic_client_to_openai_model(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(sse_answer(openai_stream(["Bon", "jour"], usage=(11, 4))))
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    with client.messages.stream(
        model="replay-openai/gpt-x",
        max_tokens=64,
        system="Answer in French.",
        messages=[{"role": "user", "content": "Hello"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Bonjour"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 4)
    sent = upstream.received[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert sent["stream_options"] == {"include_usage": True}


def test_shape_changing_parameter_is_refused_unless_dropped(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    call: dict[str, Any] = {
        "model": "replay-anthropic/claude-x",
        "max_tokens": 10,
        "logprobs": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**call)
    assert "logprobs" in caught.value.message and caught.value.body["param"] == "logprobs"  # type: ignore[index]
    upstream.expect(json_answer(CLAUDE_MESSAGE))
    raw = client.chat.completions.with_raw_response.create(
        **call,
        extra_body={"drop_params": True},
    )
    assert "logprobs" in raw.headers["x-orca-dropped-params"]
    assert "logprobs" not in upstream.received[-1].body


def test_anthropic_overloaded_reaches_openai_clients_as_503(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(
        json_answer(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            status=529,
        )
    )
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="replay-anthropic/claude-x", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 503
    body = caught.value.response.json()["error"]
    assert (body["message"], body["code"]) == ("Overloaded", "overloaded_error")


def test_a_foreign_signature_replayed_to_anthropic_is_dropped_not_sent(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    """A Gemini-signed thinking block that an Anthropic client got (wrapped) and sends back to
    an Anthropic model never reaches Anthropic, which would refuse the whole request."""
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1},
    }
    upstream.expect(json_answer(answer))
    own = {"type": "thinking", "thinking": "mine", "signature": "EqQBCkYIBxgCKkA"}
    foreign = {
        "type": "thinking",
        "thinking": "theirs",
        "signature": "orcarouter:google-gemini-v1:CiQBVKhc7vVi",
    }
    history: Any = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [foreign, {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "again"},
    ]
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0) as c:
        message = c.messages.create(
            model="replay-anthropic/claude-sonnet-4-5", max_tokens=100, messages=history
        )
    assert message.content[0].type == "text"
    sent = upstream.received[-1].body
    blocks = sent["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["text"]
    assert "orcarouter:" not in orjson.dumps(sent).decode()
    assert own["signature"] not in orjson.dumps(sent).decode()  # (never sent: not in the request)
