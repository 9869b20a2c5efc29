"""One uniform face per wire format, so the gateway can bridge any client to any upstream.

A codec turns its wire's requests, responses and SSE events into canonical ones and back;
``TargetOptions`` carries the dialect choices a target model needs (provider profile data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from orcarouter.canonical import MessageStop, Request, Response, StreamEvent
from orcarouter.translate import anthropic_messages, gemini, openai_chat
from orcarouter.translate.common import JsonDict, RequestTranslation
from orcarouter.wire.sse import SSEEvent, encode_event, json_data_line


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetOptions:
    """How to render a request for one target model."""

    default_max_tokens: int = 8192
    adaptive_thinking: bool = False
    max_tokens_field: str = "max_completion_tokens"
    reasoning_fields: tuple[str, ...] | None = None
    gemini: gemini.GeminiTarget = field(default_factory=gemini.GeminiTarget)
    drop_params: bool = False


class StreamDecoder(Protocol):
    """Upstream SSE events in, canonical stream events out."""

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        """Decode one upstream event."""
        ...

    def finish(self) -> list[StreamEvent]:
        """The upstream stream ended (EOF): close what is open."""
        ...


class StreamEncoder(Protocol):
    """Canonical stream events in, client SSE bytes out."""

    def encode(self, event: StreamEvent) -> bytes:
        """Encode one canonical event (possibly as nothing)."""
        ...


class TextDeltaDecoder(Protocol):
    """A decoder that can tell a plain text delta without building canonical events."""

    def text_delta(self, event: SSEEvent) -> tuple[int, str] | None:
        """The block index and text when ``feed(event)`` would give exactly
        ``[BlockDelta(index=i, delta=TextDelta(text=t))]``, with the decoder's state moved on as
        ``feed`` would move it; else None, and nothing changed. A decoder may also offer
        ``raw_text(raw: bytes)``: the same answer from the event's bytes (``SSESplitter.split``),
        None whenever it cannot tell from them, so that the event need not be parsed."""
        ...


class TextDeltaEncoder(Protocol):
    """An encoder that can write a text delta without building it."""

    def encode_text(self, index: int, text: str) -> bytes | None:
        """``encode(BlockDelta(index=index, delta=TextDelta(text=text)))``, or None when that
        event is not the plain case here (then ``encode`` it)."""
        ...


class WireCodec(Protocol):
    """Requests, responses and streams of one wire format, to and from canonical."""

    name: str

    def request_to_canonical(self, body: Mapping[str, Any]) -> Request:
        """Parse a client request."""
        ...

    def request_from_canonical(
        self, request: Request, options: TargetOptions
    ) -> RequestTranslation:
        """Render an upstream request."""
        ...

    def response_to_canonical(self, body: Mapping[str, Any]) -> Response:
        """Parse an upstream response."""
        ...

    def response_from_canonical(self, response: Response) -> JsonDict:
        """Render a client response."""
        ...

    def stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one upstream stream."""
        ...

    def stream_encoder(self, include_usage: bool) -> StreamEncoder:
        """A fresh encoder for one client stream."""
        ...


# orjson's two functions held in C statics: compiled code would look each up in the module per
# call, several times per streamed event.
_DUMPS: Final = orjson.dumps
_LOADS: Final = orjson.loads


def _loads(data: str) -> Any:
    try:
        return _LOADS(data)
    except orjson.JSONDecodeError:
        return None


# A text chunk's one choice as vendors write it, up to its text's JSON string (its opening
# quote) and after it: none of the other keys is one ``plain_text`` reads (but a null
# ``finish_reason``), so each shape means exactly what its full decode would.
_CHOICE_HEADS: Final = (
    b'"choices":[{"index":0,"delta":{"content":"',
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"',  # OpenRouter
)
_CHOICE_TAILS: Final = (
    b'},"logprobs":null,"finish_reason":null}]',  # OpenAI
    b'},"finish_reason":null}]',  # Mistral
    b'},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]',  # OpenRouter
    b'},"logprobs":null,"finish_reason":null,"token_ids":null}]',  # vLLM
)
# OpenAI pads every chunk with a random string of letters and digits, its last key.
_OBFUSCATION: Final = b',"obfuscation":"'


