"""Plain text deltas skip the canonical events on a translated stream (``TranslatingObserver``),
and Anthropic's skip the SSE parsing too (``observe_raw``): every recorded stream, translated
for a client of the other protocol, comes out byte for byte as the full decode and encode of
every event gives it, with the same usage and counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import orjson
import pytest

from orcarouter.canonical import StreamEvent
from orcarouter.providers.exchange import TranslatingObserver
from orcarouter.translate.codecs import AnthropicCodec, OpenAICodec, StreamEncoder, WireCodec
from orcarouter.translate.common import TranslationError
from orcarouter.wire.sse import SSEEvent, SSESplitter, parse_event
from tests.support.observers import observed
from tests.support.recordings import Interaction, load_family

T = TypeVar("T")
Found = tuple[int, str] | None  # a text delta's block index and text

# (recorded family, the upstream's codec, the client's codec)
DIRECTIONS: dict[str, tuple[str, WireCodec, WireCodec]] = {
    "anthropic upstream, openai client": ("anthropic-messages", AnthropicCodec(), OpenAICodec()),
    "openai upstream, anthropic client": ("openai-chat", OpenAICodec(), AnthropicCodec()),
}


def _streams(family: str) -> list[Interaction]:
    return [i for i in load_family(family) if i.is_stream and i.status == 200]


def _events(interaction: Interaction) -> list[SSEEvent]:
    assert interaction.response_text is not None
    splitter = SSESplitter()
    events = splitter.feed(interaction.response_text.encode())
    last = splitter.close()
    return [*events, *([last] if last else [])]


def _raw_events(interaction: Interaction) -> list[bytes]:
    """The stream's events as ``SSESplitter.split`` gives them (recordings end with a blank
    line: no tail)."""
    assert interaction.response_text is not None
    return SSESplitter().split(interaction.response_text.encode())


def _translate_raw(
    stream: bytes, upstream: WireCodec, client: WireCodec, usage: bool
) -> tuple[object, ...]:
    """``_observe`` through ``observe_raw``, as the relay reads a stream."""
    observer = TranslatingObserver(upstream.stream_decoder(), client.stream_encoder(usage))
    splitter = SSESplitter()
    out = [observer.observe_raw(raw) for raw in splitter.split(stream)]
    if (tail := splitter.close()) is not None:
        out.append(observer.observe(tail))
    out.append(observer.close())
    return observed(observer, out)


def _translate(
    events: list[SSEEvent], upstream: WireCodec, client: WireCodec, usage: bool, fast: bool
) -> tuple[object, ...]:
    observer = TranslatingObserver(upstream.stream_decoder(), client.stream_encoder(usage))
    assert observer._text is not None  # both sides offer the fast path
    if not fast:
        observer._text = None
    return _observe(observer, events)


def _observe(observer: TranslatingObserver, events: list[SSEEvent]) -> tuple[object, ...]:
    """Everything the observer writes and counts over ``events``, then the stream's end."""
    out = [observer.observe(event) for event in events]
    out.append(observer.close())
    return observed(observer, out)


@pytest.mark.parametrize(
    ("family", "marker", "minimum"),
    [("anthropic-messages", '"text_delta"', 15), ("openai-chat", '"content":"', 30)],
)
def test_there_are_recorded_text_streams(family: str, marker: str, minimum: int) -> None:
    assert sum(marker in (i.response_text or "") for i in _streams(family)) >= minimum


@pytest.mark.parametrize("usage", [False, True])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_recorded_stream_translates_as_the_full_path_does(
    monkeypatch: pytest.MonkeyPatch, direction: str, usage: bool
) -> None:
    family, upstream, client = DIRECTIONS[direction]
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.0)  # one ``created`` for both runs
    for interaction in _streams(family):
        try:
            full = _translate(_events(interaction), upstream, client, usage, fast=False)
        except TranslationError:  # a stream the full path refuses (n > 1) is refused alike
            with pytest.raises(TranslationError):
                _translate(_events(interaction), upstream, client, usage, fast=True)
            continue
        fast = _translate(_events(interaction), upstream, client, usage, fast=True)
        assert fast == full, f"{interaction.file} #{interaction.index}"
        assert interaction.response_text is not None
        raw = _translate_raw(interaction.response_text.encode(), upstream, client, usage)
        assert raw == full, f"{interaction.file} #{interaction.index}"


def _counted(read: Callable[[T], Found], found: list[int]) -> Callable[[T], Found]:
    """``read`` (a decoder's text reader), counting in ``found`` the text deltas it finds."""

    def counting(event: T) -> Found:
        text = read(event)
        found[0] += text is not None
        return text

    return counting


