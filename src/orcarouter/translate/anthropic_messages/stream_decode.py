"""Anthropic SSE events → canonical stream events (one event at a time).

Handles what the SDK accumulator tolerates: ``ping`` and unknown events anywhere, usage split
between ``message_start`` and the cumulative ``message_delta`` (cache counters may appear only
in the latter: https://github.com/jeremychone/rust-genai/pull/258), and a ``max_tokens`` stop
with a block never closed (SDK fixture ``incomplete_partial_json_response.txt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from orcarouter.canonical import (
    BlockDelta,
    BlockStart,
    BlockStop,
    CitationDelta,
    Delta,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaqueDelta,
    SignatureDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)
from orcarouter.translate.anthropic_messages.blocks import (
    block_from_anthropic,
    citation_from_anthropic,
)
from orcarouter.translate.common import JsonDict, is_mapping
from orcarouter.translate.stop_reasons import stop_from_anthropic
from orcarouter.translate.usage import usage_from_anthropic

_MESSAGE_KEYS: Final = (
    "id",
    "type",
    "role",
    "model",
    "content",
    "stop_reason",
    "stop_sequence",
    "usage",
)


class AnthropicEventDecoder:
    """Feeds decoded Anthropic stream events (the ``data:`` JSON), returns canonical events."""

    def __init__(self) -> None:
        self._usage: JsonDict = {}
        self._open: list[int] = []
        self._stopped = False

    def feed(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        """Translate one event; its ``type`` field names it (as the SSE ``event:`` line does)."""
        kind = data.get("type")
        if kind == "content_block_delta":  # nearly every event: tested first
            delta = _delta(data.get("delta") or {})
            return [BlockDelta(index=int(data.get("index", 0)), delta=delta)]
        if kind == "message_start":
            return [self._message_start(data.get("message") or {})]
        if kind == "content_block_start":
            index = int(data.get("index", len(self._open)))
            self._open.append(index)
            block = block_from_anthropic(data.get("content_block") or {})
            return [BlockStart(index=index, block=block)]
        if kind == "content_block_stop":
            index = int(data.get("index", 0))
            if index in self._open:
                self._open.remove(index)
            return [BlockStop(index=index)]
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self._stopped = True
            return [MessageStop()]
        if kind == "error":
            error = data.get("error") or {}
            return [
                StreamError(
                    type=str(error.get("type", "api_error")), message=str(error.get("message", ""))
                )
            ]
        return []

    def _message_start(self, message: Mapping[str, Any]) -> MessageStart:
        usage = message.get("usage")
        self._usage = dict(usage) if is_mapping(usage) else {}
        extra = {k: v for k, v in message.items() if k not in _MESSAGE_KEYS}
        return MessageStart(
            id=message.get("id"),
            model=message.get("model"),
            usage=usage_from_anthropic(self._usage) if self._usage else None,
            extra={"anthropic": extra} if extra else {},
        )

    def _message_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = [BlockStop(index=i) for i in self._open]
        self._open.clear()
        usage = data.get("usage")
        if is_mapping(usage):
            # message_delta counters are cumulative and override message_start's.
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = data.get("delta") or {}
        extra = {k: v for k, v in delta.items() if k not in ("stop_reason", "stop_sequence")}
        events.append(
            MessageDelta(
                stop_reason=stop_from_anthropic(delta.get("stop_reason")),
                stop_sequence=delta.get("stop_sequence"),
                usage=usage_from_anthropic(self._usage),
                extra={"anthropic": extra} if extra else {},
            )
        )
        return events


def _delta(delta: Mapping[str, Any]) -> Delta:
    kind = delta.get("type")
    if kind == "text_delta":
        return TextDelta(text=str(delta.get("text", "")))
    if kind == "input_json_delta":
        return InputJsonDelta(partial_json=str(delta.get("partial_json", "")))
    if kind == "thinking_delta":
        return ThinkingDelta(thinking=str(delta.get("thinking", "")))
    if kind == "signature_delta":
        return SignatureDelta(signature=str(delta.get("signature", "")))
    if kind == "citations_delta" and isinstance(delta.get("citation"), Mapping):
        return CitationDelta(citation=citation_from_anthropic(delta["citation"]))
    return OpaqueDelta(wire="anthropic", data=dict(delta))
