"""Plain text deltas skip the canonical events on a translated stream (``TranslatingObserver``),
and Anthropic's skip the SSE parsing too (``observe_raw``): every recorded stream, translated
for a client of the other protocol, comes out byte for byte as the full decode and encode of
every event gives it, with the same usage and counts."""

from __future__ import annotations

import time

import pytest

from orcarouter.canonical import StreamEvent
from orcarouter.providers.exchange import TranslatingObserver
from orcarouter.translate.codecs import AnthropicCodec, OpenAICodec, StreamEncoder, WireCodec
from orcarouter.translate.common import TranslationError
from orcarouter.wire.sse import SSEEvent, SSESplitter, parse_event
from tests.support.observers import observed
from tests.support.recordings import Interaction, load_family

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


def _raw_events(interaction: Interaction) -> tuple[list[bytes], SSEEvent | None]:
    """The stream's events as ``SSESplitter.split`` gives them, and its unterminated tail."""
    assert interaction.response_text is not None
    splitter = SSESplitter()
    return splitter.split(interaction.response_text.encode()), splitter.close()


def _translate_raw(
    interaction: Interaction, upstream: WireCodec, client: WireCodec, usage: bool
) -> tuple[object, ...]:
    """``_observe`` through ``observe_raw``, as the relay reads a stream."""
    observer = TranslatingObserver(upstream.stream_decoder(), client.stream_encoder(usage))
    raws, tail = _raw_events(interaction)
    out = [observer.observe_raw(raw) for raw in raws]
    if tail is not None:
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
        raw = _translate_raw(interaction, upstream, client, usage)
        assert raw == full, f"{interaction.file} #{interaction.index}"


def test_the_raw_reader_finds_the_recorded_text_deltas_and_reads_them_as_parsed() -> None:
    decoder = AnthropicCodec().stream_decoder()
    found = parsed = 0
    for interaction in _streams("anthropic-messages"):
        for raw in _raw_events(interaction)[0]:
            by_bytes = decoder.raw_text(raw)  # type: ignore[attr-defined]
            by_parse = decoder.text_delta(parse_event(raw))  # type: ignore[attr-defined]
            assert by_bytes in (None, by_parse), raw
            found += by_bytes is not None
            parsed += by_parse is not None
    assert parsed > 200
    assert found == parsed  # every one: Anthropic's own shape


_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_MID = b',"delta":{"type":"text_delta","text":'
_ESCAPED = '"\\"}} \\u00e9\u00e9 \\n"}}\n\n'.encode()  # escapes, and UTF-8 as it is


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_HEAD + b"0" + _MID + b'"hi"}}\n\n', (0, "hi")),
        (_HEAD + b"7" + _MID + _ESCAPED, (7, '"}} \u00e9\u00e9 \n')),
        (_HEAD + b"3" + _MID + b'"hi"}    }\n\n', (3, "hi")),  # padded, as Anthropic does
        (_HEAD + b"3" + _MID + b'"hi" }}\n\n', (3, "hi")),
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
    splitter = SSESplitter()
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
    out = _both_paths(splitter.feed(raw), AnthropicCodec(), OpenAICodec())
    assert b"stray" not in out


def test_an_openai_chunk_with_more_than_text_takes_the_full_path() -> None:
    splitter = SSESplitter()
    raw = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
        b'"content":"a"}}]}\n\n'
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"b",'
        b'"reasoning_content":"think"}}]}\n\n'
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"c"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    out = _both_paths(splitter.feed(raw), OpenAICodec(), AnthropicCodec())
    assert b'"thinking":"think"' in out


def _both_paths(events: list[SSEEvent], upstream: WireCodec, client: WireCodec) -> bytes:
    """The client's bytes, checked to be the same with and without the fast path."""
    fast = _translate(events, upstream, client, True, fast=True)
    assert fast == _translate(events, upstream, client, True, fast=False)
    out = fast[0]
    assert isinstance(out, list)
    return b"".join(out)