def _text_deltas_read(
    interaction: Interaction, upstream: WireCodec, client: WireCodec, *, raw: bool
) -> int:
    """How many of the stream's events the observer read as text deltas: from their bytes
    (``raw``), or once parsed."""
    observer = TranslatingObserver(upstream.stream_decoder(), client.stream_encoder(True))
    found = [0]
    if raw:
        assert observer._raw_text is not None
        observer._raw_text = (_counted(observer._raw_text[0], found), observer._raw_text[1])
        for event in _raw_events(interaction):
            observer.observe_raw(event)
    else:
        assert observer._text is not None
        observer._text = (_counted(observer._text[0], found), observer._text[1])
        for parsed in _events(interaction):
            observer.observe(parsed)
    return found[0]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_recorded_text_delta_is_read_from_its_bytes(direction: str) -> None:
    family, upstream, client = DIRECTIONS[direction]
    taken = parsed = 0
    for interaction in _streams(family):
        try:
            parsed += _text_deltas_read(interaction, upstream, client, raw=False)
        except TranslationError:  # refused alike both ways (the test above)
            continue
        taken += _text_deltas_read(interaction, upstream, client, raw=True)
    assert parsed > 200
    assert taken == parsed  # every one: each vendor's own shape


_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_MID = b',"delta":{"type":"text_delta","text":'
_ESCAPED = '"\\"}} \\u00e9\u00e9 \\n"}}\n\n'.encode()  # escapes, and UTF-8 as it is


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_HEAD + b"0" + _MID + b'"hi"}}\n\n', (0, "hi")),
        (_HEAD + b"7" + _MID + _ESCAPED, (7, '"}} \u00e9\u00e9 \n')),
        (_HEAD + b"3" + _MID + b'"hi"}    }\n\n', (3, "hi")),  # padded, as Anthropic does
        (_HEAD + b"3" + _MID + b'"hi" }}\n\n', None),  # not where Anthropic pads
        (_HEAD + b"3" + _MID + b'"hi"\r}}\n\n', None),  # a CR ends the data line
        (_HEAD + b"3" + _MID + b'"hi"\n}}\n\n', None),
        (_HEAD + b"3" + _MID + b'\r"hi"}}\n\n', None),
        (_HEAD + b"3" + _MID + b' "hi"}}\n\n', None),
        (_HEAD + b"3" + _MID + b'"hi"}\t}\n\n', None),  # other white space: parsed instead
        (_HEAD + b"3" + _MID + b'"h}"  }\n\n', None),  # the delta not closed
        (_HEAD + b"12" + _MID + b'"hi"}}\n\n', (12, "hi")),
        (_HEAD + b"123" + _MID + b'"hi"}}\n\n', None),  # three digits: parsed instead
        (_HEAD + b"01" + _MID + b'"hi"}}\n\n', None),  # not a JSON number
        (_HEAD + b"1x" + _MID + b'"hi"}}\n\n', None),
        (_HEAD + b"0" + _MID + b'"hi","extra":1}}\n\n', None),  # more than the text
        (_HEAD + b"0" + _MID + b'"a" , "b"}}\n\n', None),
        (_HEAD + b"0" + _MID + b"5}}\n\n", None),  # not a string
        (_HEAD + b"0" + _MID + b'"a\nb"}}\n\n', None),  # a line break: two data lines
        (_HEAD + b"0" + _MID + b'"hi"}}\r\n\r\n', None),
        (_HEAD + b"0" + _MID + b'"hi"}}}\n\n', None),
        (_HEAD + b"x" + _MID + b'"hi"}}\n\n', None),
        (b'event: content_block_delta\ndata: {"index":0,"type":"content_block_delta",'
         b'"delta":{"type":"text_delta","text":"hi"}}\n\n', None),  # keys in another order
    ],
)  # fmt: skip
def test_the_raw_reader_takes_only_events_it_can_read_exactly(
    raw: bytes, expected: tuple[int, str] | None
) -> None:
    decoder = AnthropicCodec().stream_decoder()
    assert decoder.raw_text(raw) == expected  # type: ignore[attr-defined]
    if expected is not None:
        assert decoder.text_delta(parse_event(raw)) == expected  # type: ignore[attr-defined]
    index = expected[0] if expected is not None else 3
    opening = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c",'
        b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
        b'"content_block":{"type":"text","text":""}}\n\n' % index
    )
    _both_paths(opening + raw, AnthropicCodec(), OpenAICodec())


