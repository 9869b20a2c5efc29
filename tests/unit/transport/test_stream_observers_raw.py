"""The relay hands each stream observer an event's bytes (``observe_raw``), and an observer
that knows its common events by their bytes skips the SSE parsing for them. Whatever it skips,
every recorded stream, and every event shaped to fall just outside what it takes, must come
out as parsing every event gives it: the same bytes for the client and the same counts."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from orcarouter.providers import base
from orcarouter.providers.anthropic import AnthropicStreamObserver
from orcarouter.providers.base import ObservedStream
from orcarouter.providers.gemini import GeminiStreamObserver
from orcarouter.providers.openai_compat import OpenAIStreamObserver
from orcarouter.wire.sse import SSEEvent, SSESplitter, parse_event
from tests.support.observers import observed
from tests.support.recordings import load_family

OBSERVERS: dict[str, tuple[str, Callable[[], ObservedStream]]] = {
    "openai": ("openai-chat", lambda: OpenAIStreamObserver(strip_usage_chunk=False)),
    "openai, usage chunk stripped": (
        "openai-chat",
        lambda: OpenAIStreamObserver(strip_usage_chunk=True),
    ),
    "anthropic": ("anthropic-messages", AnthropicStreamObserver),
    "gemini": ("gemini", GeminiStreamObserver),
}


def _observed(observer: ObservedStream, stream: bytes, raw: bool) -> tuple[object, ...]:
    """What ``observer`` writes and counts over ``stream``, read whole, then its end."""
    splitter = SSESplitter()
    if raw:
        out = [observer.observe_raw(event) for event in splitter.split(stream)]
    else:
        out = [observer.observe(parse_event(event)) for event in splitter.split(stream)]
    if (tail := splitter.close()) is not None:
        out.append(observer.observe(tail))
    out.append(observer.close())
    return observed(observer, out)


def _both(make: Callable[[], ObservedStream], stream: bytes) -> tuple[object, ...]:
    by_bytes = _observed(make(), stream, raw=True)
    assert by_bytes == _observed(make(), stream, raw=False)
    return by_bytes


@pytest.mark.parametrize("name", OBSERVERS)
def test_every_recorded_stream_is_read_from_its_bytes_as_parsed(name: str) -> None:
    family, make = OBSERVERS[name]
    streams = [i for i in load_family(family) if i.is_stream and i.response_text]
    assert len(streams) > 10
    for interaction in streams:
        assert interaction.response_text is not None
        _both(make, interaction.response_text.encode())


# Of each vendor's recorded events, the ones its observer must read without parsing: the
# content deltas (Anthropic), every chunk of one data: line (OpenAI, Gemini).
SHORTCUT_SHARE = {
    "openai": 0.9,
    "openai, usage chunk stripped": 0.9,
    "anthropic": 0.6,
    "gemini": 0.9,
}


@pytest.mark.parametrize("name", OBSERVERS)
def test_most_recorded_events_are_read_without_parsing(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    family, make = OBSERVERS[name]
    parsed: list[bytes] = []

    def counted(raw: bytes) -> SSEEvent:
        parsed.append(raw)
        return parse_event(raw)

    # Wherever an observer may parse: its own module, or the default ``observe_raw``.
    monkeypatch.setattr(sys.modules[type(make()).__module__], "parse_event", counted)
    monkeypatch.setattr(base, "parse_event", counted)
    events = 0
    for interaction in load_family(family):
        if interaction.is_stream and interaction.response_text:
            raws = SSESplitter().split(interaction.response_text.encode())
            observer = make()
            for raw in raws:
                observer.observe_raw(raw)
            events += len(raws)
    assert events > 50
    assert len(parsed) <= (1 - SHORTCUT_SHARE[name]) * events, parsed[:3]


_ANTHROPIC_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c",'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
)
_ANTHROPIC_DELTA = (
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"%s"}}'
)


@pytest.mark.parametrize(
    "event",
    [
        (_ANTHROPIC_DELTA % ("x" * 40)) + "\n\n",
        (_ANTHROPIC_DELTA % "déjà vu, déjà vu, déjà vu, déjà vu") + "\n\n",  # length in characters
        (_ANTHROPIC_DELTA % ("x" * 40)) + "  \n\n",  # trailing spaces are not data
        (_ANTHROPIC_DELTA % ("x" * 40)) + "\r\n\r\n",
        (_ANTHROPIC_DELTA % ("x" * 40)).replace('"delta"', '\ndata: "delta"') + "\n\n",
        (_ANTHROPIC_DELTA % ("x" * 40)).replace("\ndata", "\n: a comment\ndata") + "\n\n",
        (_ANTHROPIC_DELTA % ("x" * 40)) + "\r: a comment line after a CR " + "x" * 40 + "}\n\n",
        (_ANTHROPIC_DELTA % "").replace("content_block_delta\n", "content_block_delta \n") + "\n\n",
    ],
)
def test_anthropic_deltas_read_by_their_bytes_or_not_count_the_same(event: str) -> None:
    stream = _ANTHROPIC_START + event.encode()
    produced = _both(AnthropicStreamObserver, stream)[2]
    assert isinstance(produced, int) and produced >= 1


_OPENAI_FIRST = (
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
)
_OPENAI_DELTA = 'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]%s}'


@pytest.mark.parametrize(
    "event",
    [
        _OPENAI_DELTA % ("hi", "") + "\n\n",
        _OPENAI_DELTA % ("hi", ',"usage":null') + "\n\n",
        _OPENAI_DELTA % ("", ',"usage":{"prompt_tokens":2,"completion_tokens":1}') + "\n\n",
        _OPENAI_DELTA % ("", ',"error":{"type":"overloaded"}') + "\n\n",
        _OPENAI_DELTA % ("ça", "") + "\r\n\r\n",
        (_OPENAI_DELTA % ("a", ',"usage":null')).replace(',"usage"', '\ndata: ,"usage"') + "\n\n",
        (_OPENAI_DELTA % ("a", "")).replace('"id"', '\n: "usage"\ndata: "id"') + "\n\n",
        "event: chunk\n" + _OPENAI_DELTA % ("a", "") + "\n\n",
        'data: {"id":"c"}\r: ' + _OPENAI_DELTA % ("a", "") + "\n\n",  # a CR ends the line
        "data: [DONE]\n\n",
    ],
)
@pytest.mark.parametrize("strip", [False, True])
def test_openai_chunks_read_by_their_bytes_or_not_count_the_same(event: str, strip: bool) -> None:
    _both(lambda: OpenAIStreamObserver(strip_usage_chunk=strip), _OPENAI_FIRST + event.encode())
