"""The gateway's HTTP/1.1 protocol (``api.server``) under a real ``uvicorn.Server`` on 127.0.0.1.

Wire-level behaviour is checked over raw sockets, normal use with aiohttp's client. Each test
starts its own server in the test's event loop with a small ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
import uvicorn

from orcarouter.api import server as server_module
from orcarouter.api.asgi import DISCONNECT_EXTENSION, Message, Receive, Scope, Send
from orcarouter.api.server import HIGH_WATER, ServerProtocol

App = Callable[[Scope, Receive, Send], Awaitable[None]]
TIMEOUT = 5.0


# --- a server and a raw client ------------------------------------------------------------------


@dataclass
class Running:
    server: uvicorn.Server
    port: int
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Graceful shutdown; forced if a failed test left a request hanging."""
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), TIMEOUT)
        except TimeoutError:
            self.server.force_exit = True
            await self.task


@contextlib.asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[Running]:
    """A uvicorn server running ``app`` on ServerProtocol, on a free port of 127.0.0.1."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=ServerProtocol,
        proxy_headers=False,
        lifespan="off",
        log_config=None,
        access_log=False,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.005)
    sockets = server.servers[0].sockets
    running = Running(server, sockets[0].getsockname()[1], task)
    try:
        yield running
    finally:
        await running.stop()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # decoded (chunked framing removed)
    raw: bytes  # exactly as on the wire, head included

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """One response; ``head``: the answer to a HEAD request (no body whatever the headers)."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = raw[:-4].decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    status = int(lines[0].split(" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.lower(), value.strip()))
    response = Response(status, headers, b"", raw)
    if head or status in (204, 304) or status < 200:
        return response
    if response.header("transfer-encoding") == "chunked":
        parts = []
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)
            size = int(size_line, 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT)
            assert data.endswith(b"\r\n")
            response.raw += size_line + data
            parts.append(data[:-2])
            if size == 0:
                break
        response.body = b"".join(parts)
    elif (length := response.header("content-length")) is not None:
        response.body = await asyncio.wait_for(reader.readexactly(int(length)), TIMEOUT)
        response.raw += response.body
    else:  # close-delimited
        response.body = await asyncio.wait_for(reader.read(), TIMEOUT)
        response.raw += response.body
    return response