def _ignored_keys(members: bytes) -> bool:
    """Whether ``members`` (``{``, then a chunk's keys and values up to a comma or to its end)
    holds only what ``plain_text`` lets a text chunk have besides its one choice: no other
    ``choices``, no ``error`` or ``usage`` object, all on one line."""
    if 0x0A in members or 0x0D in members:  # LF, CR (int needles: one memchr each)
        return False
    if members == b"{":
        return True
    if members.endswith(b","):
        members = members[:-1] + b"}"
    try:
        found = _LOADS(members)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(found, dict):
        return False
    return (
        "choices" not in found
        and not isinstance(found.get("error"), dict)
        and not isinstance(found.get("usage"), dict)
    )


def _random_padding(raw: bytes, at: int) -> bool:
    """Whether ``raw`` ends, from ``at``, with an ``obfuscation`` key whose value is letters
    and digits, as the chunk's last key (``}`` LF LF after it)."""
    return raw.endswith(b'"}\n\n') and raw[at + len(_OBFUSCATION) : -4].isalnum()


class _OpenAIDecoder:
    __slots__ = ("_decoder", "_done", "_head", "_padded", "_tail")

    def __init__(self) -> None:
        self._decoder = openai_chat.OpenAIChunkDecoder()
        self._done = False
        # A text chunk's bytes before its text's JSON string and after it, as last checked
        # (``_template_text``): a stream's chunks repeat them.
        self._head = self._tail = b"\xff"  # matches no event
        self._padded = b""  # ``_tail`` up to OpenAI's ``obfuscation``, when it ended so

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if not event.data or self._done:
            return []
        if event.data == "[DONE]":
            self._done = True
            return self._decoder.finish()
        chunk = _loads(event.data)
        return self._decoder.feed(chunk) if isinstance(chunk, dict) else []

    def text_delta(self, event: SSEEvent) -> tuple[int, str] | None:
        return self._text_of(event.data)

    def raw_text(self, raw: bytes) -> tuple[int, str] | None:
        """``text_delta`` for an event of one ``data:`` line, its data taken from the bytes:
        without decoding the chunk when it has OpenAI's own shape (``_template_text``)."""
        text = None if self._done else self._template_text(raw)
        if text is not None:
            return self._decoder.more_text(text)
        data = json_data_line(raw)
        return None if data is None else self._text_of(data)

    def _template_text(self, raw: bytes) -> str | None:
        """The text of a chunk whose one choice is one of ``_CHOICE_HEADS``, the text's JSON
        string and one of ``_CHOICE_TAILS``, and whose other keys are ones ``plain_text``
        ignores; None for any other. Only the string is decoded: the bytes before it and after
        it are checked when they differ from the last text chunk's (a stream's repeat its id,
        model and the like), but for OpenAI's ``obfuscation`` value (``_padded_end``). The
        string must end just before the tail (a tail cannot be inside a JSON string: its quotes
        would end it), so the chunk means exactly what its full decode would."""
        head, tail = self._head, self._tail
        if not raw.startswith(head):
            head = self._check_head(raw)
            if not head:
                return None
        if raw.endswith(tail):
            end = len(raw) - len(tail)
        else:
            end = self._padded_end(raw)
            if end < 0:
                tail = self._check_tail(raw, len(head))
                if not tail:
                    return None
                end = len(raw) - len(tail)
        if raw[end - 1] != 0x22:  # the string's closing quote (an overlap fails to decode)
            return None
        try:
            text = _LOADS(raw[len(head) - 1 : end])
        except orjson.JSONDecodeError:  # not one JSON string
            return None
        return text if isinstance(text, str) and text else None

    def _check_head(self, raw: bytes) -> bytes:
        """The event's bytes up to its text's opening quote, kept when they are ``data: {``,
        keys ``plain_text`` ignores and one of ``_CHOICE_HEADS``; else empty."""
        if not raw.startswith(b"data: {"):
            return b""
        for choice in _CHOICE_HEADS:
            at = raw.find(choice, 6)
            if at >= 0:
                if not _ignored_keys(raw[6:at]):
                    return b""
                self._head = raw[: at + len(choice)]
                return self._head
        return b""

    def _padded_end(self, raw: bytes) -> int:
        """Where the text's string ends in a chunk whose bytes after it are the last checked
        chunk's but for the value of OpenAI's ``obfuscation``; -1 for any other."""
        before = self._padded
        if not before:
            return -1
        padding = raw.rfind(_OBFUSCATION)
        end = padding - len(before)
        if padding < 0 or end < 0 or not _random_padding(raw, padding):
            return -1
        return end if raw.startswith(before, end) else -1

    def _check_tail(self, raw: bytes, start: int) -> bytes:
        """The event's bytes from one of ``_CHOICE_TAILS`` after ``start`` to its end, kept when
        the rest is keys ``plain_text`` ignores and ``}`` LF LF; else empty."""
        if not raw.endswith(b"}\n\n"):
            return b""
        for choice in _CHOICE_TAILS:
            at = raw.find(choice, start)
            if at >= 0:
                rest = raw[at + len(choice) : -2]
                if rest == b"}" or (rest.startswith(b",") and _ignored_keys(b"{" + rest[1:])):
                    self._tail = raw[at:]
                    padding = raw.rfind(_OBFUSCATION)
                    if padding >= at + len(choice) and _random_padding(raw, padding):
                        self._padded = raw[at:padding]
                    return self._tail
                return b""
        return b""

    def _text_of(self, data: str) -> tuple[int, str] | None:
        if self._done or '"content"' not in data:
            return None
        chunk = _loads(data)
        return self._decoder.plain_text(chunk) if isinstance(chunk, dict) else None

    def finish(self) -> list[StreamEvent]:
        # A stream cut before [DONE] is not complete: nothing is invented for it.
        return []


