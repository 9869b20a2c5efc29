"""Provider-neutral stream events and an accumulator that folds them into a ``Response``.

A stream is ``MessageStart``, then blocks (``BlockStart``, ``BlockDelta``…, ``BlockStop``),
then ``MessageDelta`` (stop reason, maybe usage), maybe ``UsageReport`` (usage that arrives
after the stop, as OpenAI sends it), then ``MessageStop``. Block indexes are unique per
stream; blocks may overlap (OpenAI may interleave tool calls), so consumers that need one open
block at a time (Anthropic) serialise them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from orcarouter.canonical.content import (
    Block,
    Citation,
    Extras,
    Refusal,
    ServerToolUse,
    Text,
    Thinking,
    ToolUse,
    WireName,
    no_extras,
)
from orcarouter.canonical.response import Choice, Response, StopReason, Usage


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStart:
    """The stream began; ``usage`` may hold input counts known up front."""

    id: str | None = None
    model: str | None = None
    created: int | None = None
    usage: Usage | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """More text for a ``Text`` (or ``Refusal``) block."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkingDelta:
    """More reasoning text for a ``Thinking`` block."""

    thinking: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureDelta:
    """The signature of a ``Thinking`` block (replaces, does not append)."""

    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputJsonDelta:
    """A raw fragment of a tool call's JSON arguments."""

    partial_json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CitationDelta:
    """A citation attached to a ``Text`` block."""

    citation: Citation


@dataclass(frozen=True, slots=True, kw_only=True)
class OpaqueDelta:
    """A delta only one wire understands, carried for same-wire relays."""

    wire: WireName
    data: Any


Delta: TypeAlias = (
    TextDelta | ThinkingDelta | SignatureDelta | InputJsonDelta | CitationDelta | OpaqueDelta
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockStart:
    """A block opens with its initial content (complete for blocks that get no deltas)."""

    index: int
    block: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockDelta:
    """A fragment for the open block ``index``."""

    index: int
    delta: Delta


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockStop:
    """Block ``index`` is complete."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDelta:
    """Generation stopped; ``usage`` is cumulative when present."""

    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    """Cumulative usage that arrived on its own (OpenAI's final ``choices: []`` chunk)."""

    usage: Usage


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStop:
    """The stream ended normally."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamError:
    """The upstream failed after the stream started; ``type`` is an Anthropic error type."""

    type: str
    message: str
    status: int | None = None


StreamEvent: TypeAlias = (
    MessageStart
    | BlockStart
    | BlockDelta
    | BlockStop
    | MessageDelta
    | UsageReport
    | MessageStop
    | StreamError
)


@dataclass(slots=True)
class _OpenBlock:
    block: Block
    parts: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    signature: str | None = None


def _finish_block(state: _OpenBlock) -> Block:
    block, joined = state.block, "".join(state.parts)
    if isinstance(block, Text):
        return replace(
            block, text=block.text + joined, citations=(*block.citations, *state.citations)
        )
    if isinstance(block, Refusal):
        return replace(block, text=block.text + joined)
    if isinstance(block, Thinking):
        signature = state.signature if state.signature is not None else block.signature
        return replace(block, thinking=block.thinking + joined, signature=signature)
    if isinstance(block, ToolUse | ServerToolUse) and state.parts:
        return _with_arguments(block, joined)
    return block


def _with_arguments(block: ToolUse | ServerToolUse, arguments: str) -> Block:
    try:
        parsed: Any = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        parsed = {}
    if isinstance(block, ToolUse):
        return replace(block, input=parsed, arguments=arguments)
    return replace(block, input=parsed)


class StreamAccumulator:
    """Folds canonical stream events into a ``Response`` (for tests and usage accounting)."""

    def __init__(self) -> None:
        self._start: MessageStart | None = None
        self._open: dict[int, _OpenBlock] = {}
        self._order: list[int] = []
        self._done: dict[int, Block] = {}
        self._stop: MessageDelta | None = None
        self._usage: Usage | None = None
        self.error: StreamError | None = None

    def feed(self, event: StreamEvent) -> None:
        """Apply one event."""
        if isinstance(event, MessageStart):
            self._start = event
            self._usage = event.usage or self._usage
        elif isinstance(event, BlockStart):
            self._open[event.index] = _OpenBlock(event.block)
            self._order.append(event.index)
        elif isinstance(event, BlockDelta):
            self._apply_delta(event)
        elif isinstance(event, BlockStop):
            state = self._open.pop(event.index, None)
            if state is not None:
                self._done[event.index] = _finish_block(state)
        elif isinstance(event, MessageDelta):
            self._stop = event
            self._usage = event.usage or self._usage
        elif isinstance(event, UsageReport):
            self._usage = event.usage
        elif isinstance(event, StreamError):
            self.error = event

    def _apply_delta(self, event: BlockDelta) -> None:
        state = self._open.get(event.index)
        if state is None:
            return
        delta = event.delta
        if isinstance(delta, TextDelta):
            state.parts.append(delta.text)
        elif isinstance(delta, ThinkingDelta):
            state.parts.append(delta.thinking)
        elif isinstance(delta, InputJsonDelta):
            state.parts.append(delta.partial_json)
        elif isinstance(delta, SignatureDelta):
            state.signature = delta.signature
        elif isinstance(delta, CitationDelta):
            state.citations.append(delta.citation)

    def response(self) -> Response:
        """The response accumulated so far (unfinished blocks included as they stand)."""
        for index, state in list(self._open.items()):
            self._done[index] = _finish_block(state)
        start = self._start or MessageStart()
        stop = self._stop or MessageDelta()
        choice = Choice(
            content=tuple(self._done[i] for i in self._order if i in self._done),
            stop_reason=stop.stop_reason,
            stop_sequence=stop.stop_sequence,
        )
        return Response(
            id=start.id or "",
            model=start.model or "",
            choices=(choice,),
            usage=self._usage,
            created=start.created,
        )
