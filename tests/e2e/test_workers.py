"""``orcarouter serve --workers 2``: two worker processes behind one port, one ledger.

Which worker served a request is read from ``/proc``: a worker holds the accepted keep-alive
connection of each client it answered (a socket fd whose ESTABLISHED row in ``/proc/net/tcp``
has the gateway's port as its local port), so no response header or log line is needed.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import httpx2
import openai
import pytest
from aiohttp import web

from tests.conftest import ADMIN_KEY, REPLAY_ENV, replay_config
from tests.e2e.test_smoke import CHAT
from tests.support.gateway import GatewayProcess
from tests.support.replay import (
    Handler,
    Received,
    ReplayUpstream,
    json_answer,
    openai_stream,
    sse_answer,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

MODEL = "replay-openai/gpt-4o-mini"
ESTABLISHED = "01"
LISTEN = "0A"


def _children(parent: int) -> list[int]:
    """Live child processes of ``parent`` that run a uvicorn worker (multiprocessing spawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _tcp_sockets(port: int, state: str) -> dict[str, int]:
    """Inode -> remote port of every TCP socket in ``state`` whose local port is ``port``."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if fields[3] == state and int(local.rsplit(":", 1)[1], 16) == port:
                found[inode] = int(remote.rsplit(":", 1)[1], 16)
    return found


def _accepted_connections(port: int) -> dict[str, int]:
    """Inode -> remote port of every established TCP connection accepted on ``port``."""
    return _tcp_sockets(port, ESTABLISHED)


def _listening(port: int) -> set[str]:
    """Inodes of the sockets listening on ``port``."""
    return set(_tcp_sockets(port, LISTEN))


def _serving_workers(gateway: GatewayProcess, workers: list[int]) -> dict[int, set[int]]:
    """Per worker pid: the client ports whose connections it accepted (and still holds)."""
    accepted = _accepted_connections(gateway.port)
    return {pid: {accepted[i] for i in _socket_inodes(pid) if i in accepted} for pid in workers}


def _wait_for_workers(gateway: GatewayProcess, count: int, timeout: float = 30.0) -> list[int]:
    """The worker pids once ``count`` of them run and every one has finished starting up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = _children(gateway.pid)
        started = gateway.logs().count("Application startup complete")
        if len(workers) == count and started >= count:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"{count} workers did not start: {gateway.logs()}")


def _answer_by_kind() -> Handler:
    """The replay answer for whichever request comes: a stream if it asked for one."""
    whole, events = json_answer(CHAT), sse_answer(openai_stream(["Hi"], usage=(3, 1)))

    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        stream = isinstance(seen.body, dict) and seen.body.get("stream") is True
        return await (events if stream else whole)(request, seen)

    return handler


@pytest.fixture
def workers_gateway(upstream: ReplayUpstream, tmp_path: Path) -> GatewayProcess:
    process = GatewayProcess(
        tmp_path,
        replay_config(upstream),
        env=REPLAY_ENV,
        serve_args=("--workers", "2"),
    )
    process.start()
    return process


async def _one_request(client: openai.AsyncOpenAI, stream: bool) -> str:
    """One request on the client's single connection; returns the gateway's request id."""
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "Capital?"}
    ]
    if stream:
        raw_stream = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, stream=True
        )
        chunks = [c async for c in raw_stream.parse()]
        assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hi", None]
        return raw_stream.headers["x-orca-request-id"]
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    assert raw.parse().choices[0].message.content == "Paris."
    return raw.headers["x-orca-request-id"]


def _client(gateway: GatewayProcess) -> openai.AsyncOpenAI:
    """An SDK client with exactly one keep-alive connection, so a connection is a client."""
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    return openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1",
        api_key=ADMIN_KEY,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
        max_retries=0,
    )


async def _spread(
    gateway: GatewayProcess, upstream: ReplayUpstream, workers: list[int]
) -> tuple[list[str], dict[int, set[int]]]:
    """Requests from ever more clients (each on its own connection, all kept open) until both
    workers hold a connection they answered; returns the request ids and who served whom."""
    clients: list[openai.AsyncOpenAI] = []
    ids: list[str] = []
    serving: dict[int, set[int]] = {}
    try:
        for _ in range(8):
            fresh = [_client(gateway) for _ in range(4)]
            clients += fresh
            for _ in fresh:
                upstream.expect(_answer_by_kind())
            ids += await asyncio.gather(
                *(_one_request(c, stream=bool(i % 2)) for i, c in enumerate(fresh))
            )
            serving = _serving_workers(gateway, workers)
            if all(serving.values()):
                break
    finally:
        for client in clients:
            await client.close()
    return ids, serving


async def test_two_workers_serve_and_meter_once(
    workers_gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    gateway = workers_gateway
    try:
        workers = _wait_for_workers(gateway, 2)
        assert gateway.pid not in workers
        ids, serving = await _spread(gateway, upstream, workers)
        assert all(serving.values()), f"one worker served everything: {serving}"
        assert not _serving_workers(gateway, [gateway.pid])[gateway.pid]  # the parent serves none
    finally:
        assert gateway.stop() == 0
    assert len(set(ids)) == len(ids)
    rows = gateway.query("SELECT request_id, status_code, outcome, stream FROM usage_records")
    assert sorted(r["request_id"] for r in rows) == sorted(ids)  # one record each, no more
    assert {(r["status_code"], r["outcome"]) for r in rows} == {(200, "ok")}
    assert {r["stream"] for r in rows} == {0, 1}
    logs = gateway.logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs


def _held_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port`` opened at once (as a load tool or a client pool
    starting does), then each answered once (so a worker has accepted it) and left open."""
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    for conn in held:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
    for conn in held:
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
    return held


def test_connections_spread_over_the_workers(workers_gateway: GatewayProcess) -> None:
    # With one shared listening socket the worker woken first accepts every connection that
    # is waiting, so clients that connect together land on one worker (here 28, 30 and 32
    # of 32 in three runs); each worker's own socket in a SO_REUSEPORT group spreads them by
    # address (15 and 17). A share below 4 of 32 for either worker, were the kernel's hash
    # random, has a chance of about 3 in a million.
    gateway = workers_gateway
    held: list[socket.socket] = []
    try:
        workers = _wait_for_workers(gateway, 2)
        listening = _listening(gateway.port)
        own = {pid: _socket_inodes(pid) & listening for pid in workers}
        assert all(len(inodes) == 1 for inodes in own.values()), own
        assert len(set.union(*own.values())) == 2  # not one shared socket
        assert not _socket_inodes(gateway.pid) & listening  # the parent accepts nothing
        held = _held_connections(gateway.port, 32)
        serving = _serving_workers(gateway, workers)
        assert sum(len(ports) for ports in serving.values()) == 32
        assert all(len(ports) >= 4 for ports in serving.values()), serving
    finally:
        for conn in held:
            conn.close()
        assert gateway.stop() == 0
