"""The HTTP/1.1 connection protocol the gateway runs under uvicorn.

uvicorn keeps what it does well and what is not per request: sockets, worker processes, signals,
lifespan and graceful shutdown. It takes the protocol class as a setting (``http=``), and this is
that class: one connection, requests parsed by httptools (llhttp), each served by the ASGI app in
its own task. It does less per request than uvicorn's own httptools protocol (DESIGN.md §4: own
the few pieces that dominate the profile, each proven by the benchmark against the library it
replaces):

- the response head is written together with the first body part, one write instead of two;
- no ``asyncio.Event`` or timer per request: a future only when the app must wait for body bytes,
  and one keep-alive timer per connection that re-arms itself from the time of the last activity;
- header checks are three byte searches per value and a ``translate`` per name the first time
  it is seen, not two regular expressions;
- the ASGI extension ``orcarouter.on_disconnect`` lets a handler register a callback for the
  client going away mid-response, instead of a task parked on ``receive()``;
- a refusal, or a closing answer to a request whose bytes are still arriving, is followed by a
  lingering close (see ``LINGER``): a client still sending would otherwise get a reset, and
  most clients (the OpenAI and Anthropic SDKs, over httpx) then report a connection error and
  retry, sending the whole body again.

What it does not do: WebSocket or h2c upgrades (an ``Upgrade`` header is ignored and the request
answered in HTTP/1.1), and proxy headers (``X-Forwarded-For`` is not trusted; the peer address is
the client).
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NoReturn, cast
from urllib.parse import unquote

import httptools
from uvicorn.config import Config
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

from orcarouter.api.asgi import DISCONNECT_EXTENSION, WRITE_EXTENSION

log = logging.getLogger(__name__)

HIGH_WATER: Final = 64 * 1024  # request body bytes buffered before reading pauses
COALESCE_LIMIT: Final = 64 * 1024  # a body part this small is written in one piece with the head
MAX_HEAD: Final = 64 * 1024  # request line and headers
BODY_TIMEOUT = 60.0  # seconds a request body may stall between reads (nginx's default)
# A connection closed while the client may still be sending reads and drops what comes, so
# that the client reads the answer instead of a reset (nginx's lingering close): until the client
# closes, or LINGER seconds pass without a byte, or LINGER_MAX in all.
LINGER = 5.0
LINGER_MAX = 30.0


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


STATUS_LINES: Final = {code: _status_line(code) for code in range(100, 600)}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_ERROR_500: Final = b"Internal Server Error"
_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# Final: compiled code reads them from C statics, not from the module's dict.
_TOKEN_NAMES: Final[dict[bytes, bytes]] = {}  # response header names checked, lower-cased
MAX_TOKEN_NAMES: Final = 512


def _refuse_values(parts: list[bytes]) -> NoReturn:
    """RuntimeError naming the header whose value holds a CR, an LF or a NUL; ``parts`` are a
    response head's: the status line, then four a header (name, ``: ``, value, CRLF)."""
    for name, value in zip(parts[1::4], parts[3::4], strict=True):
        if 10 in value or 13 in value or 0 in value:
            raise RuntimeError(f"invalid response header value for {name!r}")
    raise RuntimeError("invalid response header value")


def _token_name(name: bytes) -> bytes:
    """``name`` in lower case; RuntimeError if it is not an HTTP token (RFC 9110 §5.1).

    Remembered: the same few names come on every response, and checking one costs two to three
    times looking it up (in a plain dict: ``lru_cache`` cost about 800 instructions a name, this
    about 300 with the call). The first ``MAX_TOKEN_NAMES`` names are kept, so names an app
    makes up per response cannot grow it; a refused name is not remembered.
    """
    lowered = _TOKEN_NAMES.get(name)
    if lowered is None:
        if not name or name.translate(None, _TCHAR):
            raise RuntimeError(f"invalid response header {name!r}")
        lowered = name.lower()
        if len(_TOKEN_NAMES) < MAX_TOKEN_NAMES:
            _TOKEN_NAMES[name] = lowered
    return lowered