class _OpenAIEncoder:
    __slots__ = ("_encoder", "encode_text")

    def __init__(self, include_usage: bool) -> None:
        self._encoder = openai_chat.OpenAIChunkEncoder(include_usage=include_usage)
        # ``TextDeltaEncoder.encode_text``: the chunk encoder's own, one call less per delta.
        self.encode_text = self._encoder.text_event

    def encode(self, event: StreamEvent) -> bytes:
        chunks = self._encoder.feed(event)
        if len(chunks) == 1:  # the usual delta: one chunk, framed without a generator
            out = b"data: " + _DUMPS(chunks[0]) + b"\n\n"
        else:
            out = b"".join([encode_event(_DUMPS(c)) for c in chunks])
        if isinstance(event, MessageStop):
            out += b"data: [DONE]\n\n"
        return out


class OpenAICodec:
    """OpenAI Chat Completions."""

    name = "openai"

    def request_to_canonical(self, body: Mapping[str, Any]) -> Request:
        """Parse a chat-completion request."""
        return openai_chat.request_to_canonical(body)

    def request_from_canonical(
        self, request: Request, options: TargetOptions
    ) -> RequestTranslation:
        """Render a chat-completion request in the target's dialect."""
        return openai_chat.request_from_canonical(
            request,
            drop_params=options.drop_params,
            max_tokens_field=options.max_tokens_field,
            reasoning_fields=options.reasoning_fields,
        )

    def response_to_canonical(self, body: Mapping[str, Any]) -> Response:
        """Parse a chat completion; a body without ``choices`` is not one."""
        if not isinstance(body.get("choices"), list):
            raise ValueError("the body is not a chat completion (no choices)")
        return openai_chat.response_to_canonical(body)

    def response_from_canonical(self, response: Response) -> JsonDict:
        """Render a chat completion."""
        return openai_chat.response_from_canonical(response)

    def stream_decoder(self) -> StreamDecoder:
        """Decode ``data:`` chunks up to ``[DONE]``."""
        return _OpenAIDecoder()

    def stream_encoder(self, include_usage: bool) -> StreamEncoder:
        """Encode chunks, the usage chunk only if the client asked for it, then ``[DONE]``."""
        return _OpenAIEncoder(include_usage)


