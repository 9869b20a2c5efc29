"""The gateway's HTTP/1.1 protocol (``api.server``) under a real ``uvicorn.Server`` on 127.0.0.1:
responses, keep-alive, request bodies, framing and headers.

Wire-level behaviour is checked over raw sockets, normal use with aiohttp's client. Each test
starts its own server in the test's event loop with a small ASGI app
(``tests/unit/api/server_support.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import aiohttp
import pytest

from orcarouter.api.asgi import WRITE_EXTENSION, Receive, Scope, Send
from orcarouter.api.server import HIGH_WATER
from tests.unit.api.server_support import (
    TIMEOUT,
    App,
    assert_closed,
    connection,
    describe,
    get,
    read_all,
    read_response,
    respond,
    serving,
    stream_parts,
)

# --- responses and keep-alive --------------------------------------------------------------------


async def test_content_length_response_on_the_wire_and_the_connection_is_reused() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        local_port = writer.get_extra_info("sockname")[1]
        seen = []
        for path in ("/first?x=1", "/second"):
            writer.write(get(path))
            response = await read_response(reader)
            assert response.raw.startswith(b"HTTP/1.1 200 OK\r\n")
            assert response.header("content-length") == str(len(response.body))
            assert response.header("transfer-encoding") is None
            assert response.header("connection") is None
            seen.append(json.loads(response.body))
        assert [s["path"] for s in seen] == ["/first", "/second"]
        assert seen[0]["query"] == "x=1"
        assert [s["client"] for s in seen] == [["127.0.0.1", local_port]] * 2


async def test_aiohttp_client_reuses_the_keep_alive_connection() -> None:
    async with (
        serving(describe) as running,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session,
    ):
        ports = []
        for body in ("one", "two"):
            async with session.post(running.url + "/echo", data=body) as response:
                assert response.status == 200
                assert response.headers["Content-Length"] == str(response.content_length)
                seen = await response.json()
                assert seen["body"] == body
                ports.append(seen["client"][1])
        assert ports[0] == ports[1]


async def test_pipelined_requests_are_answered_in_order() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_all(receive)
        if scope["path"] == "/slow":
            await asyncio.sleep(0.1)  # the second request must still wait for this answer
        await respond(send, scope["path"].encode() + b":" + body)

    post = b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\ndata"
    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get("/slow") + post + get("/fast"))
        answers = [(await read_response(reader)).body for _ in range(3)]
        assert answers == [b"/slow:", b"/post:data", b"/fast:"]
        writer.write(get("/after"))  # reading resumed once the pipeline drained
        assert (await read_response(reader)).body == b"/after:"


# --- request bodies ---------------------------------------------------------------------------


def _digest_app(delay: float = 0.0) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        parts = []
        more = True
        while more:
            message = await receive()
            parts.append(message["body"])
            more = message["more_body"]
            if delay:
                await asyncio.sleep(delay)  # a slow reader: the server must pause and resume
        body = b"".join(parts)
        answer = {
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "largest": max(len(part) for part in parts),
        }
        await respond(send, json.dumps(answer).encode())

    return app


async def test_chunked_request_body_arrives_whole() -> None:
    chunks = [b"hello ", b"chunked ", b"x" * 3000, b" world"]
    expected = b"".join(chunks)
    async with serving(_digest_app()) as running, connection(running.port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in chunks:
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        answer = json.loads((await read_response(reader)).body)
        assert answer["size"] == len(expected)
        assert answer["sha256"] == hashlib.sha256(expected).hexdigest()


async def test_large_body_with_a_slow_reader_is_received_completely() -> None:
    body = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    async with serving(_digest_app(delay=0.002)) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
            for offset in range(0, len(body), 256 * 1024):
                writer.write(body[offset : offset + 256 * 1024])
                await writer.drain()
            answer = json.loads((await read_response(reader)).body)
            assert answer["size"] == len(body)
            assert answer["sha256"] == hashlib.sha256(body).hexdigest()
            # reading paused past the high-water mark: no more than one more read (256 KiB)
            # was buffered for the slow app, not megabytes
            assert answer["largest"] <= HIGH_WATER + 256 * 1024
            writer.write(get())  # the connection is still in step
            assert (await read_response(reader)).status == 200

        async def pieces() -> AsyncIterator[bytes]:  # aiohttp sends these chunked
            for offset in range(0, len(body), 100_000):
                yield body[offset : offset + 100_000]

        async with (
            aiohttp.ClientSession() as session,
            session.post(running.url, data=pieces()) as response,
        ):
            answer = json.loads(await response.read())
            assert answer["size"] == len(body)
            assert answer["sha256"] == hashlib.sha256(body).hexdigest()


async def test_unread_body_is_skipped_and_the_connection_stays_in_step() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"not reading that")  # answers before the body has arrived

    body = b"u" * (1024 * 1024)
    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert (await read_response(reader)).body == b"not reading that"
        writer.write(body + get("/next"))
        await writer.drain()
        assert (await read_response(reader)).body == b"not reading that"


async def test_expect_100_continue_is_sent_when_the_app_reads_the_body() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        response = await read_response(reader)
        assert response.status == 200
        assert json.loads(response.body)["body"] == "hello"


async def test_no_100_continue_for_http10() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
        response = await read_response(reader)
        assert response.status == 200
        assert json.loads(response.body)["body"] == "hi"


async def test_no_100_continue_when_the_app_answers_without_reading() -> None:
    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"too large", 413)

    async with serving(refuse) as running, connection(running.port) as (reader, writer):
        writer.write(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = await read_response(reader)
        assert response.status == 413
        assert b"100 Continue" not in response.raw


# --- response framing -----------------------------------------------------------------------


async def test_response_without_length_is_chunked_on_the_wire() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await stream_parts(send, b"hello ", b"", b"chunked world")

    async with serving(app) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(get())
            response = await read_response(reader)
            assert response.header("transfer-encoding") == "chunked"
            assert response.header("content-length") is None
            assert response.raw.endswith(b"\r\n\r\n6\r\nhello \r\nd\r\nchunked world\r\n0\r\n\r\n")
            writer.write(get())  # framing ended exactly: the next response parses
            assert (await read_response(reader)).body == b"hello chunked world"
        async with aiohttp.ClientSession() as session, session.get(running.url) as resp:
            assert await resp.read() == b"hello chunked world"


async def test_app_transfer_encoding_header_is_replaced_by_the_servers_framing() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"transfer-encoding", b"gzip, chunked")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc"})

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        response = await read_response(reader)
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == b"abc"


async def test_streamed_parts_arrive_before_the_response_ends() -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"second"})

    async with (
        serving(app) as running,
        aiohttp.ClientSession() as session,
        session.get(running.url) as response,
    ):
        assert response.headers["Transfer-Encoding"] == "chunked"
        first = await asyncio.wait_for(response.content.readexactly(6), TIMEOUT)
        assert first == b"first "
        assert not release.is_set()
        release.set()
        assert await response.read() == b"second"


async def test_slow_client_gets_the_whole_streamed_response(pauses: list[int]) -> None:
    part = bytes(range(256)) * 256  # 64 KiB
    count = 256  # 16 MiB: more than the socket buffers hold

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await stream_parts(send, *([part] * count))

    async with (
        serving(app) as running,
        aiohttp.ClientSession() as session,
        session.get(running.url) as response,
    ):
        await asyncio.sleep(0.2)  # not reading yet: the server has to stop writing
        digest = hashlib.sha256()
        size = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            digest.update(chunk)
            size += len(chunk)
        assert size == len(part) * count
        assert digest.hexdigest() == hashlib.sha256(part * count).hexdigest()
    assert pauses


async def test_the_direct_body_writer_frames_each_part_and_reports_a_full_client(
    pauses: list[int],
) -> None:
    """``orcarouter.write_body``: parts written at once (no message, no await), framed like
    ``send``'s; while the client's buffer is full it returns the pause to wait for."""
    part = bytes(range(256)) * 256  # 64 KiB
    fulls: list[asyncio.Future[None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        write = scope["extensions"][WRITE_EXTENSION]
        with pytest.raises(RuntimeError, match=r"http\.response\.start"):
            write(b"too early")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(256):  # 16 MiB, more than the socket buffers hold
            full = write(part)
            if full is not None:
                fulls.append(full)
                await full
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        await asyncio.sleep(0.2)  # not reading yet: the client's buffer fills
        response = await read_response(reader)
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == part * 256
        assert response.raw.endswith(b"\r\n10000\r\n" + part + b"\r\n0\r\n\r\n")
    assert pauses
    assert fulls
    assert all(full.done() for full in fulls)


async def test_head_response_has_headers_and_no_body() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"hello")  # a body for HEAD too, as frameworks do

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/next"))
        head = await read_response(reader, head=True)
        assert head.status == 200
        assert head.header("content-length") == "5"
        following = await read_response(reader)  # straight after the head: no body bytes
        assert following.status == 200
        assert following.body == b"hello"


async def test_bodiless_statuses_have_no_framing() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/204":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:  # 304 keeps the representation's length, with no body (RFC 9110 §8.6)
            headers = [(b"content-length", b"1234"), (b"etag", b'"v1"')]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get("/204") + get("/304") + get("/204"))
        no_content = await read_response(reader)
        assert no_content.status == 204
        assert no_content.header("transfer-encoding") is None
        assert no_content.header("content-length") is None
        not_modified = await read_response(reader)
        assert not_modified.status == 304
        assert not_modified.header("content-length") == "1234"
        assert (await read_response(reader)).status == 204


async def test_http10_keep_alive_is_announced() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        for _ in range(2):
            writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = await read_response(reader)
            assert response.status == 200
            assert response.header("connection") == "keep-alive"


async def test_app_connection_close_header_closes_once() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"bye", 200, (b"Connection", b"close"))

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        response = await read_response(reader)
        assert response.header("connection") == "close"  # not repeated
        await assert_closed(reader)


async def test_http10_without_keep_alive_is_answered_then_closed() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/stream":
            await stream_parts(send, b"no ", b"length")
        else:
            await respond(send, b"sized")

    async with serving(app) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(b"GET /sized HTTP/1.0\r\n\r\n")
            response = await read_response(reader)
            assert response.body == b"sized"
            await assert_closed(reader)
        async with connection(running.port) as (reader, writer):
            writer.write(b"GET /stream HTTP/1.0\r\n\r\n")
            response = await read_response(reader)  # close-delimited: read to the end
            assert response.header("transfer-encoding") is None
            assert response.header("content-length") is None
            assert response.header("connection") == "close"
            assert response.body == b"no length"


# --- headers ---------------------------------------------------------------------------------


async def test_date_header_and_no_server_header() -> None:
    async with (
        serving(describe, server_header=False) as running,
        connection(running.port) as (reader, writer),
    ):
        writer.write(get())
        response = await read_response(reader)
        date = response.header("date")
        assert date is not None
        assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5
        assert response.header("server") is None
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        assert (await read_response(reader)).header("server") == "uvicorn"


async def test_forwarded_headers_do_not_change_the_client() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(get("/", "X-Forwarded-For: 203.0.113.9", "X-Forwarded-Proto: https"))
        seen = json.loads((await read_response(reader)).body)
        assert seen["client"] == ["127.0.0.1", writer.get_extra_info("sockname")[1]]
        assert seen["scheme"] == "http"


async def test_upgrade_request_is_answered_in_http11_then_closed() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(get("/", "Connection: Upgrade", "Upgrade: websocket"))
        response = await read_response(reader)
        assert response.status == 200
        assert json.loads(response.body)["path"] == "/"
        await assert_closed(reader)