class _RefusingEncoder:
    """An encoder whose fast path never applies: every text delta the decoder found must still
    come out as the full path writes it."""

    def __init__(self, inner: StreamEncoder) -> None:
        self._inner = inner

    def encode(self, event: StreamEvent) -> bytes:
        return self._inner.encode(event)

    def encode_text(self, index: int, text: str) -> bytes | None:
        return None


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_found_text_delta_the_encoder_refuses_is_encoded_once(
    monkeypatch: pytest.MonkeyPatch, direction: str
) -> None:
    family, upstream, client = DIRECTIONS[direction]
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.0)
    for interaction in _streams(family):
        events = _events(interaction)
        try:
            full = _translate(events, upstream, client, True, fast=False)
        except TranslationError:  # refused by the full path (e.g. n > 1): the test above
            continue
        observer = TranslatingObserver(
            upstream.stream_decoder(), _RefusingEncoder(client.stream_encoder(True))
        )
        assert _observe(observer, events) == full, interaction.file


def test_a_text_delta_for_a_block_that_is_not_text_takes_the_full_path() -> None:
    raw = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c",'
        b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"stray"}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,'
        b'"delta":{"type":"text_delta","text":"no such block"}}\n\n'
    )
    out = _both_paths(raw, AnthropicCodec(), OpenAICodec())
    assert b"stray" not in out


def test_an_openai_chunk_with_more_than_text_takes_the_full_path() -> None:
    raw = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
        b'"content":"a"}}]}\n\n'
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"b",'
        b'"reasoning_content":"think"}}]}\n\n'
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"c"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    out = _both_paths(raw, OpenAICodec(), AnthropicCodec())
    assert b'"thinking":"think"' in out


def _both_paths(stream: bytes, upstream: WireCodec, client: WireCodec) -> bytes:
    """The client's bytes, checked to be the same on every path: each event parsed and fully
    decoded, parsed and taken as text where it is, read from its bytes where it can be."""
    events = SSESplitter().feed(stream)
    fast = _translate(events, upstream, client, True, fast=True)
    assert fast == _translate(events, upstream, client, True, fast=False)
    assert fast == _translate_raw(stream, upstream, client, True)
    out = fast[0]
    assert isinstance(out, list)
    return b"".join(out)


_OPENAI_TEXT = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]}'


@pytest.mark.parametrize(
    "event",
    [
        _OPENAI_TEXT % b"plain" + b"\n\n",
        _OPENAI_TEXT % b"crlf" + b"\r\n\r\n",
        (_OPENAI_TEXT % b"a CR ends the line").replace(b',"model"', b',\r"model"') + b"\n\n",
        (_OPENAI_TEXT % b"two lines").replace(b',"model"', b'\ndata: ,"model"') + b"\n\n",
        b": a comment\n" + _OPENAI_TEXT % b"after a comment" + b"\n\n",
        _OPENAI_TEXT % b"\xc3\xa7a, \\u00e7a" + b"\n\n",
    ],
)
def test_openai_text_chunks_read_from_their_bytes_or_not_translate_alike(event: bytes) -> None:
    first = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
        b'"content":"a"}}]}\n\n'
    )
    end = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\ndata: [DONE]\n\n'
    )
    _both_paths(first + event + end, OpenAICodec(), AnthropicCodec())


