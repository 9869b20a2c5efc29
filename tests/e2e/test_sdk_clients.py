"""The SDKs' async clients and stream helpers, with tools, through the same-protocol path."""

from __future__ import annotations

import anthropic
import openai
import orjson

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.recordings import Interaction, load_family
from tests.support.replay import ReplayUpstream, openai_chunk, replay, sse_answer

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _tool_call_stream() -> list[bytes]:
    return [
        openai_chunk({"role": "assistant", "content": None}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
        openai_chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


async def test_async_openai_stream_helper_with_tool_call(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(sse_answer(_tool_call_stream()))
    client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY)
    async with client.chat.completions.stream(
        model="replay-openai/gpt-x",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[TOOL],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_completion()
    await client.close()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id == "call_a" and call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert upstream.received[-1].body["tools"] == [TOOL]


def _anthropic_recording(stream: bool, feature: str) -> Interaction:
    for interaction in load_family("anthropic-messages"):
        body = interaction.request_body
        if (
            interaction.status == 200
            and bool(body.get("stream")) == stream
            and feature in orjson.dumps(body).decode()
        ):
            return interaction
    raise AssertionError("no such recording")


async def test_async_anthropic_stream_helper_matches_recording(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    interaction = _anthropic_recording(stream=True, feature='"tools"')
    upstream.expect(replay(interaction, chunk_size=5))
    body = dict(interaction.request_body)
    body.pop("stream")
    model = body.pop("model")
    client = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    async with client.messages.stream(model=f"replay-anthropic/{model}", **body) as stream:
        final = await stream.get_final_message()
    await client.close()
    assert final.stop_reason is not None
    recorded_tools = [e for e in (interaction.response_text or "").split("\n") if '"tool_use"' in e]
    got_tools = [block for block in final.content if block.type == "tool_use"]
    assert len(got_tools) == len(recorded_tools)
    assert final.usage.output_tokens > 0


async def test_async_clients_non_stream(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    interaction = _anthropic_recording(stream=False, feature='"tools"')
    upstream.expect(replay(interaction))
    body = dict(interaction.request_body)
    model = body.pop("model")
    client = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    message = await client.messages.create(model=f"replay-anthropic/{model}", **body)
    await client.close()
    dumped = message.model_dump(warnings=False, exclude_unset=True)
    assert isinstance(interaction.response_json, dict)
    assert dumped["content"] == interaction.response_json["content"]
