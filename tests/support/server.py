"""An aiohttp server on 127.0.0.1 in a background thread, for the fake upstreams."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class BackgroundServer:
    """Runs ``add_routes``'s application on a free port in its own thread and event loop."""

    def __init__(self) -> None:
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        """Register the server's handlers."""
        raise NotImplementedError

    def start(self) -> None:
        """Start serving; returns once the port is bound."""
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()


async def end_stream(
    request: web.Request, response: web.StreamResponse, *, cut: bool = False
) -> web.StreamResponse:
    """End a streamed answer: the end of its body, or (``cut``) the connection dropped 50 ms
    after the last write instead."""
    if cut:
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response
    await response.write_eof()
    return response
