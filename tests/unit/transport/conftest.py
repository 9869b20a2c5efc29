"""Local image servers on 127.0.0.1, a fake DNS and a spy on outgoing connections."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web

from orcarouter.transport.egress import EgressFetcher, EgressPolicy


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc


def tiny_png() -> bytes:
    """A valid 1x1 RGBA PNG."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


PNG = tiny_png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32 + b"\xff\xd9"
SECRET = "SECRET-BODY-must-not-leak"
CAP = 1024


@dataclass
class ImageServer:
    """An aiohttp server with one route per behaviour; counts hits and records Host headers."""

    hits: Counter[str] = field(default_factory=Counter)
    hosts: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/img.png", self._png)
        app.router.add_get("/exact.png", self._exact)
        app.router.add_get("/mislabelled.png", self._mislabelled)
        app.router.add_get("/page.html", self._html)
        app.router.add_get("/fake.png", self._fake_png)
        app.router.add_get("/drawing.svg", self._svg)
        app.router.add_get("/gzipped.png", self._gzipped)
        app.router.add_get("/big.png", self._big)
        app.router.add_get("/endless.png", self._endless)
        app.router.add_get("/slow.png", self._slow)
        app.router.add_get("/drip.png", self._drip)
        app.router.add_get("/missing.png", self._missing)
        app.router.add_get("/hop/{n}", self._hop)
        app.router.add_get("/to", self._to)
        app.router.add_get("/nowhere", self._nowhere)
        return app

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.hits[request.path] += 1
        self.hosts.append(request.headers.get("Host", ""))

    async def _png(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=PNG, content_type="image/png")

    async def _exact(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = PNG + b"\x00" * (CAP - len(PNG))
        return web.Response(body=body, content_type="image/png")

    async def _mislabelled(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=JPEG, content_type="image/png")

    async def _html(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text=f"<html>{SECRET}</html>", content_type="text/html")

    async def _fake_png(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text=f"<html>{SECRET}</html>", content_type="image/png")

    async def _svg(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text="<svg/>", content_type="image/svg+xml")

    async def _gzipped(self, request: web.Request) -> web.Response:
        self._seen(request)
        headers = {"Content-Encoding": "gzip"}
        return web.Response(body=zlib.compress(PNG), content_type="image/png", headers=headers)

    async def _big(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=PNG + b"\x00" * (CAP * 4), content_type="image/png")

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        """A chunked PNG without Content-Length that would go on for 1 GiB."""
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await response.write(PNG)
        block = b"\x00" * 65536
        try:
            for _ in range(16 * 1024):
                await response.write(block)
        except ConnectionError:
            pass
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        self._seen(request)
        await asyncio.sleep(5)
        return web.Response(body=PNG, content_type="image/png")

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        try:
            for byte in PNG:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.2)
        except ConnectionError:
            pass
        return response

    async def _missing(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=404, text=SECRET)

    async def _hop(self, request: web.Request) -> web.Response:
        self._seen(request)
        n = int(request.match_info["n"])
        location = "/img.png" if n <= 1 else f"/hop/{n - 1}"
        raise web.HTTPFound(location)

    async def _to(self, request: web.Request) -> web.Response:
        self._seen(request)
        raise web.HTTPFound(request.query["location"])

    async def _nowhere(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=302)


AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


@dataclass
class FakeLookup:
    """``getaddrinfo`` over a fixed table; records the names it was asked for."""

    table: Mapping[str, Sequence[str]]
    calls: list[str] = field(default_factory=list)

    async def __call__(
        self,
        host: str,
        port: int,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        self.calls.append(host)
        addresses = self.table.get(host)
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos: list[AddrInfo] = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos


DNS = {
    "images.example": ["127.0.0.1"],
    "evil.example": ["127.0.0.1"],
    "other.example": ["127.0.0.1"],
    "ten.example": ["10.1.2.3"],
    "meta.example": ["169.254.169.254"],
    "v6loop.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "mapped-meta.example": ["::ffff:169.254.169.254"],
    "cgnat.example": ["100.64.0.1"],
    "ula.example": ["fd12:3456:789a::1"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
    "public.example": ["93.184.216.34"],
}

FetcherFactory = Callable[..., EgressFetcher]


@dataclass
class ConnectSpy:
    """Every address a socket was connected to."""

    addresses: list[Any] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    image_server = ImageServer()
    await image_server.start()
    yield image_server
    await image_server.stop()


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    """Record outgoing connects (aiohttp connects through ``loop.sock_connect``)."""
    loop = asyncio.get_running_loop()
    spy = ConnectSpy()
    original = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        spy.addresses.append(address)
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return spy


@pytest.fixture
async def make_fetcher() -> AsyncIterator[FetcherFactory]:
    """Build fetchers over the fake DNS; all are closed after the test."""
    made: list[EgressFetcher] = []

    def make(
        policy: EgressPolicy | None = None,
        *,
        lookup: FakeLookup | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> EgressFetcher:
        fetcher = EgressFetcher(
            policy or EgressPolicy(allow_private=True, max_bytes=CAP, timeout=2.0),
            lookup=lookup or FakeLookup(DNS),
            ssl_context=ssl_context,
        )
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``images.example`` (skips without the openssl tool)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=images.example",
            "-addext", "subjectAltName=DNS:images.example",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(tls_files: tuple[Path, Path]) -> AsyncIterator[ImageServer]:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    image_server = ImageServer()
    await image_server.start(context)
    yield image_server
    await image_server.stop()


@pytest.fixture
def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=str(tls_files[0]))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The upstream client's tests run on the stock loop and on uvloop (production's loop)."""
    if item.path.name == "test_upstream_client.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