async def assert_closed(reader: asyncio.StreamReader) -> None:
    """The server closes the connection with nothing more to say (a reset counts: a refused
    request may leave unread bytes behind)."""
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def get(path: str = "/", *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


# --- small apps ---------------------------------------------------------------------------------


async def respond(
    send: Send, body: bytes, status: int = 200, *headers: tuple[bytes, bytes]
) -> None:
    length = (b"content-length", b"%d" % len(body))
    await send({"type": "http.response.start", "status": status, "headers": [length, *headers]})
    await send({"type": "http.response.body", "body": body})


async def read_all(receive: Receive) -> bytes:
    """The whole request body."""
    parts = []
    more = True
    while more:
        message = await receive()
        assert message["type"] == "http.request"
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(parts)


async def describe(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it saw of the request, as JSON."""
    body = await read_all(receive)
    seen = {
        "client": scope["client"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "http_version": scope["http_version"],
        "body": body.decode(),
    }
    await respond(send, json.dumps(seen).encode(), 200, (b"content-type", b"application/json"))


async def stream_parts(send: Send, *parts: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


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


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time the server's transport pauses its writes."""
    seen: list[int] = []
    pause_writing = ServerProtocol.pause_writing

    def recording_pause(self: ServerProtocol) -> None:
        seen.append(1)
        pause_writing(self)

    monkeypatch.setattr(ServerProtocol, "pause_writing", recording_pause)
    return seen


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


# --- refusals and errors -----------------------------------------------------------------------


async def test_garbage_gets_400_and_the_connection_closes() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 400
        assert response.header("connection") == "close"
        await assert_closed(reader)


@pytest.mark.parametrize("shape", ["one header", "many headers", "long url"])
async def test_request_head_over_64k_gets_431(shape: str) -> None:
    if shape == "one header":
        request = get("/", "X-Big: " + "a" * 70_000)
    elif shape == "many headers":
        request = get("/", *(f"X-H{i}: {'b' * 1000}" for i in range(70)))
    else:
        request = get("/" + "c" * 70_000)
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(request)
        response = await read_response(reader)
        assert response.status == 431
        await assert_closed(reader)


async def test_head_growing_past_64k_without_ending_gets_431() -> None:
    """A header that never ends is refused once it is too long, not buffered forever."""
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        answer = asyncio.create_task(read_response(reader))
        for _ in range(40):  # 160 KiB at most
            await asyncio.sleep(0.005)
            if answer.done():
                break
            writer.write(b"d" * 4096)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        assert (await answer).status == 431


async def test_head_under_64k_in_many_pieces_is_accepted() -> None:
    request = get("/", *(f"X-H{i}: {'e' * 1000}" for i in range(50)))
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        for offset in range(0, len(request), 1000):
            writer.write(request[offset : offset + 1000])
            await writer.drain()
            await asyncio.sleep(0.001)
        assert (await read_response(reader)).status == 200


async def keep_sending(writer: asyncio.StreamWriter, size: int) -> None:
    """What a client still uploading does after the answer came: it raises if the server
    answered the bytes with a reset."""
    for _ in range(size // 65536):
        writer.write(b"z" * 65536)
        await asyncio.wait_for(writer.drain(), TIMEOUT)


async def test_a_refused_request_still_being_sent_gets_its_answer_not_a_reset() -> None:
    """The head is refused while more of it is on its way: the server ends its side after the
    431 and drops what still comes, so the client can send it all, then read the answer and
    a clean end (an immediate close would answer those bytes with a reset)."""
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(get("/", "X-Big: " + "a" * 70_000))
        await keep_sending(writer, 1024 * 1024)
        response = await read_response(reader)
        assert response.status == 431
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # a FIN, no reset
        writer.write_eof()  # the client is done too: the server closes
        await wait_for(lambda: not running.server.server_state.connections)


async def test_a_closing_answer_to_a_body_still_arriving_lingers_until_the_client_is_done() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"too large", 413, (b"connection", b"close"))  # body never read

    async with serving(app) as running, connection(running.port) as (reader, writer):
        size = 4 * 1024 * 1024
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        response = await read_response(reader)
        assert (response.status, response.body) == (413, b"too large")
        assert response.header("connection") == "close"
        await keep_sending(writer, size)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        assert running.server.server_state.connections  # still reading what the client sends
        writer.close()
        await wait_for(lambda: not running.server.server_state.connections)


async def test_a_lingering_connection_closes_after_silence_or_at_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "LINGER", 0.3)
    monkeypatch.setattr(server_module, "LINGER_MAX", 1.0)
    async with (
        serving(describe) as running,
        connection(running.port) as (silent_reader, silent_writer),
        connection(running.port) as (chatty_reader, chatty_writer),
    ):
        silent_writer.write(b"\x16\x03\x01 not HTTP\r\n\r\n")
        chatty_writer.write(b"\x16\x03\x01 not HTTP\r\n\r\n")
        assert (await read_response(silent_reader)).status == 400
        assert (await read_response(chatty_reader)).status == 400
        started = time.monotonic()

        async def chatter() -> None:  # a byte every 0.1 s: never silent for LINGER
            while True:
                chatty_writer.write(b"z")
                await asyncio.sleep(0.1)

        chatting = asyncio.create_task(chatter())
        try:
            await wait_for(lambda: len(running.server.server_state.connections) == 1)
            assert time.monotonic() - started < 0.9  # the silent one, after LINGER
            await wait_for(lambda: not running.server.server_state.connections)
            assert time.monotonic() - started >= 0.9  # the chatty one, at LINGER_MAX
        finally:
            chatting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await chatting


async def test_app_raising_before_the_response_gets_500_and_close() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        response = await read_response(reader)
        assert response.status == 500
        assert response.header("connection") == "close"
        assert response.body == b"Internal Server Error"
        await assert_closed(reader)


async def test_app_raising_mid_response_closes_the_connection() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    async with serving(app) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(get())
            received = await asyncio.wait_for(reader.read(), TIMEOUT)  # to the close
            assert received.startswith(b"HTTP/1.1 200 OK\r\n")
            assert received.endswith(b"7\r\npartial\r\n")  # no terminating chunk
        async with aiohttp.ClientSession() as session, session.get(running.url) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()


async def test_app_raising_right_after_the_start_gets_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom")  # nothing of the 200 is on the wire yet

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        response = await read_response(reader)
        assert response.status == 500
        await assert_closed(reader)


async def test_app_raising_after_a_complete_response_keeps_the_connection() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"done")
        if scope["path"] == "/raise":
            await asyncio.sleep(0.05)  # the connection is idle by then, ready for more
            raise ValueError("background work failed")

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get("/raise"))
        assert (await read_response(reader)).body == b"done"
        await asyncio.sleep(0.1)
        writer.write(get("/after"))
        assert (await read_response(reader)).body == b"done"


async def test_app_returning_without_a_response_gets_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        response = await read_response(reader)
        assert response.status == 500
        await assert_closed(reader)


@pytest.mark.parametrize(
    "header",
    [
        (b"x-test", b"ok\r\nx-injected: yes"),
        (b"x-test", b"ok\nx-injected: yes"),
        (b"x-test\r\nx-injected", b"yes"),
        (b"x-test: ok\r\nx-injected", b"yes"),
    ],
)
async def test_header_injection_is_refused(header: tuple[bytes, bytes]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"ok", 200, header)

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())
        response = await read_response(reader)
        assert response.status == 500
        assert b"x-injected" not in response.raw
        await assert_closed(reader)


