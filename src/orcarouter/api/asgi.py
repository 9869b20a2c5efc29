"""The few ASGI primitives the handlers share: headers, body reading, plain responses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

from orcarouter.errors import GatewayError, InvalidRequest, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

DRAIN_LIMIT: Final = 64 * 1024 * 1024
# An ASGI extension the gateway's server offers (``api.server``): a callable that registers a
# callback for the client going away before the response is complete (None unregisters).
DISCONNECT_EXTENSION: Final = "orcarouter.on_disconnect"
# Another: a callable that writes a part of a started response's body at once, without a task
# switch or a message; it returns a future while the client's buffer is full (produce no more
# until it is done), else None.
WRITE_EXTENSION: Final = "orcarouter.write_body"
WriteBody = Callable[[bytes], "asyncio.Future[None] | None"]


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (ASGI servers already lower-case them)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found[_latin1(name)] = _latin1(value)
    return found


def _latin1(raw: bytes) -> str:
    # Typed, so that compiled code decodes in C instead of calling ``bytes.decode``.
    return raw.decode("latin-1")


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body, refused with 413 once it passes ``limit`` bytes.

    An oversized body is still read (and dropped) up to ``DRAIN_LIMIT`` so the client, which is
    usually still sending, can read the 413 instead of a reset connection (nginx's lingering
    close does the same).
    """
    declared = headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise InvalidRequest("Content-Length is not a number")
    parts: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            parts.append(chunk)
        elif size > DRAIN_LIMIT:
            break
        more = message.get("more_body", False)
    if size > limit:
        raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
    return parts[0] if len(parts) == 1 else b"".join(parts)


class ClientDisconnected(Exception):
    """The client went away before the request was complete."""


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    content_type: bytes = b"application/json",
) -> None:
    """Send a complete response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(
    send: Send, error: GatewayError, anthropic: bool, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    """Send ``error`` in the endpoint's envelope with its status."""
    body = error.anthropic_body() if anthropic else error.openai_body()
    await respond(send, error.status, body, headers)
