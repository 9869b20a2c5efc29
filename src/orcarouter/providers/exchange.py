"""How one request is carried to its upstream: passed through, or translated both ways.

Same protocol: the client's payload goes upstream with only the model id (and the usage option)
changed, and the answer comes back byte for byte. Other protocol: client wire -> canonical ->
upstream wire for the request, and the reverse for the response, event by event for streams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import orjson

from orcarouter.canonical import (
    BlockDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    Request,
    Response,
    StreamError,
    StreamEvent,
    TextDelta,
    Usage,
    UsageReport,
)
from orcarouter.errors import InvalidRequest, UpstreamProtocolError
from orcarouter.providers.base import ObservedStream, ProviderProtocol, StreamObserver
from orcarouter.providers.openai_compat import client_wants_usage
from orcarouter.translate.codecs import StreamDecoder, StreamEncoder, TargetOptions, WireCodec
from orcarouter.translate.common import MalformedRequest, TranslationError
from orcarouter.wire.sse import SSEEvent, parse_event


class ExchangePlan(Protocol):
    """The upstream body and how the answer goes back to the client."""

    body: bytes
    dropped: tuple[str, ...]

    def stream_observer(self) -> StreamObserver:
        """The observer for this request's streamed answer."""
        ...

    def read_response(self, raw: bytes) -> tuple[bytes, object]:
        """The client's body of a whole answer, and the answer as read (for ``usage_of``)."""
        ...

    def usage_of(self, read: object) -> tuple[Usage | None, str | None]:
        """The usage and the served model of an answer ``read_response`` read: asked once the
        client has its body, which does not wait for them."""
        ...


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError("upstream sent a response that is not JSON") from exc


class Passthrough:
    """Same protocol: forward as sent, read usage on the way."""

    dropped: tuple[str, ...] = ()

    def __init__(
        self, protocol: ProviderProtocol, payload: dict[str, Any], model: str, stream: bool
    ) -> None:
        self._protocol = protocol
        # The observer reads the client's own options before prepare_body adds the gateway's.
        self._observer = protocol.stream_observer(payload) if stream else None
        self.body = protocol.prepare_body(payload, model, stream)

    def stream_observer(self) -> StreamObserver:
        """The protocol's own observer (one plan serves one request)."""
        return self._observer or self._protocol.stream_observer({})

    def read_response(self, raw: bytes) -> tuple[bytes, object]:
        """The upstream bytes unchanged, once they are known to be JSON."""
        return raw, _decode(raw)

    def usage_of(self, read: object) -> tuple[Usage | None, str | None]:
        """The usage and the model the upstream's answer names."""
        return self._protocol.read_response(read)


def untranslatable(exc: TranslationError, model: str, protocol: str) -> InvalidRequest:
    """The client's error for a field the target cannot take."""
    return InvalidRequest(
        f"'{exc.param}' cannot be sent to {model} over the {protocol} protocol: "
        f'{exc.message} (send "drop_params": true to drop it instead)',
        param=exc.param,
    )


# What reading a client's request raises when the request has a shape its protocol does not
# allow somewhere the typed checks do not look (a message that is not an object, say).
_MISREAD: Final = (TypeError, ValueError, AttributeError, KeyError, IndexError)


def read_client_request(codec: WireCodec, payload: Mapping[str, Any]) -> Request:
    """The client's request as a canonical request; a field of the wrong type is the client's
    error (400, naming the field where it can). A field the target protocol cannot take is
    left to the caller, which knows the target (``TranslationError``, see ``untranslatable``)."""
    try:
        return codec.request_to_canonical(payload)
    except TranslationError:
        raise
    except MalformedRequest as malformed:
        raise InvalidRequest(
            f"'{malformed.param}' {malformed.message}", param=malformed.param
        ) from None
    except _MISREAD as misread:
        raise InvalidRequest(f"the request could not be read: {misread}") from None


