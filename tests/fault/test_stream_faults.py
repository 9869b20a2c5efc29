"""Disconnects, resets, stalls and upstream error events, in every window of a request.

Killing a client cancels the upstream request (the fake upstream sees the close) before the
first token, mid-stream and for non-stream calls; a failure after the first byte reaches the
client as one terminal error event in its dialect, never as a clean end.
"""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.replay import (
    ReplayUpstream,
    anthropic_event,
    anthropic_message_start,
    openai_chunk,
    sse_answer,
    stall_before_headers,
)

AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}


async def _abandon(gateway: GatewayProcess, model: str, stream: bool, read_first: bool) -> None:
    """Send a request, optionally read the first bytes, then drop the connection."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with aiohttp.ClientSession() as session:
        if read_first:
            async with session.post(
                gateway.base_url + "/v1/chat/completions", json=body, headers=AUTH
            ) as response:
                assert response.status == 200
                await response.content.readuntil(b"\n\n")
                response.close()
            return
        task = asyncio.ensure_future(
            session.post(gateway.base_url + "/v1/chat/completions", json=body, headers=AUTH)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _record_of(gateway: GatewayProcess, model: str) -> dict[str, object]:
    for _ in range(100):
        rows = gateway.query("SELECT * FROM usage_records WHERE model_requested = ?", (model,))
        if rows and rows[0]["outcome"] != "open":  # settled, not just stored before the call
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no usage record for {model}")


@pytest.mark.parametrize(
    ("window", "stream", "read_first"),
    [("before-first-token", True, False), ("mid-stream", True, True), ("non-stream", False, False)],
)
async def test_client_disconnect_cancels_upstream(
    gateway: GatewayProcess,
    upstream: ReplayUpstream,
    window: str,
    stream: bool,
    read_first: bool,
) -> None:
    if read_first:
        upstream.expect(sse_answer([openai_chunk({"role": "assistant", "content": "Hi"})], "hang"))
    else:
        upstream.expect(stall_before_headers())
    model = f"replay-openai/cancel-{window}"
    await _abandon(gateway, model, stream, read_first)
    for _ in range(100):
        if upstream.received:
            break
        await asyncio.sleep(0.05)
    seen = upstream.received[-1]
    assert await asyncio.to_thread(seen.client_closed.wait, 5), "upstream never saw the close"
    record = await _record_of(gateway, model)
    assert record["outcome"] == "client_cancelled"
    assert record["status_code"] == 499
    assert record["stream"] == int(stream)
    # Billed for what the upstream consumed: the prompt (estimated: OpenAI reports usage only
    # at the end) and, mid-stream, the token that passed.
    assert isinstance(record["prompt_tokens"], int) and record["prompt_tokens"] > 0
    assert record["completion_tokens"] == (1 if read_first else 0)


def test_openai_stream_reset_after_first_token_ends_with_error_event(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(sse_answer([openai_chunk({"role": "assistant", "content": "Hel"})], "reset"))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    got: list[str | None] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="replay-openai/reset",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            got.append(chunk.choices[0].delta.content)
    assert got == ["Hel"]
    assert "upstream" in caught.value.message


def test_anthropic_stream_idle_timeout_ends_with_error_event(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    start = anthropic_message_start()
    events = [anthropic_event("message_start", start)]
    upstream.expect(sse_answer(events, "hang"))
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        for _ in client.messages.create(
            model="replay-anthropic-fast/claude-x",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            pass
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]


def test_first_byte_timeout_is_504(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(stall_before_headers())
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="replay-fast/slow", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 504
    assert upstream.received[-1].client_closed.wait(5)


def test_stream_that_ends_early_is_not_a_clean_end(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(sse_answer([openai_chunk({"role": "assistant", "content": "par"})], "end"))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.APIError, match="ended before the response was complete"):
        list(
            client.chat.completions.create(
                model="replay-openai/cut",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
        )


def test_stream_with_no_event_is_a_502(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(sse_answer([], "end"))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="replay-openai/empty", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 502