class _AnthropicDecoder:
    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = anthropic_messages.AnthropicEventDecoder()

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if not event.data:
            return []
        data = _loads(event.data)
        return self._decoder.feed(data) if isinstance(data, dict) else []

    def text_delta(self, event: SSEEvent) -> tuple[int, str] | None:
        if '"text_delta"' not in event.data:  # cheap: most other events are not read twice
            return None
        data = _loads(event.data)
        if not isinstance(data, dict) or data.get("type") != "content_block_delta":
            return None
        delta = data.get("delta")
        if not isinstance(delta, dict) or delta.get("type") != "text_delta":
            return None
        return int(data.get("index", 0)), str(delta.get("text", ""))

    def raw_text(self, raw: bytes) -> tuple[int, str] | None:
        """``text_delta`` read from the event's bytes, for the one shape Anthropic sends (its
        keys in its order, one ``data:`` line, a block index below 100, spaces only where it
        pads the object's end, between its last two braces); None for any other, which then
        takes the full path. The text's JSON string must be the whole rest of the object, so
        the event means exactly what its full decode would."""
        if not (raw.startswith(_RAW_TEXT_HEAD) and raw.endswith(b"}\n\n")):
            return None
        digit = raw[_INDEX_AT] - 0x30
        if 0 <= digit <= 9 and raw.startswith(_RAW_TEXT_MID, _INDEX_AT + 1):
            index, text_at = digit, _INDEX_AT + 1 + len(_RAW_TEXT_MID)
        elif 1 <= digit <= 9 and raw.startswith(_RAW_TEXT_MID, _INDEX_AT + 2):
            second = raw[_INDEX_AT + 1] - 0x30
            if not 0 <= second <= 9:
                return None
            index, text_at = 10 * digit + second, _INDEX_AT + 2 + len(_RAW_TEXT_MID)
        else:
            return None
        # The text's JSON string, then the delta's "}" and the padding; no white space around
        # the string, where a CR or LF would end the line for SSE (and be lost to JSON).
        rest = raw[text_at:-3].rstrip(b" ")
        if raw[text_at] != 0x22 or not rest.endswith(b'"}'):
            return None
        try:
            text = _LOADS(rest[:-1])
        except orjson.JSONDecodeError:  # not one JSON string (or a line break in it)
            return None
        return (index, text) if isinstance(text, str) else None

    def finish(self) -> list[StreamEvent]:
        return []


_RAW_TEXT_HEAD: Final = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_RAW_TEXT_MID: Final = b',"delta":{"type":"text_delta","text":'
_INDEX_AT: Final = len(_RAW_TEXT_HEAD)


class _AnthropicEncoder:
    __slots__ = ("_encoder",)

    def __init__(self) -> None:
        self._encoder = anthropic_messages.AnthropicEventEncoder()

    def encode(self, event: StreamEvent) -> bytes:
        return b"".join(
            encode_event(_DUMPS(data), name) for name, data in self._encoder.feed(event)
        )

    def encode_text(self, index: int, text: str) -> bytes | None:
        sent = self._encoder.text_index(index, text)
        if sent is None:
            return None
        return _TEXT_DELTA % sent + _DUMPS(text) + b"}}\n\n" if text else b""


_TEXT_DELTA: Final = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":'
)


