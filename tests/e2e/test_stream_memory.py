"""A stream costs the gateway the same memory however long it is: events are relayed as they
arrive, passed through or translated, never gathered into the whole answer.

Each test sends a stream of 8 MiB, then one of 32 MiB, through its own gateway process and
reads the process's peak resident memory (``VmHWM``) from ``/proc`` after each: buffering the
answer, or any state that grows with it, would raise the peak by about the 24 MiB more that
the second stream carries. (The first large stream raises it by about 5 MiB whatever its
length, 8 or 64 MiB alike: buffers sized by the upstream's writes, not by the answer.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from tests.conftest import ADMIN_KEY, REPLAY_ENV, replay_config
from tests.support.gateway import GatewayProcess
from tests.support.replay import (
    Handler,
    Received,
    ReplayUpstream,
    anthropic_event,
    anthropic_message_start,
    openai_chunk,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

TEXT = "stream " * 100  # 700 characters a delta
EVENTS = 48_000  # about 32 MiB of deltas upstream
BATCH = 500  # events per write: the fake upstream never holds the whole answer either
ALLOWED_RISE_KIB = 4 * 1024  # a sixth of what the long stream adds


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _long_stream(head: list[bytes], delta: bytes, tail: list[bytes], count: int) -> Handler:
    """An SSE answer of ``head``, ``count`` times ``delta``, then ``tail``, written in batches."""

    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(head))
        for start in range(0, count, BATCH):
            await response.write(delta * min(BATCH, count - start))
        await response.write(b"".join(tail))
        await response.write_eof()
        return response

    return handler


def _openai_answer(count: int) -> Handler:
    usage = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": count, "total_tokens": 9 + count},
    }
    return _long_stream(
        [openai_chunk({"role": "assistant", "content": ""})],
        openai_chunk({"content": TEXT}),
        [
            openai_chunk({}, "stop"),
            b"data: " + orjson.dumps(usage) + b"\n\n",
            b"data: [DONE]\n\n",
        ],
        count,
    )


def _anthropic_answer(count: int) -> Handler:
    start = anthropic_message_start()
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": TEXT},
    }
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": count},
    }
    return _long_stream(
        [anthropic_event("message_start", start), anthropic_event("content_block_start", block)],
        anthropic_event("content_block_delta", delta),
        [
            anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            anthropic_event("message_delta", end),
            anthropic_event("message_stop", {"type": "message_stop"}),
        ],
        count,
    )


@pytest.fixture
def own_gateway(upstream: ReplayUpstream, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of its own, so that no other test's traffic has raised its peak."""
    process = GatewayProcess(tmp_path, replay_config(upstream), env=REPLAY_ENV)
    process.start()
    yield process
    process.stop()


def _stream_text(gateway: GatewayProcess, model: str) -> tuple[int, int, int | None]:
    """Stream one answer with the OpenAI SDK: deltas with text, characters, completion tokens."""
    deltas = characters = 0
    completion: int | None = None
    with (
        openai.OpenAI(
            base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
        ) as client,
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Write at length."}],
            max_tokens=64_000,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream,
    ):
        for chunk in stream:
            if chunk.usage is not None:
                completion = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    deltas += 1
                    characters += len(choice.delta.content)
    return deltas, characters, completion


def _stream_messages(gateway: GatewayProcess, model: str) -> tuple[int, int, int | None]:
    """The same with the Anthropic SDK (``/v1/messages``)."""
    deltas = characters = 0
    completion: int | None = None
    with (
        anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0) as client,
        client.messages.create(
            model=model,
            max_tokens=64_000,
            messages=[{"role": "user", "content": "Write at length."}],
            stream=True,
        ) as stream,
    ):
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas += 1
                characters += len(event.delta.text)
            elif event.type == "message_delta":
                completion = event.usage.output_tokens
    return deltas, characters, completion


Client = Callable[[GatewayProcess, str], tuple[int, int, int | None]]


@pytest.mark.parametrize(
    ("client", "model", "answer"),
    [
        (_stream_text, "replay-openai/gpt-4o-mini", _openai_answer),  # passed through
        (_stream_messages, "replay-anthropic/claude-x", _anthropic_answer),  # passed through
        (_stream_text, "replay-anthropic/claude-x", _anthropic_answer),  # each event translated
        (_stream_messages, "replay-openai/gpt-4o-mini", _openai_answer),  # each event translated
    ],
    ids=[
        "openai",
        "anthropic",
        "openai-client-anthropic-upstream",
        "anthropic-client-openai-upstream",
    ],
)
def test_a_longer_stream_does_not_raise_the_gateways_peak_memory(
    own_gateway: GatewayProcess,
    upstream: ReplayUpstream,
    client: Client,
    model: str,
    answer: Callable[[int], Handler],
) -> None:
    upstream.expect(answer(200))  # the same path once, short: imports and caches warm
    assert client(own_gateway, model)[0] == 200
    upstream.expect(answer(EVENTS // 4))
    assert client(own_gateway, model)[0] == EVENTS // 4
    peak = _status_kib(own_gateway.pid, "VmHWM")

    upstream.expect(answer(EVENTS))
    deltas, characters, completion = client(own_gateway, model)

    assert (deltas, characters, completion) == (EVENTS, EVENTS * len(TEXT), EVENTS)
    rise = _status_kib(own_gateway.pid, "VmHWM") - peak
    assert rise < ALLOWED_RISE_KIB, f"a 24 MiB longer stream raised the peak by {rise} KiB"
