"""The small interface every upstream protocol implements.

A protocol knows how to address its upstream (URL, auth header), where usage and the served
model sit in its responses, how its streams end, and what its error bodies look like. Vendor
differences inside a protocol (extra headers, base URLs) are provider data, not code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mypy_extensions import mypyc_attr

from orcarouter.canonical import Usage
from orcarouter.settings import Provider
from orcarouter.wire.sse import SSEEvent, parse_event


def error_object(body: Any) -> Mapping[str, Any] | None:
    """The ``error`` object of an ``{"error": {...}}`` envelope (all three protocols use one)."""
    if isinstance(body, list) and body:  # some Google front ends wrap the envelope in a list
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def error_message(body: Any) -> str | None:
    """``error.message`` of the envelope, if there is one."""
    error = error_object(body)
    message = error.get("message") if error is not None else None
    return str(message) if message is not None else None


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled, yet subclassed by any adapter
class ObservedStream:
    """What every observer learns from a stream; subclasses read their protocol's events."""

    __slots__ = ("error_type", "finished", "produced", "upstream_model", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.produced = 0  # output tokens estimated from the deltas seen (for cancellations)
        self.upstream_model: str | None = None
        self.finished = False
        self.error_type: str | None = None

    def observe(self, event: SSEEvent) -> bytes:
        """Read one event; return what the client gets for it (each protocol reads its own)."""
        raise NotImplementedError

    def observe_raw(self, raw: bytes) -> bytes:
        """``observe`` for one event's bytes as the upstream sent them; an observer that can
        tell its common events from their bytes overrides it to skip the parsing."""
        return self.observe(parse_event(raw))

    def close(self) -> bytes:
        """Nothing is held back by default."""
        return b""


class StreamObserver(Protocol):
    """Watches a relayed stream event by event: usage, the served model, its end, errors."""

    usage: Usage | None
    upstream_model: str | None
    finished: bool
    error_type: str | None
    produced: int

    def observe(self, event: SSEEvent) -> bytes:
        """Read one event; return what the client gets for it (``b""`` for nothing)."""
        ...

    def observe_raw(self, raw: bytes) -> bytes:
        """``observe`` for one event's bytes, its blank line included (``SSESplitter.split``)."""
        ...

    def close(self) -> bytes:
        """The upstream stream ended; return anything still owed to the client."""
        ...


class ProviderProtocol(Protocol):
    """One wire protocol spoken by upstream providers."""

    name: str
    # Whether the upstream fetches remote image URLs itself; if not, the gateway fetches them
    # through the egress guard and sends the bytes inline.
    accepts_image_urls: bool
    # Whether one request can ask for several choices (OpenAI ``n``), and in a stream too;
    # where not, the gateway fans ``n`` out into concurrent requests.
    multiple_choices: bool
    streams_multiple_choices: bool

    def url(self, provider: Provider, stream: bool, upstream_model: str) -> str:
        """Where the request goes."""
        ...

    def headers(self, provider: Provider, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Authentication and protocol headers for the upstream request."""
        ...

    def prepare_body(self, payload: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        """The upstream body: the client's payload with only what the gateway must change."""
        ...

    def read_response(self, body: Any) -> tuple[Usage | None, str | None]:
        """Usage and served model from a non-stream response body."""
        ...

    def stream_observer(self, payload: Mapping[str, Any]) -> StreamObserver:
        """A fresh observer for one streamed response to ``payload``."""
        ...

    def error_type(self, body: Any) -> str | None:
        """The error type named in an upstream error body, if it is this protocol's envelope."""
        ...

    def error_message(self, body: Any) -> str | None:
        """The message of an upstream error body in this protocol's envelope."""
        ...
