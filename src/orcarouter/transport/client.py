"""The one outbound client: a lean HTTP/1.1 keep-alive pool on asyncio protocols.

Every upstream call goes through here (DESIGN.md §5.3). A general client library spends most of
the gateway's per-request budget on this path (DESIGN.md §4), so this module owns just what the
gateway needs: POST over HTTP/1.1 with llhttp (httptools) parsing the answer, a per-origin LIFO
pool of keep-alive connections under one total limit, gzip/deflate decoding, read flow control,
four timeouts (connect, first byte, idle between chunks, total) kept on one lazily re-armed timer
per connection, and one retry when a reused connection was closed by the server before it
answered a byte (the idle-close race, as Go's http.Transport does).

Deliberately absent: HTTP/2, proxies, redirects, cookies, credentials in the URL, methods other
than POST, streamed request bodies, brotli and a DNS cache. Foreign exceptions stop here:
callers see only the gateway's ``Upstream*`` errors (``InvalidRequest`` for a header that must
not be sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar, cast, overload
from urllib.parse import quote, urlsplit

import httptools

from orcarouter.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from orcarouter.settings import TimeoutsConfig
from orcarouter.transport.chunks import body_chunks

MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
HIGH_WATER: Final = 256 * 1024  # buffered unread body bytes above which the socket stops being read
_SLACK: Final = 0.002  # timers may fire this early (uvloop counts milliseconds)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NEEDS_QUOTING: Final = re.compile(r"[^\x21-\x7e]")
_TARGET_SAFE: Final = "/?&=%:@!$'()*+,;~-._"
_OWN_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "accept-encoding"})
_D = TypeVar("_D")
_Key = tuple[str, str, int]
# Takes body bytes as they are read; returns a future while its consumer can take no more (the
# socket is not read until it is done), else None. It must not raise.
Sink = Callable[[bytes], "asyncio.Future[None] | None"]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What to send: the URL and headers come from operator config, the body is prepared."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    timeouts: TimeoutsConfig


@dataclass(frozen=True, slots=True)
class _Target:
    """A parsed URL: the pool key, the request line and the Host header line."""

    key: _Key
    tls: bool
    line: str
    host: str


def _parse_target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname or "", parts.port
        host = host if host.isascii() else host.encode("idna").decode("ascii")
    except ValueError as exc:  # UnicodeError is one
        raise UpstreamUnreachable(f"invalid upstream URL: {exc}") from None
    if scheme not in _DEFAULT_PORTS or not host:
        raise UpstreamUnreachable(f"unsupported upstream URL (scheme {scheme!r})")
    default = _DEFAULT_PORTS[scheme]
    port = port or default
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _NEEDS_QUOTING.search(path):
        path = quote(path, safe=_TARGET_SAFE)
    name = f"[{host}]" if ":" in host else host
    authority = name if port == default else f"{name}:{port}"
    return _Target((scheme, host, port), scheme == "https", f"POST {path} HTTP/1.1\r\n", authority)


def _head(target: _Target, headers: Mapping[str, str], length: int) -> bytes:
    """The request head; refuses CR, LF and NUL anywhere in a header (no smuggling)."""
    lines = [target.line, f"Host: {target.host}\r\n"]
    accept = True
    for name, value in headers.items():
        lower = name.lower()
        if lower in _OWN_HEADERS:
            if lower == "host":
                lines[1] = f"Host: {value}\r\n"
                continue
            if lower != "accept-encoding":
                continue  # the body's length is ours to state
            accept = False
        lines.append(f"{name}: {value}\r\n")
    if accept:
        lines.append("Accept-Encoding: gzip, deflate\r\n")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    text = "".join(lines)
    breaks = len(lines) + 1
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text:
        raise InvalidRequest("an upstream request header contains CR, LF or NUL")
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise InvalidRequest("an upstream request header cannot be encoded") from None


def _find(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    size = len(name)
    for field, value in headers:
        if len(field) == size and field.lower() == name:
            return value
    return None


class ResponseHeaders:
    """Response headers as received; ``get`` ignores case and returns the first value."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _D) -> str | _D: ...
    def get(self, name: str, default: object = None) -> object:
        value = _find(self.raw, name.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parses one response at a time and buffers its body."""

    __slots__ = (
        "_chunks", "_client", "_coding", "_decoder", "_event_by", "_first_by", "_interim",
        "_last_data", "_loop", "_parser", "_paused", "_room", "_sink", "_timeouts", "_timer",
        "_timer_at", "_total_by", "_waiter", "buffered", "closed", "complete", "counted",
        "error", "headers", "headers_done", "idle", "idle_since", "keep_alive", "key",
        "received", "status", "transport",
    )  # fmt: skip
    transport: asyncio.Transport

    def __init__(self, client: UpstreamClient, key: _Key) -> None:
        self._client, self.key, self._loop = client, key, client._loop
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sink: Sink | None = None
        self._chunks: list[bytes] = []
        self._decoder: zlib._Decompress | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.error: GatewayError | None = None
        self.complete = True  # no exchange in progress: any byte from the server is unexpected
        self.closed = self.counted = self.idle = self._paused = False
        self.headers_done = self.keep_alive = self.received = False
        self.status = self.buffered = 0
        self.idle_since = self._last_data = 0.0

    def start(self, head: bytes, body: bytes, timeouts: TimeoutsConfig, started: float) -> None:
        """Send one request; the response state starts afresh."""
        self.status, self.headers, self._chunks, self.buffered = 0, [], [], 0
        self.headers_done = self.complete = self.keep_alive = self.received = False
        self._interim, self._coding, self._decoder = False, b"", None
        self._room = MAX_RESPONSE_BYTES  # decoded bytes a compressed body may still grow to
        self._timeouts, self._last_data = timeouts, started
        self._total_by = started + timeouts.total
        self._first_by = min(started + timeouts.first_byte, self._total_by)
        self._event_by = 0.0  # none until a stream's reader expects its first event
        if self._timer is None or self._timer_at > self._first_by:  # an earlier one re-arms
            self._arm(self._first_by)
        if self.closed or self.transport.is_closing():
            self._fail(UpstreamUnreachable("upstream closed the connection unanswered"))
            return
        try:
            self.transport.writelines((head, body))
        except (OSError, RuntimeError) as exc:
            self._fail(UpstreamUnreachable(f"upstream connection failed: {exc}"))

    @property
    def has_data(self) -> bool:
        return bool(self._chunks)

    def take(self) -> list[bytes]:
        """The buffered body chunks, leaving the buffer empty (and the socket read again)."""
        chunks, self._chunks, self.buffered = self._chunks, [], 0
        if self._paused and not self.closed:
            self._paused = False
            self._last_data = self._loop.time()
            self.transport.resume_reading()
        return chunks

    def deliver(self, body: bytes, sink: Sink) -> None:
        """Hand ``body`` to ``sink``; stop reading the socket while the sink is full."""
        full = sink(body)
        if full is not None and not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()
            full.add_done_callback(self._sink_ready)

    def _sink_ready(self, _: object = None) -> None:
        """Read the socket again (the sink took what it had, or the exchange is over)."""
        if self._paused and not self.closed:
            self._paused = False
            self._last_data = self._loop.time()
            self.transport.resume_reading()

    async def wait(self) -> None:
        """Until the next response event (headers, body, end, failure)."""
        self._waiter = waiter = self._loop.create_future()
        await waiter

    def release(self) -> None:
        """Back to the pool when the response was read whole and may be followed; else close."""
        if self.complete and self.keep_alive and not self._chunks and not self.closed:
            self._client._put(self)
        else:
            self.close()

    def close(self) -> None:
        """Drop the connection; a response still in progress fails."""
        if self.error is None and not self.complete:
            self.error = UpstreamUnreachable("the upstream connection was closed")
        if self.closed:
            self._wake()
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = getattr(self, "transport", None)  # None while still connecting
        if transport is not None and not transport.is_closing():
            transport.abort()
        self._client._discard(self)
        self._wake()

    def _fail(self, error: GatewayError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """One timer for every deadline: fail the one that passed, else re-arm for the next.
        It outlives a finished exchange (then it does nothing), so a busy keep-alive
        connection does not schedule a new timer per request."""
        self._timer = None
        if self.complete:
            return
        now = self._loop.time() + _SLACK
        timeouts = self._timeouts
        if now >= self._total_by:
            self._fail(UpstreamTimeout(f"upstream took longer than {timeouts.total:g} s"))
        elif not self.headers_done:
            if now >= self._first_by:
                self._fail(UpstreamTimeout("upstream did not answer in time"))
            else:
                self._arm(self._first_by)
        elif self._event_by and now >= self._event_by:
            self._fail(UpstreamTimeout("upstream sent no first event in time"))
        elif not self._paused and now >= self._last_data + timeouts.idle:
            self._fail(UpstreamTimeout(f"upstream sent nothing for {timeouts.idle:g} s"))
        else:  # data came meanwhile, or the reader is behind (not the upstream's fault)
            since = now if self._paused else self._last_data
            when = min(since + timeouts.idle, self._total_by)
            self._arm(min(when, self._event_by) if self._event_by else when)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.closed:  # the client was closed while this connection was being made
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.complete or self.closed:  # nothing is expected between responses
            self.close()
            return
        self.received = True
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("upstream switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            error = cause if isinstance(cause, GatewayError) else None
            self._fail(error or UpstreamProtocolError(f"upstream sent malformed HTTP: {exc}"))

    def eof_received(self) -> None:
        self._ended(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        self.close()

    def _ended(self, exc: Exception | None) -> None:
        if self.complete or self.closed:
            self.close()
        elif self.headers_done and self._delimited_by_close():
            self._finish(keep_alive=False)
        elif self.received:
            self._fail(UpstreamUnreachable("upstream connection failed mid-response"))
        else:
            reason = f": {exc}" if exc else ""
            self._fail(UpstreamUnreachable(f"upstream closed the connection unanswered{reason}"))

    def _delimited_by_close(self) -> bool:
        chunked = _find(self.headers, b"transfer-encoding") or b""
        return _find(self.headers, b"content-length") is None and b"chunked" not in chunked.lower()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise UpstreamProtocolError("upstream sent a second response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx informational: the real answer follows
            self._interim, self.headers = True, []
            return
        self.status, self.headers_done = status, True
        coding = (_find(self.headers, b"content-encoding") or b"").strip().lower()
        if coding in (b"gzip", b"x-gzip", b"deflate"):
            self._coding = coding
        idle_by = self._last_data + self._timeouts.idle
        if idle_by < self._timer_at:
            self._arm(idle_by)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._coding:
            try:
                if self._decoder is None:
                    self._decoder = _decompressor(self._coding, body)
                # Bounded output: a small compressed body must not inflate without limit.
                body = self._decoder.decompress(body, self._room + 1)
            except zlib.error as exc:
                raise UpstreamProtocolError(f"upstream body was malformed: {exc}") from None
            self._room -= len(body)
            if self._room < 0:
                raise UpstreamProtocolError(
                    f"upstream body inflates past {MAX_RESPONSE_BYTES} bytes"
                ) from None
            if not body:
                return
        if self._sink is not None:
            self.deliver(body, self._sink)
            return
        self._chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        else:
            self._finish(self._parser.should_keep_alive())

    def _finish(self, keep_alive: bool) -> None:
        if self._decoder is not None and (tail := self._decoder.flush()):
            if self._sink is not None:
                self.deliver(tail, self._sink)
            else:
                self._chunks.append(tail)
        self.keep_alive = keep_alive
        self.complete = True
        self._wake()


def _decompressor(coding: bytes, first: bytes) -> zlib._Decompress:
    if coding != b"deflate":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # "deflate" means zlib-wrapped (RFC 9110 §8.4.1.2), yet some servers send it raw
    return zlib.decompressobj(zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS)


class UpstreamResponse:
    """A response whose headers have arrived; read the body whole or as a stream."""

    __slots__ = ("_conn", "_settled", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._settled = False
        self.status = conn.status
        self.headers = ResponseHeaders(conn.headers)

    @property
    def is_event_stream(self) -> bool:
        """True when the upstream answered with Server-Sent Events."""
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def at_end(self) -> bool:
        """True once the whole body has arrived (what is left to read is buffered already)."""
        return self._settled or self._conn.complete

    async def read(self, limit: int = MAX_RESPONSE_BYTES) -> bytes:
        """The whole (decoded) body, refusing bodies over ``limit`` bytes."""
        conn = self._conn
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                if conn.has_data:
                    size += conn.buffered
                    if size > limit:
                        raise UpstreamProtocolError(f"upstream response exceeded {limit} bytes")
                    parts += conn.take()
                elif conn.complete:
                    return parts[0] if len(parts) == 1 else b"".join(parts)
                elif conn.error is not None:
                    raise conn.error
                else:
                    await conn.wait()
        except BaseException:
            self.close()
            raise

    async def next_chunk(self) -> bytes | None:
        """The body bytes that arrived since the last call (what is buffered comes as one
        piece), waiting for some; None at the end of the body."""
        conn = self._conn
        try:
            while True:
                if conn.has_data:
                    chunks = conn.take()
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if conn.complete:
                    return None
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:  # cancelled or failed: the connection is done for
            self.close()
            raise

    def expect_event(self) -> None:
        """Fail the exchange (``UpstreamTimeout``) unless ``event_came`` is called by the
        first-byte deadline: a stream's headers, or comments and pings, are not its first
        event. Kept on the connection's one timer (armed for it if it would run later)."""
        conn = self._conn
        if not conn.complete and not conn.closed:
            conn._event_by = conn._first_by
            if conn._timer is None or conn._timer_at > conn._first_by:
                conn._arm(conn._first_by)

    def event_came(self) -> None:
        """The stream's first event came: only the idle and total timeouts count now."""
        self._conn._event_by = 0.0

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (what is buffered comes as one piece); abandoning the
        iteration, or its failing, closes the connection."""
        return body_chunks(self)

    async def push(self, sink: Sink) -> None:
        """Hand the rest of the body to ``sink`` from the connection's own read callback, so
        that a read costs no task wake-up (a model's stream is a read per event); what is
        buffered goes first. Returns at the end of the body; raises the connection's error."""
        conn = self._conn
        try:
            if conn.has_data:
                chunks = conn.take()
                conn.deliver(chunks[0] if len(chunks) == 1 else b"".join(chunks), sink)
            conn._sink = sink
            try:
                while not conn.complete:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait()
            finally:
                conn._sink = None
                if conn.complete:  # the body is whole: a pooled connection must be read again
                    conn._sink_ready()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection (used when the client went away or the body is not wanted)."""
        if not self._settled:
            self._settled = True
            self._conn.close()

    def release(self) -> None:
        """Return a fully read connection to the pool; close one that is not."""
        if self._settled:
            return
        self._settled = True
        self._conn.release()


class UpstreamClient:
    """The pooled outbound client; create inside the running event loop."""

    def __init__(
        self,
        *,
        limit: int = 1000,
        keepalive: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit, self._keepalive = limit, keepalive
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl = ssl_context
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._conns: set[_Connection] = set()  # every open connection, idle or busy
        self._waiters: deque[asyncio.Future[None]] = deque()  # for a free slot under the limit
        self._targets: dict[str, _Target] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """POST the request and wait for the response headers (the first-byte timeout)."""
        if self._closed:
            raise UpstreamUnreachable("the upstream client is closed")
        target = self._targets.get(request.url)
        if target is None:
            if len(self._targets) >= 4096:
                self._targets.clear()
            target = self._targets[request.url] = _parse_target(request.url)
        head = _head(target, request.headers, len(request.body))
        started = self._loop.time()
        stack = self._idle.get(target.key)
        if stack:
            conn = stack.pop()
            conn.idle = False
        else:
            conn = await self._connect(target, request.timeouts, started)
        try:
            return await self._exchange(conn, head, request, started)
        except UpstreamUnreachable:
            if conn.received or not conn.idle_since:  # an answer began, or the connection was new
                raise
        # the server closed the idle connection as it was reused: once more on a new one
        conn = await self._connect(target, request.timeouts, started, fresh=True)
        return await self._exchange(conn, head, request, started)

    async def _exchange(
        self, conn: _Connection, head: bytes, request: UpstreamRequest, started: float
    ) -> UpstreamResponse:
        try:
            conn.start(head, request.body, request.timeouts, started)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:
            conn.close()
            raise
        return UpstreamResponse(conn)

    async def _connect(
        self, target: _Target, timeouts: TimeoutsConfig, started: float, fresh: bool = False
    ) -> _Connection:
        """A new connection once the total limit allows one, or (unless ``fresh``) an idle one
        that was returned meanwhile; the wait is bounded like connecting."""
        loop = self._loop
        connect_by = loop.time() + timeouts.connect
        first_by = started + min(timeouts.first_byte, timeouts.total)
        host, port = target.key[1], target.key[2]
        conn = _Connection(self, target.key)
        try:
            async with asyncio.timeout_at(min(connect_by, first_by)):
                while len(self._conns) >= self._limit:
                    stack = self._idle.get(target.key)
                    if stack and not fresh:
                        conn = stack.pop()
                        conn.idle = False
                        return conn
                    if not self._evict():
                        await self._wait_for_slot()
                if self._closed:
                    raise UpstreamUnreachable("the upstream client is closed")
                self._conns.add(conn)
                conn.counted = True
                await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=self._ssl if target.tls else None,
                    server_hostname=host if target.tls else None,
                )
        except BaseException as exc:
            self._discard(conn)
            if isinstance(exc, TimeoutError):
                if connect_by <= first_by:
                    message = f"cannot connect to upstream in {timeouts.connect:g} s"
                    raise UpstreamTimeout(message) from exc
                raise UpstreamTimeout("upstream did not answer in time") from exc
            if isinstance(exc, GatewayError) or not isinstance(exc, Exception):
                raise
            raise UpstreamUnreachable(f"cannot connect to upstream: {exc}") from exc
        return conn

    async def _wait_for_slot(self) -> None:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake_waiter()  # woken and cancelled at once: pass the turn on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _evict(self) -> bool:
        """Close an idle connection (the oldest of its origin) to make room; False if none."""
        for stack in self._idle.values():
            if stack:
                conn = stack.popleft()
                conn.idle = False
                conn.close()
                return True
        return False

    def _put(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle, conn.idle_since = True, self._loop.time()
        stack = self._idle.get(conn.key)
        if stack is None:
            stack = self._idle[conn.key] = deque()
        stack.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_at(conn.idle_since + self._keepalive, self._sweep)
        self._wake_waiter()

    def _discard(self, conn: _Connection) -> None:
        """Forget a closed connection (idle or busy) and free its slot."""
        if not conn.counted:
            return
        conn.counted = False
        self._conns.discard(conn)
        if conn.idle:
            conn.idle = False
            with contextlib.suppress(ValueError):
                self._idle[conn.key].remove(conn)
        self._wake_waiter()

    def _sweep(self) -> None:
        """Close connections idle for longer than ``keepalive``; re-arm for the next one."""
        self._sweeper = None
        expired = self._loop.time() + _SLACK - self._keepalive
        next_at: float | None = None
        for stack in self._idle.values():
            while stack and stack[0].idle_since <= expired:
                conn = stack.popleft()
                conn.idle = False
                conn.close()
            if stack:
                at = stack[0].idle_since + self._keepalive
                next_at = at if next_at is None else min(next_at, at)
        if next_at is not None:
            self._sweeper = self._loop.call_at(next_at, self._sweep)

    async def close(self) -> None:
        """Close every connection, idle or busy."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._conns):
            conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports run connection_lost
