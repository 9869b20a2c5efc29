"""Canonical stream events → Anthropic SSE events ``(event name, data)`` (one at a time).

Invariants (wire-formats.md §2.8, §4.6 B; the SDK's ``accumulate_event``): one
``message_start``; block indexes 0, 1, 2… contiguous; one block open at a time (blocks that
overlap in the canonical stream are queued and flushed in order:
https://github.com/QuantumNous/new-api/issues/5483); every delta's type matches its block
(https://github.com/BerriAI/litellm/issues/32357); ``signature_delta`` just before the
thinking block's stop; ``message_delta`` held until usage is known, because OpenAI sends usage
after ``finish_reason``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from orcarouter.canonical import (
    ANTHROPIC_THINKING_FORMAT,
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    CitationDelta,
    Delta,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaqueBlock,
    OpaqueDelta,
    RedactedThinking,
    Refusal,
    ServerToolResult,
    ServerToolUse,
    SignatureDelta,
    StopReason,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolUse,
    Usage,
    UsageReport,
)
from orcarouter.translate.anthropic_messages.blocks import BlockRenderer, citation_to_anthropic
from orcarouter.translate.common import JsonDict, Policy, dump_json
from orcarouter.translate.signatures import client_signature
from orcarouter.translate.stop_reasons import stop_to_anthropic
from orcarouter.translate.usage import usage_to_anthropic

SSEEvent = tuple[str, JsonDict]


@dataclass(slots=True)
class _Pending:
    block: Block
    deltas: list[Delta] = field(default_factory=list)
    stopped: bool = False
    index: int = -1
    signature: str | None = None


class AnthropicEventEncoder:
    """Feeds canonical events, returns Anthropic ``(event, data)`` pairs to frame as SSE."""

    def __init__(self) -> None:
        self._started = False
        self._next_index = 0
        self._current: int | None = None
        self._blocks: dict[int, _Pending] = {}
        self._queue: deque[int] = deque()
        self._stop: MessageDelta | None = None
        self._usage: Usage | None = None
        self._delta_sent = False
        self._done = False
        self._renderer = BlockRenderer(policy=Policy(drop_params=True), for_request=False)

    def feed(self, event: StreamEvent) -> list[SSEEvent]:
        """Translate one canonical event."""
        if self._done:
            return []
        if isinstance(event, MessageStart):
            return self._message_start(event)
        if isinstance(event, BlockStart):
            return self._block_start(event)
        if isinstance(event, BlockDelta):
            return self._block_delta(event)
        if isinstance(event, BlockStop):
            return self._block_stop(event.index)
        if isinstance(event, MessageDelta):
            return self._message_delta(event)
        if isinstance(event, UsageReport):
            self._usage = event.usage
            return self._flush_delta() if self._stop is not None else []
        if isinstance(event, MessageStop):
            return self._message_stop()
        return self._error(event)

    def _message_start(self, event: MessageStart) -> list[SSEEvent]:
        if self._started:
            return []  # exactly one message_start (https://github.com/BerriAI/litellm/issues/32357)
        self._started = True
        self._usage = event.usage
        usage = usage_to_anthropic(event.usage or Usage())
        message: JsonDict = {
            "id": event.id or "",
            "type": "message",
            "role": "assistant",
            "model": event.model or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _block_start(self, event: BlockStart) -> list[SSEEvent]:
        if _start_payload(event.block, self._renderer) is None:
            return []
        self._blocks[event.index] = _Pending(block=event.block)
        if self._current is not None:
            self._queue.append(event.index)
            return []
        return self._open(event.index)

    def _open(self, index: int) -> list[SSEEvent]:
        pending = self._blocks[index]
        pending.index, self._next_index = self._next_index, self._next_index + 1
        self._current = index
        payload = _start_payload(pending.block, self._renderer) or {}
        out: list[SSEEvent] = [
            (
                "content_block_start",
                {"type": "content_block_start", "index": pending.index, "content_block": payload},
            )
        ]
        for delta in [*_initial_deltas(pending), *pending.deltas]:
            out.extend(self._emit_delta(pending, delta))
        pending.deltas.clear()
        return out

    def text_index(self, index: int, text: str) -> int | None:
        """For ``feed(BlockDelta(index, TextDelta(text)))`` in the plain case, a delta of the
        text block being sent: the index the client sees (nothing changes here). None for any
        other case, which is then to be fed."""
        pending = self._blocks.get(index)
        if self._done or pending is None or index != self._current:
            return None
        return pending.index if isinstance(pending.block, Text) else None

    def _block_delta(self, event: BlockDelta) -> list[SSEEvent]:
        pending = self._blocks.get(event.index)
        if pending is None:
            return []
        if event.index != self._current:
            pending.deltas.append(event.delta)
            return []
        return self._emit_delta(pending, event.delta)

    def _emit_delta(self, pending: _Pending, delta: Delta) -> list[SSEEvent]:
        block, payload = pending.block, _delta_payload(pending.block, delta)
        if isinstance(delta, SignatureDelta) and isinstance(block, Thinking):
            pending.signature = delta.signature
            return []
        if payload is None:
            return []
        data = {"type": "content_block_delta", "index": pending.index, "delta": payload}
        return [("content_block_delta", data)]

    def _block_stop(self, index: int) -> list[SSEEvent]:
        pending = self._blocks.get(index)
        if pending is None:
            return []
        if index != self._current:
            pending.stopped = True
            return []
        out = self._close(index)
        while self._queue:
            next_index = self._queue.popleft()
            out.extend(self._open(next_index))
            if not self._blocks[next_index].stopped:
                break
            out.extend(self._close(next_index))
        return out

    def _close(self, index: int) -> list[SSEEvent]:
        pending = self._blocks.pop(index)
        self._current = None
        out: list[SSEEvent] = []
        if isinstance(pending.block, Thinking) and pending.signature:
            # Another vendor's signature is shown wrapped (translate/signatures.py).
            fmt = pending.block.format
            signature = client_signature(pending.signature, fmt, ANTHROPIC_THINKING_FORMAT)
            delta = {"type": "signature_delta", "signature": signature}
            data = {"type": "content_block_delta", "index": pending.index, "delta": delta}
            out.append(("content_block_delta", data))
        stop = {"type": "content_block_stop", "index": pending.index}
        out.append(("content_block_stop", stop))
        return out

    def _close_all(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for index in [*([self._current] if self._current is not None else []), *self._queue]:
            self._blocks[index].stopped = True
        while self._current is not None:
            out.extend(self._block_stop(self._current))
        return out

    def _message_delta(self, event: MessageDelta) -> list[SSEEvent]:
        out = self._close_all()
        if self._stop is None:
            self._stop = event
        self._usage = event.usage or self._usage
        if event.usage is not None:
            out.extend(self._flush_delta())
        return out

    def _flush_delta(self) -> list[SSEEvent]:
        if self._delta_sent:
            return []
        self._delta_sent = True
        stop = self._stop or MessageDelta(stop_reason=StopReason.END_TURN)
        delta: JsonDict = {
            "stop_reason": stop_to_anthropic(stop.stop_reason or StopReason.END_TURN),
            "stop_sequence": stop.stop_sequence,
        }
        usage = usage_to_anthropic(self._usage or Usage())
        return [("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})]

    def _message_stop(self) -> list[SSEEvent]:
        out = self._close_all()
        out.extend(self._flush_delta())
        out.append(("message_stop", {"type": "message_stop"}))
        self._done = True
        return out

    def _error(self, event: StreamError) -> list[SSEEvent]:
        # Clients dispatch on the "event: error" line (https://platform.claude.com/docs/en/build-with-claude/streaming).
        self._done = True
        error = {"type": event.type, "message": event.message}
        return [("error", {"type": "error", "error": error})]


def _start_payload(block: Block, renderer: BlockRenderer) -> JsonDict | None:
    """The ``content_block`` of a start event: empty shells for streamed blocks."""
    if isinstance(block, Text | Refusal):
        return {"type": "text", "text": ""}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": "", "signature": ""}
    if isinstance(block, ToolUse):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    if isinstance(block, ServerToolUse):
        return {"type": "server_tool_use", "id": block.id, "name": block.name, "input": {}}
    if isinstance(block, RedactedThinking | ServerToolResult):
        return renderer.render(block)
    if isinstance(block, OpaqueBlock) and block.wire == "anthropic":
        return dict(block.data)
    return None


def _initial_deltas(pending: _Pending) -> list[Delta]:
    """Deltas that carry a start block's initial content (blocks can start non-empty)."""
    block = pending.block
    if isinstance(block, Text | Refusal):
        deltas: list[Delta] = [TextDelta(text=block.text)] if block.text else []
        if isinstance(block, Text):
            deltas.extend(CitationDelta(citation=c) for c in block.citations)
        return deltas
    if isinstance(block, Thinking):
        deltas = [ThinkingDelta(thinking=block.thinking)] if block.thinking else []
        if block.signature:
            deltas.append(SignatureDelta(signature=block.signature))
        return deltas
    if isinstance(block, ToolUse | ServerToolUse) and block.input:
        arguments = getattr(block, "arguments", None) or dump_json(block.input)
        return [InputJsonDelta(partial_json=arguments)]
    return []


def _delta_payload(block: Block, delta: Delta) -> JsonDict | None:
    """A delta in the form its block takes; mismatched deltas are dropped, never misfiled."""
    if isinstance(delta, TextDelta) and isinstance(block, Text | Refusal) and delta.text:
        return {"type": "text_delta", "text": delta.text}
    if isinstance(delta, ThinkingDelta) and isinstance(block, Thinking) and delta.thinking:
        return {"type": "thinking_delta", "thinking": delta.thinking}
    if isinstance(delta, InputJsonDelta) and isinstance(block, ToolUse | ServerToolUse):
        return {"type": "input_json_delta", "partial_json": delta.partial_json}
    if isinstance(delta, CitationDelta) and isinstance(block, Text):
        return {"type": "citations_delta", "citation": citation_to_anthropic(delta.citation)}
    if isinstance(delta, OpaqueDelta) and delta.wire == "anthropic":
        return dict(delta.data)
    return None
