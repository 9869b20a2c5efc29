"""Plain text deltas skip the canonical events on a translated stream (``TranslatingObserver``):
every recorded Anthropic stream, translated for an OpenAI client, comes out byte for byte as the
full decode and encode of every event gives it."""

from __future__ import annotations

import time

import pytest

from orcarouter.providers.exchange import TranslatingObserver
from orcarouter.translate.codecs import AnthropicCodec, OpenAICodec
from orcarouter.wire.sse import SSEEvent, SSESplitter
from tests.support.recordings import Interaction, load_family

STREAMS = [i for i in load_family("anthropic-messages") if i.is_stream and i.status == 200]


def _events(interaction: Interaction) -> list[SSEEvent]:
    assert interaction.response_text is not None
    splitter = SSESplitter()
    events = splitter.feed(interaction.response_text.encode())
    last = splitter.close()
    return [*events, *([last] if last else [])]


def _translate(events: list[SSEEvent], include_usage: bool, fast: bool) -> tuple[object, ...]:
    observer = TranslatingObserver(
        AnthropicCodec().stream_decoder(), OpenAICodec().stream_encoder(include_usage)
    )
    assert observer._text is not None  # both sides offer the fast path
    if not fast:
        observer._text = None
    out = [observer.observe(event) for event in events]
    out.append(observer.close())
    return (
        out,
        observer.usage,
        observer.produced,
        observer.upstream_model,
        observer.finished,
        observer.error_type,
    )


def test_there_are_recorded_text_streams() -> None:
    texts = sum(1 for i in STREAMS if '"text_delta"' in (i.response_text or ""))
    assert texts >= 15


@pytest.mark.parametrize("include_usage", [False, True])
def test_every_recorded_stream_translates_as_the_full_path_does(
    monkeypatch: pytest.MonkeyPatch, include_usage: bool
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.0)  # one ``created`` for both runs
    for interaction in STREAMS:
        events = _events(interaction)
        fast = _translate(events, include_usage, fast=True)
        full = _translate(events, include_usage, fast=False)
        assert fast == full, f"{interaction.file} #{interaction.index}"


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
    events = splitter.feed(raw)
    fast = _translate(events, True, fast=True)
    assert fast == _translate(events, True, fast=False)
    assert b"stray" not in b"".join(fast[0])  # type: ignore[arg-type]