# --- the disconnect extension ------------------------------------------------------------------


@dataclass
class Watched:
    """What an app saw of its client going away."""

    called: list[str]
    messages: list[Message]
    done: asyncio.Event


def _watching_app(watched: Watched, *, unregister: bool = False) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        register = scope["extensions"][DISCONNECT_EXTENSION]
        register(lambda: watched.called.append("gone"))
        if unregister:
            register(None)
        watched.messages.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        watched.messages.append(await receive())  # blocks until the client goes away
        await send({"type": "http.response.body", "body": b"late"})  # dropped, no error
        watched.done.set()

    return app


@pytest.mark.parametrize("unregister", [False, True])
async def test_client_leaving_mid_response_is_reported(unregister: bool) -> None:
    watched = Watched([], [], asyncio.Event())
    async with serving(_watching_app(watched, unregister=unregister)) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(get())
            await asyncio.wait_for(reader.readuntil(b"part\r\n"), TIMEOUT)
            await asyncio.sleep(0.05)
            assert len(watched.messages) == 1  # the second receive() is still waiting
        await asyncio.wait_for(watched.done.wait(), TIMEOUT)
    assert watched.messages == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert watched.called == ([] if unregister else ["gone"])


@pytest.mark.parametrize("callback_raises", [False, True])
async def test_client_leaving_while_writes_are_paused_releases_the_app(
    pauses: list[int], callback_raises: bool
) -> None:
    called: list[str] = []
    finished = asyncio.Event()

    def gone() -> None:
        called.append("gone")
        if callback_raises:
            raise RuntimeError("a broken callback")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][DISCONNECT_EXTENSION](gone)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(1024):  # 64 MiB unless the client goes away; it never reads them
            await send({"type": "http.response.body", "body": b"p" * 65536, "more_body": True})
        finished.set()

    async with serving(app) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(get())
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            await wait_for(lambda: bool(pauses))
        await asyncio.wait_for(finished.wait(), TIMEOUT)
    assert called == ["gone"]


async def test_completed_response_never_reports_a_disconnect() -> None:
    called: list[str] = []
    after: list[Message] = []
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][DISCONNECT_EXTENSION](lambda: called.append("gone"))
        await receive()
        await respond(send, b"done")
        after.append(await asyncio.wait_for(receive(), TIMEOUT))  # the end: at once
        await release.wait()  # still running when the client leaves

    async with serving(app) as running:
        async with connection(running.port) as (reader, writer):
            writer.write(get())
            assert (await read_response(reader)).body == b"done"
        await wait_for(lambda: not running.server.server_state.connections)
        assert called == []
        assert after == [{"type": "http.disconnect"}]
        release.set()