class AnthropicCodec:
    """Anthropic Messages."""

    name = "anthropic"

    def request_to_canonical(self, body: Mapping[str, Any]) -> Request:
        """Parse a messages request."""
        return anthropic_messages.request_to_canonical(body)

    def request_from_canonical(
        self, request: Request, options: TargetOptions
    ) -> RequestTranslation:
        """Render a messages request (``max_tokens`` from the options when the client had none)."""
        return anthropic_messages.request_from_canonical(
            request,
            default_max_tokens=options.default_max_tokens,
            adaptive_thinking=options.adaptive_thinking,
            drop_params=options.drop_params,
        )

    def response_to_canonical(self, body: Mapping[str, Any]) -> Response:
        """Parse a message; a body without a ``content`` list is not one."""
        if not isinstance(body.get("content"), list):
            raise ValueError("the body is not a message (no content)")
        return anthropic_messages.response_to_canonical(body)

    def response_from_canonical(self, response: Response) -> JsonDict:
        """Render a message."""
        return anthropic_messages.response_from_canonical(response)

    def stream_decoder(self) -> StreamDecoder:
        """Decode named events (the ``type`` field repeats the name)."""
        return _AnthropicDecoder()

    def stream_encoder(self, include_usage: bool) -> StreamEncoder:
        """Encode named events; Anthropic streams always carry usage."""
        return _AnthropicEncoder()


class _GeminiDecoder:
    __slots__ = ("_decoder", "_finish_reason_seen")

    def __init__(self) -> None:
        self._decoder = gemini.GeminiChunkDecoder()
        self._finish_reason_seen = False

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if not event.data:
            return []
        chunk = _loads(event.data)
        if not isinstance(chunk, dict):
            return []
        for candidate in chunk.get("candidates") or []:
            if isinstance(candidate, dict) and candidate.get("finishReason"):
                self._finish_reason_seen = True
        return self._decoder.feed(chunk)

    def finish(self) -> list[StreamEvent]:
        # Gemini streams have no end marker: the connection's end closes the answer, but only
        # one that reported why it finished is complete; a cut one gets nothing invented.
        return self._decoder.finish() if self._finish_reason_seen else []


class _GeminiEncoder:
    __slots__ = ("_encoder",)

    def __init__(self) -> None:
        self._encoder = gemini.GeminiChunkEncoder()

    def encode(self, event: StreamEvent) -> bytes:
        return b"".join(encode_event(_DUMPS(c)) for c in self._encoder.feed(event))


class GeminiCodec:
    """Gemini ``generateContent`` (the model travels in the URL, not the body)."""

    name = "gemini"

    def request_to_canonical(self, body: Mapping[str, Any]) -> Request:
        """Parse a generateContent request."""
        return gemini.request_to_canonical(body, model=str(body.get("model", "")))

    def request_from_canonical(
        self, request: Request, options: TargetOptions
    ) -> RequestTranslation:
        """Render a generateContent request in the target model's dialect."""
        return gemini.request_from_canonical(
            request, target=options.gemini, drop_params=options.drop_params
        )

    def response_to_canonical(self, body: Mapping[str, Any]) -> Response:
        """Parse a generateContent response; it has candidates or a prompt verdict."""
        if "candidates" not in body and "promptFeedback" not in body:
            raise ValueError("the body is not a generateContent response")
        return gemini.response_to_canonical(body)

    def response_from_canonical(self, response: Response) -> JsonDict:
        """Render a generateContent response."""
        return gemini.response_from_canonical(response)

    def stream_decoder(self) -> StreamDecoder:
        """Decode ``data:`` chunks until the connection ends."""
        return _GeminiDecoder()

    def stream_encoder(self, include_usage: bool) -> StreamEncoder:
        """Encode chunks; Gemini chunks carry usage on their own."""
        return _GeminiEncoder()


def codecs() -> dict[str, WireCodec]:
    """A fresh registry of codecs by wire name."""
    return {"openai": OpenAICodec(), "anthropic": AnthropicCodec(), "gemini": GeminiCodec()}
