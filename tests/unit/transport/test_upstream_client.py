"""The upstream client against real servers on 127.0.0.1: aiohttp for ordinary answers, raw
``asyncio.start_server`` servers for framing edge cases, resets and stalls.

Every test runs on the stock asyncio loop and on uvloop (the server's loop in production);
see ``pytest_asyncio_loop_factories`` in this folder's conftest.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orcarouter.errors import (
    InvalidRequest,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from orcarouter.settings import TimeoutsConfig
from orcarouter.transport.client import (
    HIGH_WATER,
    MAX_RESPONSE_BYTES,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
)
from tests.support.server import end_stream

SSE_EVENTS = [f"data: {i}\n\n".encode() for i in range(20)]


def timeouts(**given: float) -> TimeoutsConfig:
    return TimeoutsConfig(**{"connect": 2.0, "first_byte": 2.0, "idle": 2.0, "total": 5.0, **given})


def post(
    url: str,
    *,
    body: bytes = b'{"hi": 1}',
    headers: Mapping[str, str] | None = None,
    **limits: float,
) -> UpstreamRequest:
    return UpstreamRequest(
        url, headers or {"content-type": "application/json"}, body, timeouts(**limits)
    )


# -- an aiohttp upstream in the test's loop -----------------------------------------------


@dataclass
class WebUpstream:
    """Routes per behaviour; remembers the client port of every request (one per connection)."""

    peers: list[int] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/echo", self._echo)
        app.router.add_post("/chunked", self._chunked)
        app.router.add_post("/sse", self._sse)
        app.router.add_post("/sse-late-end", partial(self._sse, end_after=0.05))
        app.router.add_post("/sse-cut-end", partial(self._sse, cut=True))
        app.router.add_post("/gzip", self._gzip)
        app.router.add_post("/deflate", self._deflate)
        app.router.add_post("/raw-deflate", self._raw_deflate)
        app.router.add_post("/big", self._big)
        app.router.add_post("/slow", self._slow)
        app.router.add_post("/hang", self._hang)
        app.router.add_post("/stall", self._stall)
        return app

    def _seen(self, request: web.Request) -> None:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])

    async def _echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        seen = {
            "path": request.path_qs,
            "headers": list(request.raw_headers),
            "body": (await request.read()).decode(),
        }
        return web.json_response(orjson.loads(orjson.dumps(seen, default=bytes.decode)))

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(50):
            await response.write(f"part {i};".encode())
        await response.write_eof()
        return response

    async def _sse(
        self, request: web.Request, end_after: float = 0.0, cut: bool = False
    ) -> web.StreamResponse:
        """The first event, then the rest only once the test says it received the first; the
        end of the body ``end_after`` seconds after the last event, or (``cut``) the connection
        dropped instead (``end_stream``)."""
        self._seen(request)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(SSE_EVENTS[0])
        await asyncio.wait_for(self.go_on.wait(), 5)
        for event in SSE_EVENTS[1:]:
            await response.write(event)
        if end_after:
            await asyncio.sleep(end_after)
        return await end_stream(request, response, cut=cut)

    async def _gzip(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = gzip.compress(b"hello gzip " * 1000)
        return web.Response(body=body, headers={"content-encoding": "gzip"})

    async def _deflate(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(
            body=zlib.compress(b"hello zlib"), headers={"content-encoding": "deflate"}
        )

    async def _raw_deflate(self, request: web.Request) -> web.Response:
        self._seen(request)
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = packer.compress(b"hello raw") + packer.flush()
        return web.Response(body=body, headers={"content-encoding": "deflate"})

    async def _big(self, request: web.Request) -> web.Response:
        self._seen(request)
        size = int(request.query["size"])
        return web.Response(body=bytes(i % 251 for i in range(size)))

    async def _slow(self, request: web.Request) -> web.Response:
        self._seen(request)
        await asyncio.sleep(float(request.query["delay"]))
        return web.Response(text="slow")

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """One event, then nothing until the client closes the connection."""
        self._seen(request)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(SSE_EVENTS[0])
        await _until_closed(request, self.closed)
        return response

    async def _stall(self, request: web.Request) -> web.Response:
        """No answer until the client closes the connection."""
        self._seen(request)
        await _until_closed(request, self.closed)
        return web.Response(status=500)


async def _until_closed(request: web.Request, closed: asyncio.Event) -> None:
    for _ in range(500):
        if request.transport is None or request.transport.is_closing():
            closed.set()
            return
        await asyncio.sleep(0.01)


async def _serve(origin: WebUpstream, context: ssl.SSLContext | None = None) -> web.AppRunner:
    runner = web.AppRunner(origin.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    origin.port = runner.addresses[0][1]
    return runner


@pytest.fixture
async def origin() -> AsyncIterator[WebUpstream]:
    server = WebUpstream()
    runner = await _serve(server)
    yield server
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    made = UpstreamClient()
    yield made
    await made.close()


# -- raw servers for what aiohttp would not send --------------------------------------------


@dataclass
class RawServer:
    """``handle(server, reader, writer)`` serves each connection; counts connections and
    requests read with ``read_request``."""

    handle: Callable[[RawServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    host: str = "127.0.0.1"
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _serving: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1/x"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening; connections still served are cut so that their handlers end."""
        if self._server is not None:
            self._server.close()
            for writer in self._serving.values():
                writer.transport.abort()
            if self._serving:
                await asyncio.wait(list(self._serving), timeout=2)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving[task] = writer
        self.connections += 1
        try:
            await self.handle(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self.closed += 1
            del self._serving[task]

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next request's head (its body is read and dropped); None at the end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.requests.append(head)
        return head


RawHandler = Callable[[RawServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[RawHandler], Awaitable[RawServer]]]:
    started: list[RawServer] = []

    async def start(handle: RawHandler) -> RawServer:
        server = RawServer(handle)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


def answering(*answers: bytes, then_close: bool = False) -> RawHandler:
    """Answer each request on a connection with the next of ``answers`` (the last repeats)."""

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        index = 0
        while await server.read_request(reader) is not None:
            writer.write(answers[min(index, len(answers) - 1)])
            await writer.drain()
            index += 1
            if then_close:
                return

    return handle


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def body_of(response: UpstreamResponse) -> bytes:
    body = await response.read()
    response.release()
    return body


# -- bodies ---------------------------------------------------------------------------------


async def test_request_line_headers_and_content_length_body(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    headers = {"content-type": "application/json", "Authorization": "Bearer k"}
    response = await client.send(
        post(origin.url + "/echo?alt=sse&x=1", body=b"payload", headers=headers)
    )
    assert response.status == 200
    assert response.headers.get("CONTENT-TYPE", "").startswith("application/json")
    assert response.headers.get("x-missing") is None
    seen = orjson.loads(await body_of(response))
    assert seen["path"] == "/echo?alt=sse&x=1"
    assert seen["body"] == "payload"
    sent = {name.lower(): value for name, value in seen["headers"]}
    assert sent["host"] == f"127.0.0.1:{origin.port}"
    assert sent["content-length"] == "7"
    assert sent["authorization"] == "Bearer k"
    assert sent["accept-encoding"] == "gzip, deflate"
    assert "user-agent" not in sent
    assert seen["headers"][0][0].lower() == "host"


async def test_chunked_body_from_many_writes(origin: WebUpstream, client: UpstreamClient) -> None:
    response = await client.send(post(origin.url + "/chunked"))
    assert await body_of(response) == b"".join(f"part {i};".encode() for i in range(50))


async def test_chunk_extensions_and_trailers(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6;x\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    server = await raw(answering(answer))
    assert await body_of(await client.send(post(server.url))) == b"hello world"
    assert await body_of(await client.send(post(server.url))) == b"hello world"
    assert server.connections == 1


async def test_sse_chunks_arrive_before_the_stream_ends(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    response = await client.send(post(origin.url + "/sse"))
    assert response.is_event_stream
    received = []
    async with asyncio.timeout(3):  # the server waits for us: a buffering client would hang
        async for chunk in response.iter_chunks():
            received.append(chunk)
            origin.go_on.set()
    assert received[0] == SSE_EVENTS[0]
    assert b"".join(received) == b"".join(SSE_EVENTS)
    assert response.at_end
    response.release()


async def test_body_delimited_by_the_close(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    server = await raw(answering(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", then_close=True))
    response = await client.send(post(server.url))
    assert await response.read() == b"until the end"
    response.release()  # not reusable: it was closed
    assert await body_of(await client.send(post(server.url))) == b"until the end"
    assert server.connections == 2


async def test_informational_answers_are_skipped(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    server = await raw(answering(interim + b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"))
    response = await client.send(post(server.url))
    assert response.status == 201
    assert response.headers.get("link") is None
    assert await body_of(response) == b"ok"


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/raw-deflate"])
async def test_compressed_bodies_are_decoded(
    origin: WebUpstream, client: UpstreamClient, path: str
) -> None:
    expected = {
        "/gzip": b"hello gzip " * 1000,
        "/deflate": b"hello zlib",
        "/raw-deflate": b"hello raw",
    }
    assert await body_of(await client.send(post(origin.url + path))) == expected[path]


async def test_gzip_decoded_across_small_chunks(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    packed = gzip.compress(b"data: streamed\n\n" * 200)
    pieces = [packed[i : i + 7] for i in range(0, len(packed), 7)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = await raw(answering(head + chunked))
    assert await body_of(await client.send(post(server.url))) == b"data: streamed\n\n" * 200


async def test_a_body_that_inflates_without_limit_is_refused_in_bounded_memory(
    raw: Callable[..., Awaitable[RawServer]],
    client: UpstreamClient,
) -> None:
    packed = gzip.compress(bytes(MAX_RESPONSE_BYTES + 1024 * 1024), compresslevel=9)  # ~65 KB
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    server = await raw(answering(head % len(packed) + packed))
    response = await client.send(post(server.url))
    seen = 0
    with pytest.raises(UpstreamProtocolError, match="inflates past"):
        async for chunk in response.iter_chunks():  # a stream: no read() limit applies
            seen += len(chunk)
    assert seen <= MAX_RESPONSE_BYTES


async def test_a_caller_accept_encoding_is_kept(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    request = post(origin.url + "/echo", headers={"Accept-Encoding": "identity"})
    seen = orjson.loads(await body_of(await client.send(request)))
    encodings = [value for name, value in seen["headers"] if name.lower() == "accept-encoding"]
    assert encodings == ["identity"]


async def test_a_body_over_the_limit_is_refused(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    response = await client.send(post(origin.url + "/big?size=5000"))
    with pytest.raises(UpstreamProtocolError, match="exceeded 4096 bytes"):
        await response.read(4096)
    response.release()  # already closed: a no-op
    assert await body_of(await client.send(post(origin.url + "/big?size=10"))) == bytes(range(10))


async def test_reading_pauses_while_the_reader_is_behind(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    size = 8 * 1024 * 1024
    response = await client.send(post(origin.url + "/big?size=" + str(size)))
    await asyncio.sleep(0.3)  # the origin would send all of it by now if nobody held it back
    assert 0 < response._conn.buffered <= 2 * HIGH_WATER
    assert await body_of(response) == bytes(i % 251 for i in range(size))


# -- the pool -------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    for _ in range(3):
        await body_of(await client.send(post(origin.url + "/echo")))
    assert len(origin.peers) == 3
    assert len(set(origin.peers)) == 1


async def test_a_connection_not_read_whole_is_not_reused(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    response = await client.send(post(origin.url + "/chunked"))
    response.release()
    await body_of(await client.send(post(origin.url + "/echo")))
    assert len(set(origin.peers)) == 2


async def test_an_idle_connection_the_server_closed_is_dropped(
    raw: Callable[..., Awaitable[RawServer]],
    client: UpstreamClient,
) -> None:
    server = await raw(answering(OK, then_close=True))  # keep-alive promised, then closed
    assert await body_of(await client.send(post(server.url))) == b"ok"
    for _ in range(100):
        if server.closed:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert not client._idle[("http", "127.0.0.1", server.port)]  # dropped at once
    assert await body_of(await client.send(post(server.url))) == b"ok"
    assert (server.connections, len(server.requests)) == (2, 2)  # no retry was needed


def reset_after_first(retry_answers: bool) -> RawHandler:
    """The first connection answers once, then resets on the next request; later connections
    answer (or reset too, without ``retry_answers``)."""

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        first = server.connections == 1
        if first and await server.read_request(reader) is not None:
            writer.write(OK)
            await writer.drain()
        if await server.read_request(reader) is not None and (retry_answers and not first):
            writer.write(OK)
            await writer.drain()
            await server.read_request(reader)
        _reset(writer)

    return handle


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


async def test_a_stale_reused_connection_is_retried_once(
    raw: Callable[..., Awaitable[RawServer]],
    client: UpstreamClient,
) -> None:
    server = await raw(reset_after_first(retry_answers=True))
    assert await body_of(await client.send(post(server.url))) == b"ok"
    assert await body_of(await client.send(post(server.url))) == b"ok"
    assert (server.connections, len(server.requests)) == (2, 3)


async def test_the_retry_is_made_only_once(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    server = await raw(reset_after_first(retry_answers=False))
    assert await body_of(await client.send(post(server.url))) == b"ok"
    with pytest.raises(UpstreamUnreachable):
        await client.send(post(server.url))
    assert (server.connections, len(server.requests)) == (2, 3)


async def test_a_fresh_connection_closed_unanswered_is_not_retried(
    raw: Callable[..., Awaitable[RawServer]],
    client: UpstreamClient,
) -> None:
    async def hang_up(server: RawServer, reader: asyncio.StreamReader, _: object) -> None:
        await server.read_request(reader)

    server = await raw(hang_up)
    with pytest.raises(UpstreamUnreachable, match="unanswered"):
        await client.send(post(server.url))
    assert (server.connections, len(server.requests)) == (1, 1)


async def test_no_retry_once_a_response_byte_arrived(
    raw: Callable[..., Awaitable[RawServer]],
    client: UpstreamClient,
) -> None:
    async def half(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(OK)
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 O")
        await writer.drain()

    server = await raw(half)
    await body_of(await client.send(post(server.url)))
    with pytest.raises(UpstreamUnreachable, match="mid-response"):
        await client.send(post(server.url))
    assert (server.connections, len(server.requests)) == (1, 2)


async def test_idle_connections_expire(raw: Callable[..., Awaitable[RawServer]]) -> None:
    server = await raw(answering(OK))
    client = UpstreamClient(keepalive=0.2)
    try:
        await body_of(await client.send(post(server.url)))
        await asyncio.sleep(0.1)
        assert server.closed == 0
        for _ in range(100):
            if server.closed:
                break
            await asyncio.sleep(0.01)
        assert server.closed == 1
        assert not client._conns
    finally:
        await client.close()


async def test_the_limit_makes_a_request_wait_for_a_free_connection(
    origin: WebUpstream,
) -> None:
    client = UpstreamClient(limit=1)
    try:
        started = time.monotonic()
        request = post(origin.url + "/slow?delay=0.2")
        bodies = await asyncio.gather(body_of_sent(client, request), body_of_sent(client, request))
        assert list(bodies) == [b"slow", b"slow"]
        assert time.monotonic() - started >= 0.38  # one after the other
        assert len(set(origin.peers)) == 1
    finally:
        await client.close()


async def body_of_sent(client: UpstreamClient, request: UpstreamRequest) -> bytes:
    return await body_of(await client.send(request))


async def test_many_requests_share_a_small_pool(origin: WebUpstream) -> None:
    client = UpstreamClient(limit=4)
    try:
        request = post(origin.url + "/chunked")
        bodies = await asyncio.gather(*(body_of_sent(client, request) for _ in range(60)))
        assert set(bodies) == {b"".join(f"part {i};".encode() for i in range(50))}
        assert len(set(origin.peers)) <= 4
        assert len(client._conns) <= 4
    finally:
        await client.close()


async def test_waiting_for_a_free_connection_is_bounded(origin: WebUpstream) -> None:
    client = UpstreamClient(limit=1)
    try:
        busy = await client.send(post(origin.url + "/hang"))
        with pytest.raises(UpstreamTimeout, match="cannot connect"):
            await client.send(post(origin.url + "/echo", connect=0.2))
        busy.close()
        assert await body_of(await client.send(post(origin.url + "/echo")))
    finally:
        await client.close()


async def test_close_closes_busy_connections(origin: WebUpstream) -> None:
    client = UpstreamClient()
    response = await client.send(post(origin.url + "/hang"))
    await client.close()
    async with asyncio.timeout(2):
        await origin.closed.wait()
    with pytest.raises(UpstreamUnreachable):
        await response.read()
    with pytest.raises(UpstreamUnreachable):
        await client.send(post(origin.url + "/echo"))


async def test_close_while_connecting(raw: Callable[..., Awaitable[RawServer]]) -> None:
    server = await raw(answering(OK))
    client = UpstreamClient()
    sending = asyncio.ensure_future(client.send(post(server.url)))
    await asyncio.sleep(0)  # the connection is on its way
    await client.close()
    with pytest.raises(UpstreamUnreachable):
        await sending
    for _ in range(100):
        if server.connections and server.closed == server.connections:
            break
        await asyncio.sleep(0.01)
    assert (server.connections, server.closed, server.requests) == (1, 1, [])


# -- failures and timeouts ------------------------------------------------------------------


async def test_connection_refused(client: UpstreamClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamUnreachable, match="cannot connect"):
        await client.send(post(f"http://127.0.0.1:{port}/v1"))
    assert not client._conns


@pytest.mark.parametrize(
    "headers",
    [
        {"x-a": "b\r\nx-evil: 1"},
        {"x-a": "b\nc"},
        {"x-a": "b\rc"},
        {"x-a": "b\x00"},
        {"x-a\r\nx-evil": "1"},
    ],
)
async def test_header_injection_is_refused(
    origin: WebUpstream, client: UpstreamClient, headers: dict[str, str]
) -> None:
    with pytest.raises(InvalidRequest, match="CR, LF or NUL"):
        await client.send(post(origin.url + "/echo", headers=headers))
    assert origin.peers == []


async def test_malformed_answers(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    server = await raw(answering(b"HTTP/1.1 two hundred\r\n\r\n"))
    with pytest.raises(UpstreamProtocolError, match="malformed"):
        await client.send(post(server.url))


async def test_a_truncated_body_fails(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    server = await raw(
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", then_close=True)
    )
    response = await client.send(post(server.url))
    with pytest.raises(UpstreamUnreachable, match="mid-response"):
        await response.read()


async def test_a_corrupt_gzip_body_fails(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope"
    server = await raw(answering(answer))
    response = await client.send(post(server.url))
    with pytest.raises(UpstreamProtocolError, match="malformed"):
        await response.read()


def stalling(after: bytes, drip: bytes = b"", every: float = 0.0) -> RawHandler:
    """Send ``after`` once the request is in, then ``drip`` every ``every`` s, or nothing,
    until the client goes away."""

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(after)
        while True:
            try:
                if not await asyncio.wait_for(reader.read(1), every or 10):
                    return
            except TimeoutError:
                writer.write(drip)
                await writer.drain()

    return handle


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


async def _timed_failure(server: RawServer, **limits: float) -> tuple[float, str]:
    client = UpstreamClient()
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            response = await client.send(UpstreamRequest(server.url, {}, b"{}", timeouts(**limits)))
            async for _ in response.iter_chunks():
                pass
    finally:
        await client.close()
    return time.monotonic() - started, str(caught.value)


async def test_first_byte_timeout(raw: Callable[..., Awaitable[RawServer]]) -> None:
    server = await raw(stalling(b""))
    elapsed, message = await _timed_failure(server, first_byte=0.3, idle=5)
    assert 0.25 <= elapsed < 1.5
    assert message == "upstream did not answer in time"


async def test_idle_timeout_between_chunks(raw: Callable[..., Awaitable[RawServer]]) -> None:
    server = await raw(stalling(CHUNKED_HEAD + b"9\r\ndata: 1\n\n\r\n"))
    elapsed, message = await _timed_failure(server, first_byte=5, idle=0.3)
    assert 0.25 <= elapsed < 1.5
    assert message == "upstream sent nothing for 0.3 s"


async def test_idle_timeout_is_reset_by_each_chunk(
    raw: Callable[..., Awaitable[RawServer]],
) -> None:
    server = await raw(stalling(CHUNKED_HEAD, b"9\r\ndata: 1\n\n\r\n", every=0.1))
    elapsed, message = await _timed_failure(server, first_byte=5, idle=0.3, total=0.8)
    assert 0.75 <= elapsed < 2.0
    assert message == "upstream took longer than 0.8 s"


@pytest.mark.parametrize(("first", "second"), [(0.3, 0.5), (3.0, 0.3)])
async def test_first_byte_timeout_on_a_reused_connection(
    raw: Callable[..., Awaitable[RawServer]], client: UpstreamClient, first: float, second: float
) -> None:
    """The second request's own deadline counts, not one left from the first."""

    async def once(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(OK)
        await server.read_request(reader)
        await reader.read(1)  # until the client gives up

    server = await raw(once)
    await body_of(await client.send(post(server.url, first_byte=first)))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="did not answer"):
        await client.send(post(server.url, first_byte=second))
    assert second - 0.05 <= time.monotonic() - started < second + 1.0
    assert server.connections == 1


async def test_total_timeout_before_headers(raw: Callable[..., Awaitable[RawServer]]) -> None:
    server = await raw(stalling(b""))
    elapsed, message = await _timed_failure(server, first_byte=5, total=0.3)
    assert 0.25 <= elapsed < 1.5
    assert "did not answer" in message or "longer than" in message


# -- cancellation ---------------------------------------------------------------------------


async def test_cancelling_mid_stream_closes_the_connection(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        response = await client.send(post(origin.url + "/hang"))
        async for _ in response.iter_chunks():
            first.set()

    task = asyncio.ensure_future(consume())
    async with asyncio.timeout(2):
        await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(2):
        await origin.closed.wait()
    assert not client._conns


async def test_cancelling_before_the_headers_closes_the_connection(
    origin: WebUpstream, client: UpstreamClient
) -> None:
    task = asyncio.ensure_future(client.send(post(origin.url + "/stall")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(2):
        await origin.closed.wait()
    assert not client._conns


# -- addresses and TLS ----------------------------------------------------------------------


async def test_ipv6_literal_host(raw: Callable[..., Awaitable[RawServer]]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = RawServer(answering(OK), host="::1")
    try:
        await server.start()
    except OSError:
        pytest.skip("no IPv6 loopback")
    client = UpstreamClient()
    try:
        assert await body_of(await client.send(post(server.url))) == b"ok"
        assert b"\r\nHost: [::1]:%d\r\n" % server.port in server.requests[0]
    finally:
        await client.close()
        await server.stop()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 (and no name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orcarouter test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("upstream-tls")
    files = Certificate(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


async def test_https_with_a_verified_certificate(certificate: Certificate) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.cert, certificate.key)
    origin = WebUpstream()
    runner = await _serve(origin, server_context)
    trusting = ssl.create_default_context(cafile=str(certificate.cert))
    client = UpstreamClient(ssl_context=trusting)
    try:
        url = f"https://127.0.0.1:{origin.port}"
        for path in ("/echo", "/gzip", "/chunked"):
            await body_of(await client.send(post(url + path)))
        assert len(set(origin.peers)) == 1
        seen = orjson.loads(await body_of(await client.send(post(url + "/echo"))))
        assert dict(seen["headers"])["Host"] == f"127.0.0.1:{origin.port}"
        # the default context does not trust the test certificate
        untrusting = UpstreamClient()
        try:
            with pytest.raises(UpstreamUnreachable, match="cannot connect"):
                await untrusting.send(post(url + "/echo"))
        finally:
            await untrusting.close()
    finally:
        await client.close()
        await runner.cleanup()


async def test_https_checks_the_host_name(certificate: Certificate) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.cert, certificate.key)
    origin = WebUpstream()
    runner = await _serve(origin, server_context)
    client = UpstreamClient(ssl_context=ssl.create_default_context(cafile=str(certificate.cert)))
    try:  # the same server by a name the certificate does not carry
        with pytest.raises(UpstreamUnreachable, match=r"cannot connect.*match"):
            await client.send(post(f"https://localhost:{origin.port}/echo"))
        assert origin.peers == []
    finally:
        await client.close()
        await runner.cleanup()


async def _stream_failure(server: RawServer, *, came: bool, **limits: float) -> tuple[float, str]:
    """Read a stream whose reader expects its first event (``came``: and says it came at the
    first chunk), timing the failure."""
    client = UpstreamClient()
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            response = await client.send(UpstreamRequest(server.url, {}, b"{}", timeouts(**limits)))
            response.expect_event()
            while await response.next_chunk() is not None:
                if came:
                    response.event_came()
    finally:
        await client.close()
    return time.monotonic() - started, str(caught.value)


async def test_a_stream_of_pings_fails_at_the_first_byte_deadline(
    raw: Callable[..., Awaitable[RawServer]],
) -> None:
    server = await raw(stalling(CHUNKED_HEAD, b"8\r\n: ping\n\n\r\n", every=0.1))
    elapsed, message = await _stream_failure(server, came=False, first_byte=0.4, idle=5)
    assert 0.35 <= elapsed < 1.5
    assert message == "upstream sent no first event in time"


async def test_once_the_first_event_came_only_the_other_timeouts_count(
    raw: Callable[..., Awaitable[RawServer]],
) -> None:
    server = await raw(stalling(CHUNKED_HEAD, b"9\r\ndata: 1\n\n\r\n", every=0.1))
    elapsed, message = await _stream_failure(server, came=True, first_byte=0.3, total=0.9)
    assert 0.85 <= elapsed < 2.0
    assert message == "upstream took longer than 0.9 s"