class Translated:
    """Other protocol: translate the request, the response and every stream event."""

    def __init__(
        self,
        client: WireCodec,
        upstream: WireCodec,
        payload: Mapping[str, Any],
        *,
        model: str,
        stream: bool,
        options: TargetOptions,
        canonical: Request | None = None,
    ) -> None:
        """``canonical``: the client request already parsed (and its remote images inlined)."""
        self._client = client
        self._upstream = upstream
        self.client_payload = payload
        self._include_usage = client_wants_usage(payload) or client.name != "openai"
        try:
            parsed = canonical if canonical is not None else read_client_request(client, payload)
            request = parsed.to(model, stream)
            translation = upstream.request_from_canonical(request, options)
        except TranslationError as exc:
            raise untranslatable(exc, model, upstream.name) from None
        except _MISREAD as misread:  # a value the checks let through that rendering cannot take
            raise InvalidRequest(
                f"the request could not be translated for {model} over the {upstream.name} "
                f"protocol: {misread}"
            ) from None
        self.body = orjson.dumps(translation.body)
        self.dropped = tuple(dict.fromkeys(translation.dropped))

    def stream_observer(self) -> StreamObserver:
        """Decode upstream events, encode them for the client."""
        return TranslatingObserver(
            self._upstream.stream_decoder(), self._client.stream_encoder(self._include_usage)
        )

    def read_response(self, raw: bytes) -> tuple[bytes, object]:
        """Re-render the whole answer in the client's format."""
        response = self.read_canonical(raw)
        return self.render(response), response

    def usage_of(self, read: object) -> tuple[Usage | None, str | None]:
        """The usage and the model of the canonical answer."""
        assert isinstance(read, Response)
        return read.usage, read.model or None

    def read_canonical(self, raw: bytes) -> Response:
        """The upstream's whole answer as a canonical response."""
        body = _decode(raw)
        if not isinstance(body, dict):
            raise UpstreamProtocolError("upstream sent a response that is not a JSON object")
        try:
            return self._upstream.response_to_canonical(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamProtocolError(f"upstream response could not be read: {exc}") from exc

    def render(self, response: Response) -> bytes:
        """A canonical response in the client's format."""
        return orjson.dumps(self._client.response_from_canonical(response))

    def upstream_decoder(self) -> StreamDecoder:
        """A decoder for one upstream stream (canonical events out)."""
        return self._upstream.stream_decoder()


ReadText = Callable[[SSEEvent], tuple[int, str] | None]  # ``TextDeltaDecoder.text_delta``
WriteText = Callable[[int, str], bytes | None]  # ``TextDeltaEncoder.encode_text``
ReadRawText = Callable[[bytes], tuple[int, str] | None]  # ``TextDeltaDecoder``'s ``raw_text``


class TranslatingObserver(ObservedStream):
    """A stream observer that rewrites each upstream event into the client's dialect."""

    __slots__ = ("_decoder", "_encoder", "_raw_text", "_text")

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder) -> None:
        super().__init__()
        self._decoder = decoder
        self._encoder = encoder
        # Plain text deltas skip the canonical events when both sides can: the hot path (see
        # ``TextDeltaDecoder`` and ``TextDeltaEncoder``). getattr, not isinstance: a runtime
        # protocol check costs more per stream than the fast path saves on a short one.
        read = getattr(decoder, "text_delta", None)
        write = getattr(encoder, "encode_text", None)
        self._text: tuple[ReadText, WriteText] | None = (
            (read, write) if read is not None and write is not None else None
        )
        # A decoder that knows its text deltas by their bytes also skips the SSE parsing.
        read_raw = getattr(decoder, "raw_text", None)
        self._raw_text: tuple[ReadRawText, WriteText] | None = (
            (read_raw, write) if read_raw is not None and write is not None else None
        )

    def observe(self, event: SSEEvent) -> bytes:
        """Translate one upstream event into zero or more client events."""
        text = self._text
        if text is not None and (found := text[0](event)) is not None:
            return self._write_text(text[1], found)
        return self._encode(self._decoder.feed(event))

    def observe_raw(self, raw: bytes) -> bytes:
        """``observe`` for the event's bytes: a text delta known by them is not parsed."""
        text = self._raw_text
        if text is not None and (found := text[0](raw)) is not None:
            return self._write_text(text[1], found)
        return self.observe(parse_event(raw))

    def _write_text(self, write: WriteText, found: tuple[int, str]) -> bytes:
        # The pair is passed whole: compiled code makes ``f(write, *found)`` a generic call (a
        # bound method, a list, a tuple, argument parsing) per event, ``f(write, found)`` a
        # direct one.
        index, text = found
        out = write(index, text)
        if out is None:  # the encoder does not take it as plain: encode what ``feed`` gives
            return self._encode([BlockDelta(index=index, delta=TextDelta(text=text))])
        self.produced += len(text) // 4 or 1
        return out

    def close(self) -> bytes:
        """The upstream ended: emit whatever the decoder still holds."""
        return self._encode(self._decoder.finish())

    def _encode(self, events: list[StreamEvent]) -> bytes:
        out = b""
        for event in events:
            self._note(event)
            out += self._encoder.encode(event)
        return out

    def _note(self, event: StreamEvent) -> None:
        if isinstance(event, BlockDelta):
            self.produced += max(1, _delta_size(event.delta) // 4)
        elif isinstance(event, MessageStart):
            self.upstream_model = event.model or self.upstream_model
            self.usage = event.usage or self.usage
        elif isinstance(event, (MessageDelta, UsageReport)):
            self.usage = event.usage or self.usage
        elif isinstance(event, MessageStop):
            self.finished = True
        elif isinstance(event, StreamError):
            self.error_type = event.type


def _delta_size(delta: object) -> int:
    """Characters a delta carries (text, thinking or tool-call arguments)."""
    for name in ("text", "thinking", "partial_json"):
        value = getattr(delta, name, None)
        if isinstance(value, str):
            return len(value)
    return 4
