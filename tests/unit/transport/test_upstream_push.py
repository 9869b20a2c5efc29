"""``UpstreamResponse.push``: the body handed to a sink from the connection's read callback,
with reading paused while the sink is full, and the connection's failures raised."""

from __future__ import annotations

import asyncio

import pytest

from orcarouter.errors import UpstreamTimeout
from orcarouter.transport.client import HIGH_WATER, UpstreamClient
from tests.unit.transport.test_upstream_client import (
    SSE_EVENTS,
    WebUpstream,
    body_of,
    client,
    origin,
    post,
)

__all__ = ["client", "origin"]  # the fixtures, shared with the client's own tests


async def test_each_read_goes_to_the_sink_from_the_read_callback(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    response = await client.send(post(origin.url + "/sse"))
    assert await response.next_chunk() == SSE_EVENTS[0]  # the origin waits for the go-on
    received: list[bytes] = []
    in_a_task: list[bool] = []

    def sink(chunk: bytes) -> asyncio.Future[None] | None:
        received.append(chunk)
        in_a_task.append(asyncio.current_task() is not None)
        return None

    origin.go_on.set()
    async with asyncio.timeout(3):
        await response.push(sink)
    assert b"".join(received) == b"".join(SSE_EVENTS[1:])
    assert not any(in_a_task)  # every read was handed over by the protocol's callback
    assert response.at_end
    response.release()
    await body_of(await client.send(post(origin.url + "/echo")))
    assert len(set(origin.peers)) == 1  # the connection went back to the pool and was reused


async def test_a_full_sink_stops_the_reading_until_it_is_ready(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    size = 8 * 1024 * 1024
    response = await client.send(post(origin.url + "/big?size=" + str(size)))
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    received: list[bytes] = []

    def sink(chunk: bytes) -> asyncio.Future[None] | None:
        received.append(chunk)
        return ready if not ready.done() else None

    pushing = asyncio.create_task(response.push(sink))
    await asyncio.sleep(0.3)  # the origin would have sent all of it if nobody held it back
    taken = sum(map(len, received))
    assert 0 < taken <= 2 * HIGH_WATER
    assert not pushing.done()
    ready.set_result(None)
    async with asyncio.timeout(5):
        await pushing
    assert b"".join(received) == bytes(i % 251 for i in range(size))
    response.release()
    await body_of(await client.send(post(origin.url + "/echo")))  # read again once in the pool
    assert len(set(origin.peers)) == 1


async def test_the_connections_failure_is_raised(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    response = await client.send(post(origin.url + "/hang", idle=0.3))
    received: list[bytes] = []

    def sink(chunk: bytes) -> asyncio.Future[None] | None:
        received.append(chunk)
        return None

    async with asyncio.timeout(3):
        with pytest.raises(UpstreamTimeout):
            await response.push(sink)
    assert b"".join(received) == SSE_EVENTS[0]


async def test_a_body_that_ended_while_the_sink_was_full_leaves_the_connection_readable(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # a client gone
    response = await client.send(post(origin.url + "/echo"))
    received: list[bytes] = []

    def sink(chunk: bytes) -> asyncio.Future[None] | None:
        received.append(chunk)
        return never

    async with asyncio.timeout(3):
        await response.push(sink)
    assert b"/echo" in b"".join(received)
    response.release()
    async with asyncio.timeout(3):  # the pooled connection answers the next request
        await body_of(await client.send(post(origin.url + "/echo")))
    assert len(set(origin.peers)) == 1
