"""The gateway's HTTP/1.1 protocol (``api.server``) when things go wrong or end: refusals and
errors, the lingering close, the disconnect extension, timeouts and graceful shutdown.

Each test starts its own server in the test's event loop with a small ASGI app
(``tests/unit/api/server_support.py``) and talks to it over raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from dataclasses import dataclass

import aiohttp
import pytest

from orcarouter.api import server as server_module
from orcarouter.api.asgi import DISCONNECT_EXTENSION, Message, Receive, Scope, Send
from tests.unit.api.server_support import (
    TIMEOUT,
    App,
    assert_closed,
    connection,
    describe,
    get,
    read_all,
    read_response,
    respond,
    serving,
    wait_for,
)

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
        (b"x-test", b"ok\rx-injected: yes"),
        (b"x-test", b"ok\r\n"),
        (b"x-test\r\nx-injected", b"yes"),
        (b"x-test: ok\r\nx-injected", b"yes"),
        (b"x test", b"yes"),
        (b"", b"yes"),
        (b"x-test\x00", b"yes"),
        (b"x-test", b"ok\x00x-injected"),
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


def test_response_header_names_are_remembered_up_to_a_bound() -> None:
    token_name, remembered = server_module._token_name, server_module._TOKEN_NAMES
    kept = dict(remembered)
    remembered.clear()
    try:
        for number in range(600):
            assert token_name(b"X-Name-%d" % number) == b"x-name-%d" % number
        assert len(remembered) == server_module.MAX_TOKEN_NAMES == 512
        assert remembered[b"X-Name-0"] == b"x-name-0" and b"X-Name-599" not in remembered
        assert token_name(b"X-Name-599") == b"x-name-599"  # past the bound: checked each time
        for _ in range(2):  # a refused name is not remembered: checked again each time
            with pytest.raises(RuntimeError, match="invalid response header"):
                token_name(b"X Four")
        assert b"X Four" not in remembered
        remembered.clear()
        assert token_name(b"X-Name-599") == b"x-name-599"
        assert remembered == {b"X-Name-599": b"x-name-599"}
    finally:
        remembered.clear()
        remembered.update(kept)


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
