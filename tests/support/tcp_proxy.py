"""A loopback TCP proxy for fault injection: put it between a client and a real server (the
PostgreSQL or Redis of this machine), then ``cut()`` to simulate an outage and ``restore()``
to end it, without touching the server itself.

While cut, every open connection is reset (RST, as from a crashed or restarted server) and
every new one is accepted and reset at once, so asyncpg, psycopg and redis-py all fail fast
("connection reset") instead of waiting for a timeout; the listening port stays the same, so
URLs handed out before the cut stay valid after ``restore()``.

Like ``BackgroundServer``, it runs on its own event loop in a daemon thread; its methods are
called from the test's thread and return once the change is in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}
_CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN: the peer sees the connection die."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0  # connections accepted, refused ones included
        self.refused = 0  # connections reset on arrival because the proxy was cut
        self._cut = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy to the host and port of a ``postgresql://`` or ``redis://`` URL."""
        parts = urlsplit(url)
        scheme = parts.scheme.partition("+")[0]
        port = parts.port or _DEFAULT_PORTS.get(scheme)
        if parts.hostname is None or port is None:
            raise ValueError(f"no host and port in {url!r}")
        return cls(parts.hostname, port)

    # --- from the test's thread -------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Listen on a free port; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        """Close every connection and the listener, then the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    def cut(self) -> None:
        """Reset every open connection and every new one until ``restore()``."""
        self._on_loop(True)

    def restore(self) -> None:
        """Forward new connections again (connections reset by ``cut`` stay gone)."""
        self._on_loop(False)

    def _on_loop(self, cut: bool) -> None:
        if self._loop is None:
            raise RuntimeError("start the proxy first")
        asyncio.run_coroutine_threadsafe(self._set_cut(cut), self._loop).result(10)

    @property
    def is_cut(self) -> bool:
        """Whether the proxy is refusing connections now."""
        return self._cut

    @property
    def connections(self) -> int:
        """Connections being forwarded now."""
        return len(self._pairs)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{self.host}:{self.port}"

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (user, password, path,
        driver suffix and query kept): ``postgresql+psycopg://u:p@db:5432/x?sslmode=disable``
        becomes ``postgresql+psycopg://u:p@127.0.0.1:PORT/x?sslmode=disable``."""
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}{at}{self.address}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- on the proxy's loop ----------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, self.host, 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started.set()
        loop.run_forever()

    async def _set_cut(self, cut: bool) -> None:
        self._cut = cut
        if cut:
            for client, upstream in list(self._pairs):
                _reset(client)
                _reset(upstream)
            self._pairs.clear()

    async def _shutdown(self) -> None:
        await self._set_cut(True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._cut:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(writer)
            return
        if self._cut:  # cut while connecting
            _reset(up_writer)
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF or an error, then half-close the other side."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):  # reset by cut(), or the peer went away
        writer.transport.abort()
