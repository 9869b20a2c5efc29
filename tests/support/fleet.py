"""Several fake upstreams on one 127.0.0.1 server, each behaving as a test sets it.

Each upstream lives under its own path prefix (``/{name}/v1/...``) and answers every request
with its current behaviour: ``ok`` (a valid answer in its protocol, streamed or not),
``throttle`` (429 with ``Retry-After``), ``fail`` (500), ``stall`` (no headers, ever),
``overloaded`` (a 200 stream whose first event is an overloaded error, or a 529 whole
answer), ``break`` (a stream cut after its first event), ``slow`` (``ok`` after 0.7 s),
``hold`` (``ok`` after 2.5 s).
Hits are counted per upstream.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from tests.support.replay import anthropic_event, openai_stream
from tests.support.server import BackgroundServer, end_stream

OPENAI_COMPLETION = {
    "id": "chatcmpl-fleet",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


def anthropic_message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_fleet",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }


def anthropic_stream(text: str) -> list[bytes]:
    start = anthropic_message("")
    start["content"], start["stop_reason"] = [], None
    return [
        anthropic_event("message_start", {"type": "message_start", "message": start}),
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
                "delta": {"type": "text_delta", "text": text},
            },
        ),
        anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        anthropic_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 1},
            },
        ),
        anthropic_event("message_stop", {"type": "message_stop"}),
    ]


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


class Fleet(BackgroundServer):
    """The server; ``set(name, behaviour)`` changes an upstream at any time."""

    def __init__(self, retry_after: int = 2) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.hits: Counter[str] = Counter()
        self._behaviour: dict[str, str] = {}

    def add_routes(self, app: web.Application) -> None:
        """``/{name}/v1/…``: one upstream per name."""
        app.router.add_post("/{name}/v1/{tail:.*}", self._handle)

    def url(self, name: str) -> str:
        """The base URL of one upstream (``.../{name}/v1``)."""
        return f"{self.base_url}/{name}/v1"

    def set(self, name: str, behaviour: str) -> None:
        with self._lock:
            self._behaviour[name] = behaviour

    def reset(self) -> None:
        with self._lock:
            self._behaviour.clear()
            self.hits.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        anthropic = request.match_info["tail"].startswith("messages")
        body = orjson.loads(await request.read())
        with self._lock:
            self.hits[name] += 1
            behaviour = self._behaviour.get(name, "ok")
        stream = body.get("stream") is True
        if behaviour == "throttle":
            error = {"error": {"message": "slow down", "type": "rate_limit_error"}}
            headers = {"retry-after": str(self.retry_after)}
            return web.json_response(error, status=429, headers=headers)
        if behaviour == "fail":
            return web.json_response(
                {"error": {"message": "boom", "type": "server_error"}}, status=500
            )
        if behaviour == "stall":  # until the gateway gives up and closes (30 s at most)
            for _ in range(1500):
                if request.transport is None or request.transport.is_closing():
                    break
                await asyncio.sleep(0.02)
            return web.Response(status=500)
        if behaviour == "overloaded":
            if not stream:
                return web.json_response(OVERLOADED, status=529)
            return await _sse(request, [anthropic_event("error", OVERLOADED)])
        if behaviour == "slow":
            await asyncio.sleep(0.7)
        if behaviour == "hold":  # long enough for a burst of requests to be in flight together
            await asyncio.sleep(2.5)
        text = f"from {name}"
        if not stream:
            if anthropic:
                return web.json_response(anthropic_message(text))
            return web.json_response({**OPENAI_COMPLETION, "model": name})
        events = anthropic_stream(text) if anthropic else openai_stream([text], usage=(5, 1))
        if behaviour == "break":
            return await _sse(request, events[:2], cut=True)
        return await _sse(request, events)


async def _sse(request: web.Request, events: list[bytes], cut: bool = False) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
    return await end_stream(request, response, cut=cut)
