"""The OpenAI stream observer's fast path (content deltas taken without decoding) reads every
recorded stream exactly as decoding every chunk does."""

from __future__ import annotations

import pytest

from orcarouter.providers import openai_compat
from orcarouter.providers.openai_compat import OpenAIStreamObserver
from orcarouter.wire.sse import SSESplitter
from tests.support.observers import observed
from tests.support.recordings import Interaction, load_family

STREAMS = [i for i in load_family("openai-chat") if i.is_stream and i.status == 200]


def _observe(interaction: Interaction, strip: bool) -> tuple[object, ...]:
    assert interaction.response_text is not None
    splitter = SSESplitter()
    observer = OpenAIStreamObserver(strip_usage_chunk=strip)
    events = splitter.feed(interaction.response_text.encode())
    last = splitter.close()
    out = [observer.observe(e) for e in [*events, *([last] if last else [])]]
    return observed(observer, out)


def test_there_are_recorded_streams_to_compare() -> None:
    assert len(STREAMS) > 50


@pytest.mark.parametrize("strip", [False, True])
def test_the_fast_path_reads_every_recorded_stream_as_a_full_decode_does(
    monkeypatch: pytest.MonkeyPatch, strip: bool
) -> None:
    fast = [_observe(i, strip) for i in STREAMS]
    monkeypatch.setattr(openai_compat, "_DELTA", "\0never in a chunk\0")
    decoded = [_observe(i, strip) for i in STREAMS]
    assert fast == decoded


def test_a_usage_or_error_chunk_is_never_taken_by_the_fast_path() -> None:
    observer = OpenAIStreamObserver(strip_usage_chunk=True)
    splitter = SSESplitter()
    raw = (
        b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        b'data: {"model":"m","choices":[{"index":0,"delta":{}}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
        b'data: {"model":"m","choices":[{"index":0}],"error":{"type":"overloaded"}}\n\n'
    )
    for event in splitter.feed(raw):
        observer.observe(event)
    assert observer.usage is not None and observer.usage.output_tokens == 1
    assert observer.error_type == "overloaded"
