"""Canonical stream events → Gemini ``streamGenerateContent?alt=sse`` chunks (for Gemini clients).

Mirrors what Gemini sends (wire-formats.md §3.4): each chunk a ``GenerateContentResponse`` with
only new parts, function calls whole, ``finishReason`` + ``usageMetadata`` on the last chunk, no
``[DONE]``. A signature rides on the part after it, or on an empty text part at the end
(https://ai.google.dev/gemini-api/docs/thought-signatures); a mid-stream failure is one chunk
with an ``error`` object (https://ai.google.dev/gemini-api/docs/troubleshooting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from orcarouter.canonical import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    CitationDelta,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    RedactedThinking,
    Refusal,
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
from orcarouter.translate.common import JsonDict, Policy, parse_arguments
from orcarouter.translate.gemini.fields import ERROR_STATUSES
from orcarouter.translate.gemini.grounding import grounding_metadata
from orcarouter.translate.gemini.parts import PartWriter, signature_for
from orcarouter.translate.stop_reasons import stop_to_gemini
from orcarouter.translate.usage import usage_to_gemini

MAX_CITED_TEXT: Final = 1 << 20
"""Text kept per cited block to compute grounding byte offsets; beyond it, no citations."""


@dataclass(slots=True)
class _Open:
    block: Block
    arguments: list[str] = field(default_factory=list)
    signature: str | None = None
    text: list[str] = field(default_factory=list)
    length: int = 0
    byte_offset: int = 0


class GeminiChunkEncoder:
    """Feeds canonical events, returns Gemini chunk dicts to frame as ``data:`` SSE events."""

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._blocks: dict[int, _Open] = {}
        self._pending: str | None = None
        self._cited: list[tuple[int, Text]] = []
        self._answer_bytes = 0
        self._stop: StopReason | None = None
        self._usage: Usage | None = None
        self._done = False
        self._writer = PartWriter(policy=Policy(drop_params=True), for_client=True)

    def feed(self, event: StreamEvent) -> list[JsonDict]:
        """Translate one canonical event into zero or more chunks."""
        if self._done:
            return []
        if isinstance(event, MessageStart):
            self._id, self._model = event.id or "", event.model or ""
            self._usage = event.usage
            return []
        if isinstance(event, BlockStart):
            return self._block_start(event.index, event.block)
        if isinstance(event, BlockDelta):
            return self._block_delta(event)
        if isinstance(event, BlockStop):
            return self._block_stop(event.index)
        if isinstance(event, MessageDelta):
            self._stop = event.stop_reason or self._stop
            self._usage = event.usage or self._usage
            return []
        if isinstance(event, UsageReport):
            self._usage = event.usage
            return []
        if isinstance(event, MessageStop):
            return self._final()
        return [self._error(event)]

    def _block_start(self, index: int, block: Block) -> list[JsonDict]:
        state = _Open(block=block, byte_offset=self._answer_bytes)
        self._blocks[index] = state
        if isinstance(block, Text | Refusal):
            return self._text(state, block.text)
        if isinstance(block, Thinking):
            state.signature = signature_for(block, for_client=True)
            return (
                [self._chunk([{"text": block.thinking, "thought": True}])] if block.thinking else []
            )
        if isinstance(block, RedactedThinking):
            signature = signature_for(block, for_client=True)
            if signature is None:
                return []
            out = [self._chunk([])] if self._pending is not None else []
            self._pending = signature
            return out
        if isinstance(block, ToolUse):
            return []
        parts = self._writer.parts([block])
        return [self._chunk(parts)] if parts else []

    def _text(self, state: _Open, text: str) -> list[JsonDict]:
        if not text:
            return []
        if state.length <= MAX_CITED_TEXT:
            state.text.append(text)
        state.length += len(text)
        self._answer_bytes += len(text.encode("utf-8"))
        return [self._chunk([{"text": text}])]

    def _block_delta(self, event: BlockDelta) -> list[JsonDict]:
        state = self._blocks.get(event.index)
        if state is None:
            return []
        delta, block = event.delta, state.block
        if isinstance(delta, TextDelta) and isinstance(block, Text | Refusal):
            return self._text(state, delta.text)
        if isinstance(delta, ThinkingDelta) and isinstance(block, Thinking) and delta.thinking:
            return [self._chunk([{"text": delta.thinking, "thought": True}])]
        if isinstance(delta, SignatureDelta) and isinstance(block, Thinking):
            signed = Thinking(thinking="", signature=delta.signature, format=block.format)
            state.signature = signature_for(signed, for_client=True)
        elif isinstance(delta, InputJsonDelta) and isinstance(block, ToolUse):
            state.arguments.append(delta.partial_json)
        elif isinstance(delta, CitationDelta) and isinstance(block, Text):
            state.block = Text(text=block.text, citations=(*block.citations, delta.citation))
        return []

    def _block_stop(self, index: int) -> list[JsonDict]:
        state = self._blocks.pop(index, None)
        if state is None:
            return []
        block = state.block
        if isinstance(block, ToolUse):
            args = parse_arguments("".join(state.arguments)) if state.arguments else block.input
            call = {
                "name": block.name,
                "args": args if isinstance(args, dict) else {},
                "id": block.id,
            }
            return [self._chunk([{"functionCall": call}])]
        if isinstance(block, Thinking) and state.signature:
            part = {"text": "", "thought": True, "thoughtSignature": state.signature}
            return [self._chunk([part], sign=False)]
        if isinstance(block, Text) and block.citations and state.length <= MAX_CITED_TEXT:
            cited = Text(text="".join(state.text), citations=block.citations)
            self._cited.append((state.byte_offset, cited))
        return []

    def _chunk(self, parts: list[JsonDict], *, sign: bool = True) -> JsonDict:
        if self._pending is not None:
            first = parts[0] if parts and sign else None
            if first is not None and "thoughtSignature" not in first and "thought" not in first:
                first["thoughtSignature"] = self._pending
            else:
                parts.insert(0, {"text": "", "thoughtSignature": self._pending})
            self._pending = None
        return {
            "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
            "modelVersion": self._model,
            "responseId": self._id,
        }

    def _final(self) -> list[JsonDict]:
        self._done = True
        out = [chunk for index in list(self._blocks) for chunk in self._block_stop(index)]
        chunk = self._chunk([])
        candidate = chunk["candidates"][0]
        candidate["finishReason"] = stop_to_gemini(self._stop or StopReason.END_TURN)
        grounding = grounding_metadata(self._cited, include_gemini=True)
        if grounding is not None:
            candidate["groundingMetadata"] = grounding
        if self._usage is not None:
            chunk["usageMetadata"] = usage_to_gemini(self._usage)
        return [*out, chunk]

    def _error(self, event: StreamError) -> JsonDict:
        self._done = True
        code, status = ERROR_STATUSES.get(event.type, (500, "INTERNAL"))
        return {"error": {"code": event.status or code, "message": event.message, "status": status}}