class ServerProtocol(asyncio.Protocol):
    """One client connection; uvicorn creates one per accepted socket."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_running_loop()
        self.state = server_state
        self.app_state = app_state
        self.keepalive = float(config.timeout_keep_alive)
        self.limit_concurrency = config.limit_concurrency
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.current: Exchange | None = None
        self.pipeline: deque[Exchange] = deque()
        self.write_paused: asyncio.Future[None] | None = None
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        # The request being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0  # request line and complete headers
        self._head_bytes = 0  # bytes received while this head was unfinished
        self._in_head = False
        self._expect_continue = False
        self._parsing: Exchange | None = None
        self._linger_until: float | None = None  # closing: reading only to drop, until then
        self._shutting_down = False  # no lingering then: the server waits for every connection

    # --- the connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.state.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: no subclass
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self.last_active = self.loop.time()
        self.idle_timer = self.loop.call_at(self.last_active + self.keepalive, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        for exchange in (self.current, *self.pipeline):
            if exchange is not None:
                exchange.client_gone()
        self.pipeline.clear()
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self._linger_until is not None:  # closing: what the client still sends is dropped
            return
        if self._in_head:  # httptools holds a header until it ends: count what it holds
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self._in_head and self._head_bytes > MAX_HEAD:  # this head, still unfinished
                raise _HeadTooLarge
        except httptools.HttpParserUpgrade:  # answered in HTTP/1.1, then the connection closes
            for exchange in (self._parsing, self.current, *self.pipeline):
                if exchange is not None:
                    exchange.keep_alive = False
        except (httptools.HttpParserError, _HeadTooLarge) as exc:
            # raised in a parser callback, it comes back as the context of a parser error
            too_large = isinstance(exc, _HeadTooLarge) or isinstance(exc.__context__, _HeadTooLarge)
            status = 431 if too_large else 400
            self._refuse(status, "request headers too large" if status == 431 else "bad request")

    def pause_writing(self) -> None:
        if self.write_paused is None or self.write_paused.done():
            self.write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    def shutdown(self) -> None:
        """Graceful shutdown (uvicorn): close when idle, else after the response in flight."""
        self._shutting_down = True
        current = self.current
        if current is None or current.complete:
            self._close()
        else:
            current.keep_alive = False

    def _idle_check(self) -> None:
        self.idle_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        current, now = self.current, self.loop.time()
        busy = current is not None and not current.complete
        due = self.last_active + self.keepalive
        if not busy and now >= due:
            transport.close()
            return
        if (
            current is not None
            and busy
            and current.more_body
            and not current.reading_paused  # unread because the app is slow, not the client
            and now >= self.last_active + BODY_TIMEOUT
        ):
            log.info("closing a connection whose request body stalled for %g s", BODY_TIMEOUT)
            transport.close()  # the app's receive() then reports the disconnect
            return
        self.idle_timer = self.loop.call_at(max(due, now + 1.0), self._idle_check)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _linger(self) -> None:
        """Close after the answer while the client may still be sending: end our side (FIN
        after what is written), then read and drop until the client closes its side, or
        ``LINGER`` seconds pass without a byte, or ``LINGER_MAX`` in all."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._linger_until is not None:
            return
        if self._shutting_down or not transport.can_write_eof():  # TLS: no half close
            transport.close()
            return
        transport.write_eof()
        now = self.loop.time()
        self.last_active = now
        self._linger_until = now + LINGER_MAX
        transport.resume_reading()
        if self.idle_timer is not None:  # the keep-alive check gives way to the linger check
            self.idle_timer.cancel()
        self.idle_timer = self.loop.call_at(now + LINGER, self._linger_check)

    def _linger_check(self) -> None:
        self.idle_timer = None
        transport, until = self.transport, self._linger_until
        if transport is None or transport.is_closing() or until is None:
            return
        due = min(self.last_active + LINGER, until)
        if self.loop.time() >= due:
            transport.close()
            return
        self.idle_timer = self.loop.call_at(due, self._linger_check)

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.current is not None and not self.current.complete:
            transport.close()  # never inside another response: that one is cut short
            return
        transport.write(
            b"".join(
                (
                    STATUS_LINES[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
                    body,
                )
            )
        )
        self._linger()  # the rest of what was refused may still be on its way

    # --- parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._head_bytes = 0
        self._in_head = True
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            raise _HeadTooLarge
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        url = self._url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:  # absolute-form or '*'
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        version = parser.get_http_version()
        exchange = Exchange(self, version == "1.1" and parser.should_keep_alive())
        exchange.http10 = version == "1.0"
        exchange.waiting_continue = self._expect_continue and version == "1.1"  # RFC 9110 §10.1.1
        exchange.scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
            "state": self.app_state.copy(),
            "extensions": {
                DISCONNECT_EXTENSION: exchange.on_disconnect,
                WRITE_EXTENSION: exchange.write_body,
            },
        }
        if version == "1.0" and parser.should_keep_alive():
            exchange.keep_alive = True
        self._parsing = exchange
        if self.current is None or self.current.complete:
            self._start(exchange)
        else:  # pipelined: served once the one before it has answered
            self.pipeline.append(exchange)
            if self.transport is not None:
                self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if exchange is None or exchange.complete:
            return
        exchange.body.append(body)
        exchange.buffered += len(body)
        if exchange.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            exchange.reading_paused = True
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self._parsing
        if exchange is not None:
            exchange.more_body = False
            exchange.wake()
        self._parsing = None

    # --- requests ---------------------------------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        self.current = exchange
        limit = self.limit_concurrency
        if limit is not None and (  # connections count this one, tasks not yet
            len(self.state.connections) > limit or len(self.state.tasks) >= limit
        ):
            exchange.keep_alive = False
            exchange.write_error(503, b"Service Unavailable")
            return
        task = self.loop.create_task(exchange.run(self.app))
        tasks = self.state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def response_complete(self, exchange: Exchange) -> None:
        """The response is written: serve the next pipelined request or wait for one."""
        self.state.total_requests += 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not exchange.keep_alive:
            if exchange.more_body or self._parsing is not None or self.pipeline:
                self._linger()  # request bytes are still coming
            else:
                transport.close()
            return
        self.last_active = self.loop.time()
        if self.pipeline:
            self._start(self.pipeline.popleft())
            if not self.pipeline:
                transport.resume_reading()
        elif exchange.reading_paused:
            transport.resume_reading()


