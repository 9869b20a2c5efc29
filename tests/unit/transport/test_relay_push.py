"""The relay after its first event: the rest of a stream written from the upstream's read
callback through the server's direct writer, and a failure met there ending the stream with
one error event, as the relay does everywhere else."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from orcarouter.api.asgi import Message
from orcarouter.api.dialects import OPENAI_CHAT
from orcarouter.api.relay import Exchange, relay_stream
from orcarouter.errors import UpstreamProtocolError
from orcarouter.metering.usage import UsageRecord
from orcarouter.providers.base import ObservedStream
from orcarouter.transport.client import UpstreamClient
from orcarouter.wire.sse import SSEEvent
from tests.unit.transport.test_upstream_client import (
    SSE_EVENTS,
    WebUpstream,
    client,
    origin,
    post,
)

__all__ = ["client", "origin"]  # the fixtures, shared with the client's own tests


class Echo(ObservedStream):
    """Relays every event as it came; fails on the event ``data: {fail_at}``."""

    __slots__ = ("fail_at",)

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at

    def observe(self, event: SSEEvent) -> bytes:
        if event.data == str(self.fail_at):
            raise UpstreamProtocolError("an event the relay cannot take")
        if event.data == str(len(SSE_EVENTS) - 1):
            self.finished = True
        return event.raw


class Client:
    """The server's side as the relay sees it: ASGI messages, and the direct writer. The
    origin sends the rest of its stream once the first event has reached this client."""

    def __init__(self, origin: WebUpstream) -> None:
        self.origin = origin
        self.messages: list[Message] = []
        self.written: list[tuple[bytes, bool]] = []  # each part, and whether a task wrote it

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body":
            self.origin.go_on.set()

    def write_body(self, data: bytes) -> asyncio.Future[None] | None:
        self.written.append((data, asyncio.current_task() is not None))
        return None


async def _relay(
    origin: WebUpstream,
    client: UpstreamClient,
    observer: Echo,
    path: str = "/sse",
    *,
    push: bool = True,
) -> tuple[Client, UsageRecord]:
    response = await client.send(post(origin.url + path))
    seen = Client(origin)
    write_body = seen.write_body if push else None
    exchange = Exchange("req_1", time.perf_counter(), OPENAI_CHAT, write_body=write_body)
    record = UsageRecord("req_1", datetime.now(UTC), None, None, "openai.chat", stream=True)
    async with asyncio.timeout(3):
        await relay_stream(response, observer, exchange, record, seen.send)
    return seen, record


async def test_after_the_first_event_every_read_is_written_from_the_read_callback(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    seen, record = await _relay(origin, client, Echo())
    start, first = seen.messages[:2]
    assert start["type"] == "http.response.start"
    assert first["body"] == SSE_EVENTS[0]  # the first event, through the ASGI messages
    relayed = b"".join(data for data, _ in seen.written)
    assert relayed == b"".join(SSE_EVENTS[1:-1])  # whatever the reads were, every byte in order
    assert seen.written and not any(by_task for _, by_task in seen.written)
    end = {"type": "http.response.body", "body": SSE_EVENTS[-1], "more_body": False}
    assert seen.messages[-1] == end  # the last event, with the end of the response
    assert record.outcome == "ok"


async def test_a_failure_in_the_read_callback_ends_the_stream_with_one_error_event(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    seen, record = await _relay(origin, client, Echo(fail_at=5))
    relayed = b"".join(data for data, _ in seen.written)
    assert b"data: 5\n\n" not in relayed and b"data: 6\n\n" not in relayed
    last = seen.messages[-1]
    assert last["more_body"] is False
    assert b"an event the relay cannot take" in last["body"]
    assert (record.outcome, record.error_type) == ("incomplete", UpstreamProtocolError.code)


@pytest.mark.parametrize("push", [True, False], ids=["pushed", "task loop"])
@pytest.mark.parametrize("path", ["/sse-late-end", "/sse-cut-end"], ids=["late end", "cut"])
async def test_the_last_event_goes_out_with_the_end_of_the_response(
    origin: WebUpstream, client: UpstreamClient, push: bool, path: str
) -> None:
    """A client that has the last event may hang up at once: before the end of the response,
    that cancelled the request, and its complete answer was recorded as cancelled. An upstream
    that drops the connection after its last event has still sent the whole answer."""
    seen, record = await _relay(origin, client, Echo(), path, push=push)
    last_event = SSE_EVENTS[-1]
    assert not any(last_event in data for data, _ in seen.written)
    bodies = [m for m in seen.messages if m["type"] == "http.response.body"]
    assert all(last_event not in m["body"] for m in bodies[:-1])
    assert bodies[-1]["body"].endswith(last_event) and bodies[-1]["more_body"] is False
    written = b"".join(data for data, _ in seen.written)
    relayed = bodies[0]["body"] + written + b"".join(m["body"] for m in bodies[1:])
    assert relayed == b"".join(SSE_EVENTS)
    assert record.outcome == "ok"
