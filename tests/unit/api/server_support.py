"""A real ``uvicorn.Server`` running the gateway's HTTP/1.1 protocol (``api.server``) on a free
port of 127.0.0.1, a raw-socket client that reads responses as they are on the wire, and the
small ASGI apps the server's tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from orcarouter.api.asgi import Receive, Scope, Send
from orcarouter.api.server import ServerProtocol

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