class _HeadTooLarge(Exception):
    """The request line and headers passed ``MAX_HEAD``."""


class Exchange:
    """One request and its response on a connection: the ASGI ``receive`` and ``send``."""

    __slots__ = (
        "body",
        "buffered",
        "chunked",
        "complete",
        "delivered",
        "disconnected",
        "head",
        "http10",
        "keep_alive",
        "more_body",
        "on_gone",
        "protocol",
        "reading_paused",
        "remaining",
        "scope",
        "started",
        "waiter",
        "waiting_continue",
    )

    def __init__(self, protocol: ServerProtocol, keep_alive: bool) -> None:
        self.protocol = protocol
        self.keep_alive = keep_alive
        self.http10 = False
        self.scope: dict[str, Any] = {}
        self.body: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.delivered = False  # the last body part went to the app
        self.reading_paused = False
        self.waiting_continue = False
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.on_gone: Callable[[], None] | None = None
        self.started = False
        self.complete = False
        self.head: bytes | None = None  # written with the first body part
        self.chunked = False
        self.remaining: int | None = 0  # Content-Length bytes still to send; None: until close

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def client_gone(self) -> None:
        """The connection closed: wake the app, and tell the handler if it is mid-response."""
        self.disconnected = True
        self.wake()
        callback = self.on_gone
        if callback is not None and not self.complete:
            self.on_gone = None
            try:
                callback()
            except Exception:  # the connection's cleanup must go on
                log.exception("the disconnect callback failed")

    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        """``orcarouter.on_disconnect``: call ``callback`` if the client goes away before the
        response is complete, at once if it is gone already (None removes it)."""
        if callback is not None and self.disconnected and not self.complete:
            self.on_gone = None
            callback()
            return
        self.on_gone = callback

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException:
            log.exception("unhandled error in the ASGI application")
            self._fail()
        else:
            if not self.complete and not self.disconnected:
                log.error("the ASGI application returned before its response was complete")
                self._fail()
        finally:
            self.on_gone = None
            # The scope holds ``on_disconnect``, bound to this exchange: a cycle that would leave
            # every request's exchange, scope and headers to the cyclic garbage collector (at
            # 200 req/s, a collection of about 80 of them every half second, 0.6 ms each).
            self.scope = {}

    def _fail(self) -> None:
        """The app failed: 500 while none of its response is on the wire, else cut it short.
        After a complete response the connection is fine (the next request may be on it)."""
        if self.complete:
            return
        if not self.started or self.head is not None:
            self.keep_alive = False
            self.write_error(500, _ERROR_500)
        else:
            self.protocol._close()

    async def receive(self) -> dict[str, Any]:
        protocol = self.protocol
        transport = protocol.transport
        assert transport is not None
        if self.waiting_continue:
            self.waiting_continue = False
            if not transport.is_closing():
                transport.write(_CONTINUE)
        if not self.delivered:
            while not self.body and self.more_body and not self.disconnected:
                if self.reading_paused:
                    self.reading_paused = False
                    transport.resume_reading()
                await self._wait()
            if not self.disconnected:
                parts = self.body
                self.body = []
                self.buffered = 0
                if self.reading_paused:
                    self.reading_paused = False
                    transport.resume_reading()
                self.delivered = not self.more_body
                body = parts[0] if len(parts) == 1 else b"".join(parts)
                return {"type": "http.request", "body": body, "more_body": self.more_body}
        while not self.disconnected and not self.complete:  # only the end is left to tell
            await self._wait()
        return {"type": "http.disconnect"}

    async def _wait(self) -> None:
        self.waiter = self.protocol.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        paused = protocol.write_paused
        if paused is not None and not self.disconnected:
            await paused
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self.head = self._head(message["status"], message.get("headers", ()))
            self.started = True
            self.waiting_continue = False
            protocol.loop.call_soon(self._flush_head)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        self._write(message.get("body", b""), message.get("more_body", False))

    def write_body(self, data: bytes) -> asyncio.Future[None] | None:
        """``orcarouter.write_body``: a part of the started response's body, written at once;
        the connection's pause while the client's buffer is full, else None."""
        if self.disconnected:
            return None
        if not self.started:
            raise RuntimeError("expected 'http.response.start' before the body")
        self._write(data, True)
        paused = self.protocol.write_paused
        return paused if paused is not None and not paused.done() else None

    def _write(self, data: bytes, more: bool) -> None:
        if self.complete:
            raise RuntimeError("the response is already complete")
        protocol = self.protocol
        body = self._frame(data, more)
        transport = protocol.transport
        assert transport is not None
        head = self.head
        if head is not None:
            self.head = None
            if len(body) < COALESCE_LIMIT:
                body = head + body  # one write, one segment
            else:
                transport.write(head)
        if body:
            transport.write(body)
        if not more:
            self.complete = True
            self.wake()
            protocol.response_complete(self)

    def _frame(self, body: bytes, more: bool) -> bytes:
        """A body part as it goes on the wire, checked against the declared length."""
        if self.scope["method"] == "HEAD":
            return b""
        if self.chunked:
            framed = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            return framed if more else framed + b"0\r\n\r\n"
        if self.remaining is not None:
            self.remaining -= len(body)
            if self.remaining < 0:
                raise RuntimeError("response body longer than its Content-Length")
            if not more and self.remaining:
                raise RuntimeError("response body shorter than its Content-Length")
        return body

    def _flush_head(self) -> None:
        head = self.head
        transport = self.protocol.transport
        if head is not None and transport is not None and not transport.is_closing():
            self.head = None
            transport.write(head)

    def _head(self, status: int, headers: Any) -> bytes:
        parts = [STATUS_LINES[status]]
        length: int | None = None
        for pairs in (self.protocol.state.default_headers, headers):
            for name, value in pairs:
                lowered = _token_name(name)
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"transfer-encoding" or lowered == b"connection":
                    # framing and persistence are this server's: chunked exactly when there is
                    # no length; the connection header is written once, below
                    if lowered == b"connection" and b"close" in value.lower():
                        self.keep_alive = False
                    continue
                parts.append(lowered)  # four appends: a tuple concatenated costs three times more
                parts.append(b": ")
                parts.append(value)
                parts.append(b"\r\n")
        # The values, checked together: one join and three byte searches, not three a value.
        # Int needles: `b"\n" in value` first fails an int conversion (~0.3 µs, CPython 3.11).
        values = b"".join(parts[3::4])
        if 10 in values or 13 in values or 0 in values:  # CR, LF, NUL
            _refuse_values(parts)
        bodiless = self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
        if length is not None:
            self.remaining = 0 if bodiless else length
        elif not bodiless:
            if self.http10:  # no chunked encoding in HTTP/1.0: the close ends the body
                self.keep_alive = False
                self.remaining = None
            else:
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        elif self.http10:  # an HTTP/1.0 connection persists only when the response says so
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def write_error(self, status: int, body: bytes) -> None:
        """A plain-text answer written by the server itself (503, 500)."""
        self.started = True
        self.head = None
        self.remaining = 0
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.write(
                b"".join(
                    (
                        STATUS_LINES[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"" if self.keep_alive else b"connection: close\r\n",
                        b"\r\n",
                        body,
                    )
                )
            )
        self.complete = True
        self.protocol.response_complete(self)