_OPENAI_HEAD = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1754688908,'
    b'"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1",'
)
_CHOICE = b'"choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]'
_OBFUSCATED = b',"usage":null,"obfuscation":"68kWLPsNVG6FC"}\n\n'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + _OBFUSCATED, "hi"),  # OpenAI's own
        (_OPENAI_HEAD + b'"usage":null,' + _CHOICE % b'"hi"' + b',"obfuscation":"x"}\n\n', "hi"),
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + b"}\n\n", "hi"),
        (b"data: {" + _CHOICE % b'"hi"' + b"}\n\n", "hi"),  # the choice first
        (  # Mistral's
            _OPENAI_HEAD + b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}'
            b"\n\n",
            "hi",
        ),
        (  # OpenRouter's
            b'data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.comp'
            b'letion.chunk","created":1,"choices":[{"index":0,"delta":{"role":"assistant","conte'
            b'nt":"hi"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
            "hi",
        ),
        (_OPENAI_HEAD + (_CHOICE % b'"hi"').replace(b"{", b"{ ", 1) + b"}\n\n", None),
        (_OPENAI_HEAD + _CHOICE % _ESCAPED[:-4] + b"}\n\n", '"}} \u00e9\u00e9 \n'),
        (_OPENAI_HEAD + _CHOICE % b'"a\\"},\\"logprobs\\":null"' + b"}\n\n", 'a"},"logprobs":null'),
        (_OPENAI_HEAD + _CHOICE % b'""' + b"}\n\n", None),  # no text: the full path
        (_OPENAI_HEAD + _CHOICE % b'"hi" ' + b"}\n\n", None),  # white space after the string
        (_OPENAI_HEAD + _CHOICE % b'"h\\"' + b"}\n\n", None),  # the string not closed
        (_OPENAI_HEAD + _CHOICE % b'"a","b"' + b"}\n\n", None),  # more than one string
        (_OPENAI_HEAD + _CHOICE % b"5" + b"}\n\n", None),
        (_OPENAI_HEAD + _CHOICE % b'"a\nb"' + b"}\n\n", None),  # a line break: two data lines
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + b',"usage":{"prompt_tokens":1}}\n\n', None),
        (_OPENAI_HEAD + b'"usage":{"prompt_tokens":1},' + _CHOICE % b'"hi"' + b"}\n\n", None),
        (_OPENAI_HEAD + b'"error":{"message":"x"},' + _CHOICE % b'"hi"' + b"}\n\n", None),
        (_OPENAI_HEAD + b'"choices":[],' + _CHOICE % b'"hi"' + b"}\n\n", None),  # twice
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + b',"choices":[]}\n\n', None),
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + b',\n"x":1}\n\n', None),
        (_OPENAI_HEAD.replace(b',"model"', b',\r"model"') + _CHOICE % b'"hi"' + b"}\n\n", None),
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + b"}}\n\n", None),
        (b'data: {"x":{"y":1,' + _CHOICE % b'"hi"' + b"}}\n\n", None),  # a nested choice
        (_OPENAI_HEAD + _CHOICE % b'"hi"' + b"}\r\n\r\n", None),  # CR LF: parsed instead
        (b"data:{" + _CHOICE % b'"hi"' + b"}\n\n", None),
        (_OPENAI_HEAD + (_CHOICE % b'"hi"').replace(b"null}", b'"stop"}') + b"}\n\n", None),
    ],
)  # fmt: skip
def test_openai_text_chunks_are_read_from_their_bytes_only_in_openais_shape(
    raw: bytes, expected: str | None
) -> None:
    decoder = OpenAICodec().stream_decoder()
    assert decoder._template_text(raw) == expected  # type: ignore[attr-defined]
    first = _OPENAI_HEAD + _CHOICE.replace(b'"content"', b'"role":"assistant","content"') % b'"a"'
    end = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\ndata: [DONE]\n\n'
    )
    out = _both_paths(first + b"}\n\n" + raw + end, OpenAICodec(), AnthropicCodec())
    if expected is not None:
        assert orjson.dumps(expected)[1:-1] in out


def test_openais_recorded_text_chunks_are_read_without_decoding_them() -> None:
    decoder = OpenAICodec().stream_decoder()
    read = sum(
        decoder._template_text(raw) is not None  # type: ignore[attr-defined]
        for interaction in _streams("openai-chat")
        for raw in _raw_events(interaction)
    )
    assert read >= 400


def _padded(value: bytes, before: bytes = b',"usage":null') -> bytes:
    """An OpenAI text chunk ``"hi"`` whose keys after the choice are ``before`` then
    ``obfuscation``'s ``value`` (raw JSON)."""
    return _OPENAI_HEAD + _CHOICE % b'"hi"' + before + b',"obfuscation":' + value + b"}\n\n"


@pytest.mark.parametrize(
    ("raw", "read", "text"),
    [
        (_padded(b'"Zx9"'), True, "hi"),  # only the padding differs: not checked again
        (_padded(b'"a1b2c3d4e5f6g7h8"'), True, "hi"),
        (_padded(b'"a-b"'), False, "hi"),  # not letters and digits: checked whole
        (_padded(b'""'), False, "hi"),
        (_padded(b'"q"', b""), False, "hi"),  # other keys before it: checked whole
        (_padded(b'"q"', b',"usage":{"prompt_tokens":1}'), False, None),  # and refused
        (_padded(b'"q","x":1'), False, "hi"),  # not the last key
        (_padded(b'"q\\r"'), False, "hi"),  # an escape is not a letter
        (_padded(b'"q\r"'), False, None),  # a CR ends the data line
        (_padded(b'"q"}'), False, None),
        (_padded(b'"abcd'), False, None),  # not closed: not JSON
    ],
)  # fmt: skip
def test_openais_padding_is_all_that_may_differ_between_chunks_read_without_a_check(
    raw: bytes, read: bool, text: str | None
) -> None:
    decoder = OpenAICodec().stream_decoder()
    assert decoder._template_text(_padded(b'"abc"')) == "hi"  # type: ignore[attr-defined]
    end = raw.index(b'"},"logprobs"') + 1  # after the text's closing quote
    assert decoder._padded_end(raw) == (end if read else -1)  # type: ignore[attr-defined]
    assert decoder._template_text(raw) == text  # type: ignore[attr-defined]
    first = _OPENAI_HEAD + _CHOICE.replace(b'"content"', b'"role":"assistant","content"') % b'"a"'
    last = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\ndata: [DONE]\n\n'
    )
    stream = first + b"}\n\n" + _padded(b'"abc"') + raw + last
    _both_paths(stream, OpenAICodec(), AnthropicCodec())
