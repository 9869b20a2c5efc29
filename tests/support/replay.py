"""A fake upstream on 127.0.0.1 that answers with recorded responses or scripted faults.

Tests queue what the next upstream request should get (``expect``); the server checks the
request it receives, serves the answer, and remembers what it saw, including closes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support.recordings import Interaction
from tests.support.server import BackgroundServer

Handler = Callable[[web.Request, "Received"], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    """What the upstream saw for one request."""

    path: str
    headers: dict[str, str]
    body: Any
    client_closed: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class ReplayUpstream(BackgroundServer):
    """An aiohttp server in a background thread; ``expect`` queues the next answers."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        self._queue: deque[Handler] = deque()

    def add_routes(self, app: web.Application) -> None:
        """Every path, every method."""
        app.router.add_route("*", "/{tail:.*}", self._handle)

    def expect(self, handler: Handler) -> None:
        """Queue the handler that answers the next upstream request."""
        with self._lock:
            self._queue.append(handler)

    def reset(self) -> None:
        """Forget queued answers and what was received."""
        with self._lock:
            self._queue.clear()
            self.received.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        seen = Received(request.path, dict(request.headers), body)
        with self._lock:
            self.received.append(seen)
            handler = self._queue.popleft() if self._queue else None
        if handler is None:
            return web.json_response({"error": {"message": "replay: nothing expected"}}, status=599)
        try:
            return await handler(request, seen)
        finally:
            seen.finished.set()


def replay(interaction: Interaction, chunk_size: int = 37) -> Handler:
    """Answer with the recorded response; streams are cut into small pieces to test framing."""

    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        if interaction.response_text is not None and interaction.is_stream:
            response = web.StreamResponse(
                status=interaction.status, headers={"content-type": "text/event-stream"}
            )
            await response.prepare(request)
            data = interaction.response_text.encode()
            for start in range(0, len(data), chunk_size):
                await response.write(data[start : start + chunk_size])
            await response.write_eof()
            return response
        headers = {}
        for name in ("retry-after",):
            value = interaction.response_headers.get(name)
            if value:
                headers[name] = value[0]
        if interaction.response_json is not None:
            return web.Response(
                status=interaction.status,
                body=orjson.dumps(interaction.response_json),
                content_type="application/json",
                headers=headers,
            )
        return web.Response(status=interaction.status, text=interaction.response_text or "")

    return handler


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    """Answer with a JSON body."""

    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=headers or {},
        )

    return handler


def sse_answer(events: list[bytes], then: str = "end", gap: float = 0.0) -> Handler:
    """Send SSE events; then ``end`` cleanly, ``reset`` the connection, or ``hang`` forever.

    While hanging it notices the client's close and sets ``Received.client_closed``.
    """

    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
            if gap:
                await asyncio.sleep(gap)
        if then == "reset":
            assert request.transport is not None
            request.transport.abort()
            return response
        if then == "hang":
            await wait_for_close(request, seen)
            return response
        await response.write_eof()
        return response

    return handler


def stall_before_headers() -> Handler:
    """Never answer; notice when the gateway closes the connection."""

    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        await wait_for_close(request, seen)
        return web.Response(status=500)

    return handler


async def wait_for_close(request: web.Request, seen: Received, limit: float = 30.0) -> None:
    """Poll the connection until the peer closes it (or ``limit`` seconds pass)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            seen.client_closed.set()
            return
        await asyncio.sleep(0.02)


def anthropic_message_start(input_tokens: int = 9) -> dict[str, Any]:
    """A ``message_start`` event's data: an empty assistant message with its input usage."""
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }


def anthropic_event(name: str, data: dict[str, Any]) -> bytes:
    """One named Anthropic stream event."""
    return f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    """One chat-completion chunk event."""
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_stream(texts: list[str], usage: tuple[int, int] | None = None) -> list[bytes]:
    """A complete chat-completion stream: text deltas, the finish chunk, usage, ``[DONE]``."""
    events = [openai_chunk({"content": text}) for text in texts]
    events.append(openai_chunk({}, "stop"))
    if usage is not None:
        prompt, completion = usage
        chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events