async def test_served_requests_leave_no_garbage_for_the_cycle_collector() -> None:
    """Each exchange, its scope and its headers are freed when the request ends, by reference
    counting alone: the cyclic collector, whose pauses land inside requests, has nothing of
    them to find."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][DISCONNECT_EXTENSION](lambda: None)
        await read_all(receive)
        await respond(send, b"ok")

    def exchanges() -> int:
        return sum(isinstance(o, server_module.Exchange) for o in gc.get_objects())

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(get())  # warm: the connection and the server's own objects exist
        assert (await read_response(reader)).status == 200
        gc.collect()
        gc.disable()
        try:
            before = exchanges()
            for _ in range(50):
                writer.write(get("/", "X-A: 1", "X-B: 2"))
                assert (await read_response(reader)).status == 200
            left = exchanges() - before
        finally:
            gc.enable()
    assert left <= 1  # at most the connection's latest exchange, still its current one


async def test_a_callback_registered_after_the_client_left_runs_at_once() -> None:
    called: list[str] = []
    gone = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await gone.wait()  # the client leaves while the request is busy before watching
        await asyncio.sleep(0.2)
        scope["extensions"][DISCONNECT_EXTENSION](lambda: called.append("gone"))

    async with serving(app) as running:
        async with connection(running.port) as (_, writer):
            writer.write(get())
            await asyncio.sleep(0.2)
        gone.set()
        await wait_for(lambda: called == ["gone"])


# --- timeouts and shutdown -----------------------------------------------------------------------


async def test_idle_timeout_closes_idle_connections_but_not_streaming_ones() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            await asyncio.sleep(2.2)  # longer than the keep-alive timeout
            await send({"type": "http.response.body", "body": b"b"})
        else:
            await respond(send, b"fast")

    async with (
        serving(app, timeout_keep_alive=1) as running,
        connection(running.port) as (idle_reader, idle_writer),
        connection(running.port) as (slow_reader, slow_writer),
    ):
        slow_writer.write(get("/slow"))
        idle_writer.write(get())
        assert (await read_response(idle_reader)).body == b"fast"
        started = time.monotonic()
        await assert_closed(idle_reader)
        assert 0.9 <= time.monotonic() - started < 3.5
        response = await read_response(slow_reader)
        assert response.body == b"ab"
        assert time.monotonic() - started > 1.8  # it did outlive the idle connection


async def test_a_stalled_request_body_is_given_up_but_a_slow_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "BODY_TIMEOUT", 1.5)
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.append("disconnect")
                return
            body += message["body"]
            if not message["more_body"]:
                break
        await respond(send, body)

    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n"
    async with (
        serving(app, timeout_keep_alive=1) as running,
        connection(running.port) as (stalled_reader, stalled_writer),
        connection(running.port) as (slow_reader, slow_writer),
    ):
        stalled_writer.write(head + b"abc")  # and never the rest
        slow_writer.write(head + b"a")
        started = time.monotonic()
        for part in (b"b", b"c", b"d", b"e"):  # a byte a second: slower than the keep-alive
            await asyncio.sleep(1.0)
            slow_writer.write(part)
        slow_writer.write(b"f")
        assert (await read_response(slow_reader)).body == b"abcdef"
        await assert_closed(stalled_reader)
        assert 1.4 <= time.monotonic() - started < 5.0
        assert seen == ["disconnect"]


async def test_graceful_shutdown_closes_idle_and_finishes_in_flight() -> None:
    release = asyncio.Event()
    in_flight = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/long":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"begun ", "more_body": True})
            in_flight.set()
            await release.wait()
            await send({"type": "http.response.body", "body": b"and finished"})
        else:
            await respond(send, b"quick")

    async with (
        serving(app, timeout_keep_alive=30) as running,
        connection(running.port) as (idle_reader, idle_writer),
        connection(running.port) as (busy_reader, busy_writer),
    ):
        idle_writer.write(get())
        assert (await read_response(idle_reader)).body == b"quick"
        busy_writer.write(get("/long"))
        await asyncio.wait_for(in_flight.wait(), TIMEOUT)
        running.server.should_exit = True
        await assert_closed(idle_reader)
        await asyncio.sleep(0.2)
        assert not running.task.done()  # waiting for the request in flight
        release.set()
        response = await read_response(busy_reader)
        assert response.body == b"begun and finished"
        await assert_closed(busy_reader)
        await asyncio.wait_for(asyncio.shield(running.task), TIMEOUT)


async def test_graceful_shutdown_does_not_wait_for_a_lingering_connection() -> None:
    async with serving(describe) as running, connection(running.port) as (reader, writer):
        writer.write(b"\x16\x03\x01 not HTTP\r\n\r\n")
        assert (await read_response(reader)).status == 400
        assert running.server.server_state.connections  # lingering: the client has not closed
        started = time.monotonic()
        running.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(running.task), TIMEOUT)
        assert time.monotonic() - started < 2.0  # not LINGER's 5 s


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(),
        # a body still arriving, never read: closed at once, not lingering as outside a shutdown
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 1000,
    ],
    ids=["get", "upload still arriving"],
)
async def test_shutdown_before_the_response_starts_answers_with_connection_close(
    request_bytes: bytes,
) -> None:
    release = asyncio.Event()
    in_flight = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        in_flight.set()
        await release.wait()
        await respond(send, b"late")

    async with serving(app) as running, connection(running.port) as (reader, writer):
        writer.write(request_bytes)
        await asyncio.wait_for(in_flight.wait(), TIMEOUT)
        running.server.should_exit = True
        await asyncio.sleep(0.2)
        started = time.monotonic()
        release.set()
        response = await read_response(reader)
        assert response.body == b"late"
        assert response.header("connection") == "close"
        await assert_closed(reader)
        await asyncio.wait_for(asyncio.shield(running.task), TIMEOUT)
        assert time.monotonic() - started < 2.0  # not LINGER's 5 s


async def test_limit_concurrency_refuses_past_the_limit_with_503() -> None:
    release = asyncio.Event()
    in_flight = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        in_flight.set()
        await release.wait()
        await respond(send, b"served")

    async with (
        serving(app, limit_concurrency=1) as running,
        connection(running.port) as (first_reader, first_writer),
    ):
        first_writer.write(get())
        await asyncio.wait_for(in_flight.wait(), TIMEOUT)
        async with connection(running.port) as (second_reader, second_writer):
            second_writer.write(get())
            refused = await read_response(second_reader)
            assert refused.status == 503
            assert refused.header("connection") == "close"
            await assert_closed(second_reader)
        release.set()
        assert (await read_response(first_reader)).body == b"served"


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
