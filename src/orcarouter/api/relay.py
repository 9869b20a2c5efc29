"""Relaying an upstream response to the client: whole bodies, streams and error answers.

Streams are forwarded event by event as they arrive, so memory per stream is bounded by one
event. The first forwarded event commits the response; an error after that becomes one
terminal error event in the client's dialect, never a clean end. After the first event, when
the server can write directly, each upstream read goes to the client from the read callback
itself (``push``): a model's stream is a read per event, and a task wake-up per read cost more
than translating the event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from orcarouter.api.asgi import Send, WriteBody, respond
from orcarouter.api.dialects import Dialect
from orcarouter.errors import (
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
)
from orcarouter.metering.usage import UsageRecord
from orcarouter.providers.base import ProviderProtocol, StreamObserver
from orcarouter.providers.exchange import ExchangePlan
from orcarouter.transport.client import UpstreamResponse
from orcarouter.wire.sse import SSEError, SSESplitter

MAX_ERROR_BODY: Final = 1024 * 1024
_STREAM_HEADERS: Final = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@dataclass(slots=True)
class Exchange:
    """The state of one client exchange that the relay and the endpoint share."""

    request_id: str
    started: float
    dialect: Dialect
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    committed: bool = False
    finished: bool = False
    client_gone: bool = False
    retry_ticket: bool = False  # holds one of the retry budget's tickets
    retry_after: str | None = None  # an upstream 429's Retry-After, for the health book
    write_body: WriteBody | None = None  # the server's direct body writer, when it offers one

    def elapsed_ms(self) -> int:
        """Milliseconds since the request arrived."""
        return int((time.perf_counter() - self.started) * 1000)


async def relay_body(
    response: UpstreamResponse,
    plan: ExchangePlan,
    exchange: Exchange,
    record: UsageRecord,
    send: Send,
) -> None:
    """Forward a whole JSON answer (as sent, or re-rendered), then read its usage: the client
    does not wait for that."""
    body, read = plan.read_response(await response.read())
    record.status_code = response.status
    exchange.committed = exchange.finished = True
    try:
        await respond(send, response.status, body, exchange.headers)
    finally:  # a client gone meanwhile still cost the tokens
        record.usage, record.upstream_model = plan.usage_of(read)


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """An upstream error answer, read (bounded) and with any echoed credential redacted."""

    status: int
    raw: bytes
    kind: str | None  # the error type, when the body is in the protocol's envelope
    message: str
    retry_after: str | None


async def read_failure(
    response: UpstreamResponse, protocol: ProviderProtocol, secrets: Sequence[str]
) -> UpstreamFailure:
    """Read an upstream error answer: its type and message, or a short snippet of the body."""
    raw = await response.read(MAX_ERROR_BODY)
    for secret in secrets:  # never reflect a provider credential an upstream echoed back
        raw = raw.replace(secret.encode(), b"[redacted]")
    body: Any
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    kind = protocol.error_type(body)
    message = protocol.error_message(body) if kind is not None else None
    if message is None:
        snippet = raw[:300].decode("utf-8", "replace").strip()
        message = f"upstream returned HTTP {response.status}" + (f": {snippet}" if snippet else "")
    retry_after = response.headers.get("retry-after") or None
    return UpstreamFailure(response.status, raw, kind, message, retry_after)


class AttemptFailed(Exception):
    """An attempt failed before anything reached the client, so another candidate may serve.

    ``error`` is what the client would get for it; ``throttled`` marks a 429 (a cool-down,
    not ill health).
    """

    def __init__(
        self, error: GatewayError, *, throttled: bool = False, retry_after: str | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.throttled = throttled
        self.retry_after = retry_after


RETRYABLE_STATUSES: Final = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    """Statuses worth another candidate: server errors, timeouts and throttling."""
    return status >= 500 or status in RETRYABLE_STATUSES


def failed_attempt(failure: UpstreamFailure, dialect: Dialect) -> AttemptFailed:
    """The retryable form of an upstream error answer."""
    status = dialect.status_for_upstream(failure.status)
    error = UpstreamError(
        failure.message, status=status, code=failure.kind, retry_after=failure.retry_after
    )
    return AttemptFailed(error, throttled=failure.status == 429, retry_after=failure.retry_after)


async def relay_error(
    response: UpstreamResponse,
    protocol: ProviderProtocol,
    exchange: Exchange,
    record: UsageRecord,
    send: Send,
    secrets: Sequence[str],
) -> None:
    """Pass an upstream error on with its status, in the client's envelope.

    A same-protocol error body is forwarded as sent; another protocol's is re-rendered with its
    message, its type kept as the ``code``; a body in no known envelope becomes a short snippet.
    """
    failure = await read_failure(response, protocol, secrets)
    record.status_code = response.status
    record.outcome = "error"
    record.error_type = failure.kind or "upstream_error"
    exchange.retry_after = failure.retry_after
    if failure.retry_after:
        exchange.headers.append((b"retry-after", failure.retry_after.encode("latin-1")))
    if failure.kind is not None and protocol.name == exchange.dialect.protocol:
        exchange.committed = exchange.finished = True
        await respond(send, response.status, failure.raw, exchange.headers)
        return
    status = exchange.dialect.status_for_upstream(response.status)
    record.status_code = status
    raise UpstreamError(
        failure.message, status=status, code=failure.kind, retry_after=failure.retry_after
    )


_THROTTLE_EVENTS: Final = frozenset({"rate_limit_error", "rate_limit_exceeded"})


def _first_event_error(kind: str) -> AttemptFailed:
    throttled = kind in _THROTTLE_EVENTS
    status = 429 if throttled else 503 if kind == "overloaded_error" else 502
    error = UpstreamError(f"upstream stream began with an error: {kind}", status=status, code=kind)
    return AttemptFailed(error, throttled=throttled)


async def relay_stream(
    response: UpstreamResponse,
    observer: StreamObserver,
    exchange: Exchange,
    record: UsageRecord,
    send: Send,
    *,
    first_event: bool = False,
    peek: bool = False,
) -> None:
    """Forward SSE events as they complete; end with a terminal error if the upstream breaks.

    With ``first_event``, the first event must come by the upstream's first-byte deadline
    (``UpstreamResponse.expect_event``). With ``peek``, an error that arrives before anything
    was forwarded raises ``AttemptFailed`` so that another candidate can serve the request.
    """
    splitter = SSESplitter()
    record.status_code = response.status
    held: list[bytes] = []  # the events from the last one or the upstream's end: sent with ours
    waiting = first_event
    if waiting:
        response.expect_event()
    try:
        while (chunk := await response.next_chunk()) is not None:
            out = _relayed(splitter, observer, chunk)
            if peek and not exchange.committed and observer.error_type is not None:
                raise _first_event_error(observer.error_type)
            if out and waiting:  # the first event came
                response.event_came()
                waiting = False
            if response.at_end or observer.finished:
                held += out  # these go out with the response's end (``_push``)
            elif out:
                await forward_events(out, exchange, record, send)
                if exchange.write_body is not None:
                    await _push(response, splitter, observer, exchange.write_body, held)
        tail = splitter.close()
        last = (observer.observe(tail) if tail is not None else b"") + observer.close()
        if peek and not exchange.committed and observer.error_type is not None:
            raise _first_event_error(observer.error_type)
        if last:
            held.append(last)
        if held:
            ended = observer.finished or observer.error_type is not None
            await forward_events(held, exchange, record, send, end=ended)
        if not observer.finished and observer.error_type is None:
            raise UpstreamProtocolError("upstream stream ended before the response was complete")
    except SSEError as exc:
        await _fail(UpstreamProtocolError(str(exc)), held, observer, exchange, record, send)
    except GatewayError as error:
        await _fail(error, held, observer, exchange, record, send)
    finally:
        _note(observer, record)
    if exchange.committed and not exchange.finished:
        exchange.finished = True
        await send({"type": "http.response.body", "body": b""})


def _relayed(splitter: SSESplitter, observer: StreamObserver, chunk: bytes) -> list[bytes]:
    """What the client gets for the events ``chunk`` completes (nothing for events it drops)."""
    return [data for raw in splitter.split(chunk) if (data := observer.observe_raw(raw))]


async def _fail(
    error: GatewayError,
    held: list[bytes],
    observer: StreamObserver,
    exchange: Exchange,
    record: UsageRecord,
    send: Send,
) -> None:
    """End the stream with one error event; but once the stream's last event has come, a
    failure loses nothing and the answer ends as it would have (the held events, then ours)."""
    if observer.finished and observer.error_type is None:
        held.append(observer.close())
        await forward_events(held, exchange, record, send, end=True)
    else:
        await end_with_error(error, exchange, record, send)


def _note(observer: StreamObserver, record: UsageRecord) -> None:
    """What the stream said about usage, the model and errors, into the usage record."""
    record.usage = observer.usage
    record.produced = observer.produced
    record.upstream_model = observer.upstream_model
    if observer.error_type is not None:
        record.outcome = "error"
        record.error_type = observer.error_type


async def _push(
    response: UpstreamResponse,
    splitter: SSESplitter,
    observer: StreamObserver,
    write: WriteBody,
    held: list[bytes],
) -> None:
    """The rest of the stream, each read relayed from the upstream connection's read callback
    (no task wake-up per read) until the body ends; a failure in it is raised here.

    The events from the stream's last one on (``observer.finished``) go to ``held``, for the
    task to send with the response's end: a client that has the last event may hang up at
    once, and if that came before the end, its complete answer would be recorded as cancelled."""
    failure: list[Exception] = []

    def sink(chunk: bytes) -> asyncio.Future[None] | None:
        if failure:
            return None
        try:
            out = _relayed(splitter, observer, chunk)
            if observer.finished:
                held.extend(out)
                return None
            return write(out[0] if len(out) == 1 else b"".join(out)) if out else None
        except Exception as exc:  # an oversized event, an untranslatable one: the task ends it
            failure.append(exc)
            response.close()
            return None

    try:
        await response.push(sink)
    except GatewayError:
        if not failure:
            raise
    if failure:
        raise failure[0]


async def forward_events(
    events: list[bytes], exchange: Exchange, record: UsageRecord, send: Send, *, end: bool = False
) -> None:
    """Send events (committing the response first if needed); ``end``: they are the last."""
    if not exchange.committed:
        exchange.committed = True
        record.ttft_ms = exchange.elapsed_ms()
        await send(
            {
                "type": "http.response.start",
                "status": record.status_code,
                "headers": [*_STREAM_HEADERS, *exchange.headers],
            }
        )
    if end:
        exchange.finished = True
    await send(
        {
            "type": "http.response.body",
            "body": events[0] if len(events) == 1 else b"".join(events),
            "more_body": not end,
        }
    )


async def end_with_error(
    error: GatewayError, exchange: Exchange, record: UsageRecord, send: Send
) -> None:
    """Before commit the error propagates as an HTTP error; after it, one terminal event."""
    if not exchange.committed:
        raise error
    record.outcome = "incomplete"
    record.error_type = error.code
    exchange.finished = True
    await send(
        {
            "type": "http.response.body",
            "body": exchange.dialect.stream_error(error),
            "more_body": False,
        }
    )
