"""The fault-injection TCP proxy: forwards, cuts every connection at once, refuses new ones
while cut, forwards again after ``restore()``, and rewrites database URLs to itself."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.support.tcp_proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*echo) as running:
        yield running


def _connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def _echoes(sock: socket.socket, payload: bytes) -> bool:
    """Whether ``payload`` comes back whole; False when the connection fails."""
    try:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                return False
            received += chunk
    except OSError:
        return False
    return received == payload


def _fresh_connection_echoes(proxy: TcpProxy, payload: bytes) -> bool:
    """Whether a new connection carries ``payload`` there and back; False when it fails
    (the reset of a refused connection may arrive before ``connect`` even returns)."""
    try:
        sock = _connect(proxy)
    except OSError:
        return False
    with sock:
        return _echoes(sock, payload)


def test_forwards_both_ways_including_large_payloads(proxy: TcpProxy) -> None:
    with _connect(proxy) as sock:
        assert _echoes(sock, b"hello")
        assert _echoes(sock, bytes(range(256)) * 4096)  # 1 MiB, many reads and writes
        assert proxy.connections == 1


def test_cut_resets_open_connections_and_refuses_new_ones_until_restored(
    proxy: TcpProxy,
) -> None:
    with _connect(proxy) as first, _connect(proxy) as second:
        assert _echoes(first, b"a") and _echoes(second, b"b")
        proxy.cut()
        assert proxy.is_cut and proxy.connections == 0
        assert not _echoes(first, b"after the cut")
        assert not _echoes(second, b"after the cut")
    assert not _fresh_connection_echoes(proxy, b"during the cut")  # accepted, reset at once
    assert proxy.refused == 1
    proxy.restore()
    assert _fresh_connection_echoes(proxy, b"back again")


def test_a_dead_target_resets_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refuses connections
        with TcpProxy("127.0.0.1", port) as proxy:
            assert not _fresh_connection_echoes(proxy, b"nobody there")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/test",
            "postgresql://postgres@{proxy}/test",
        ),
        (
            "postgresql+psycopg://user:p%40ss@db.internal/orca?sslmode=disable",
            "postgresql+psycopg://user:p%40ss@{proxy}/orca?sslmode=disable",
        ),
        ("redis://127.0.0.1:6379/0", "redis://{proxy}/0"),
        ("redis://:secret@cache:6380", "redis://:secret@{proxy}"),
    ],
)
def test_url_for_points_a_url_at_the_proxy(proxy: TcpProxy, url: str, expected: str) -> None:
    assert proxy.url_for(url) == expected.format(proxy=f"127.0.0.1:{proxy.port}")


def test_for_url_targets_the_urls_host_and_default_port() -> None:
    assert (TcpProxy.for_url("postgresql://u@db/x").target_port) == 5432
    proxy = TcpProxy.for_url("redis://cache.local:6380/1")
    assert (proxy.target_host, proxy.target_port) == ("cache.local", 6380)
    with pytest.raises(ValueError, match="no host"):
        TcpProxy.for_url("unix:///tmp/socket")
