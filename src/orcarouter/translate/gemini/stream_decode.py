"""Gemini ``streamGenerateContent?alt=sse`` chunks → canonical stream events.

Each chunk is a ``GenerateContentResponse`` fragment with new parts only; function calls arrive
whole; ``usageMetadata`` is cumulative (take the last); there is no ``[DONE]``, so call
``finish()`` at end of stream (wire-formats.md §3.4). Function-call ids count across chunks,
not from 0 in each (https://github.com/BerriAI/litellm/pull/16194); ``finishReason`` is only
read at the end, so a trailing ``STOP`` chunk after a function call still means ``tool_use``
and no intermediate chunk finishes early (https://github.com/BerriAI/litellm/issues/21041,
https://github.com/BerriAI/litellm/pull/31634).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    CitationDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
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
)
from orcarouter.translate.common import TranslationError
from orcarouter.translate.gemini.fields import ERROR_TYPES, GEMINI_THINKING_FORMAT, get, mapping
from orcarouter.translate.gemini.grounding import citation_spans
from orcarouter.translate.gemini.parts import CallIds, part_to_blocks
from orcarouter.translate.gemini.responses import call_ids_for
from orcarouter.translate.stop_reasons import stop_from_gemini, stop_from_gemini_prompt
from orcarouter.translate.usage import usage_from_gemini

MAX_CITED_TEXT: Final = 1 << 20
"""Answer text kept to turn grounding byte offsets into characters; beyond it, no citations."""


def _signature_only(part: Any) -> bool:
    return (
        isinstance(part, Mapping)
        and get(part, "text") == ""
        and len(part) == 2
        and bool(get(part, "thoughtSignature"))
    )


class GeminiChunkDecoder:
    """Feeds decoded Gemini stream chunks, returns canonical events; ``finish()`` at EOF."""

    def __init__(self) -> None:
        self._events: list[StreamEvent] = []
        self._started = False
        self._stopped = False
        self._ids: CallIds = CallIds(prefix="call_")
        self._next_index = 0
        self._current: tuple[str, int] | None = None
        self._saw_call = False
        self._finish_reason: str | None = None
        self._block_reason: Any = None
        self._usage: Mapping[str, Any] | None = None
        self._answer: list[str] = []
        self._answer_length = 0
        self._block_start = 0
        self._grounding: Mapping[str, Any] | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """Translate one decoded ``data:`` JSON object."""
        self._events = []
        if self._stopped:
            return self._events
        error = chunk.get("error")
        if isinstance(error, Mapping):
            self._stopped = True
            return [_stream_error(error)]
        if not self._started:
            self._start(chunk)
        usage = get(chunk, "usageMetadata")
        if isinstance(usage, Mapping):
            self._usage = usage
        block_reason = get(mapping(get(chunk, "promptFeedback")), "blockReason")
        if block_reason is not None:
            self._block_reason = block_reason
        candidates = chunk.get("candidates")
        for candidate in candidates if isinstance(candidates, list) else ():
            if isinstance(candidate, Mapping):
                self._candidate(candidate)
        return self._events

    def finish(self) -> list[StreamEvent]:
        """End of stream: close what is open, report the stop reason and the last usage."""
        self._events = []
        if not self._started or self._stopped:
            return self._events
        self._stopped = True
        self._cite()
        self._close()
        reason: StopReason | None = stop_from_gemini(
            self._finish_reason, saw_function_call=self._saw_call
        )
        if self._block_reason is not None and reason is None:
            reason = stop_from_gemini_prompt(self._block_reason)
        usage = usage_from_gemini(self._usage) if self._usage is not None else None
        self._events += [MessageDelta(stop_reason=reason, usage=usage), MessageStop()]
        return self._events

    def _start(self, chunk: Mapping[str, Any]) -> None:
        self._started = True
        response_id, model = get(chunk, "responseId"), get(chunk, "modelVersion")
        self._ids = call_ids_for(response_id)
        usage = get(chunk, "usageMetadata")
        self._events.append(
            MessageStart(
                id=response_id if isinstance(response_id, str) else None,
                model=model if isinstance(model, str) else None,
                usage=_input_only(usage_from_gemini(usage)) if isinstance(usage, Mapping) else None,
            )
        )

    def _candidate(self, candidate: Mapping[str, Any]) -> None:
        index = candidate.get("index", 0)
        if index not in (0, None):
            raise TranslationError(
                param="candidateCount", message="only one candidate can be streamed"
            )
        finish = get(candidate, "finishReason")
        grounding = get(candidate, "groundingMetadata")
        if isinstance(grounding, Mapping) and get(grounding, "groundingSupports"):
            self._grounding = grounding
        parts = mapping(candidate.get("content")).get("parts")
        parts = parts if isinstance(parts, list) else []
        # A trailing signature-only part closes the text; cite the text before it.
        tail = parts[-1:] if parts and _signature_only(parts[-1]) else []
        for part in parts[: len(parts) - len(tail)]:
            if isinstance(part, Mapping):
                self._part(part)
        if isinstance(finish, str):
            self._finish_reason = finish
            self._cite()
        for part in tail:
            self._part(part)

    def _part(self, part: Mapping[str, Any]) -> None:
        text = get(part, "text")
        signature = get(part, "thoughtSignature")
        if isinstance(text, str) and get(part, "thought") is True:
            index = self._ensure("thinking", Thinking(thinking="", format=GEMINI_THINKING_FORMAT))
            if text:
                self._events.append(BlockDelta(index=index, delta=ThinkingDelta(thinking=text)))
            if isinstance(signature, str):
                self._events.append(
                    BlockDelta(index=index, delta=SignatureDelta(signature=signature))
                )
                self._close()
            return
        if isinstance(text, str) and len(part) == 1:
            self._text(text)
            return
        for block in part_to_blocks(part, self._ids):
            if isinstance(block, Text) and not block.extra:
                self._text(block.text)
            else:
                self._whole(block)

    def _text(self, text: str) -> None:
        if not text:
            return
        index = self._ensure("text", Text(text=""))
        self._events.append(BlockDelta(index=index, delta=TextDelta(text=text)))
        if self._answer_length <= MAX_CITED_TEXT:
            self._answer.append(text)
        self._answer_length += len(text)

    def _whole(self, block: Block) -> None:
        """A block that arrives complete (function call, signature, media, opaque part)."""
        self._close()
        self._saw_call = self._saw_call or isinstance(block, ToolUse)
        index = self._new_index()
        self._events += [BlockStart(index=index, block=block), BlockStop(index=index)]
        if isinstance(block, Text) and block.text:
            self._answer.append(block.text)
            self._answer_length += len(block.text)

    def _cite(self) -> None:
        grounding, self._grounding = self._grounding, None
        if grounding is None or self._current is None or self._current[0] != "text":
            return
        if self._answer_length > MAX_CITED_TEXT:
            return
        for citation in citation_spans(grounding, "".join(self._answer)):
            start, end = citation.start or 0, citation.end or 0
            if start < self._block_start:
                continue  # cites an earlier, already closed text block
            relative = replace(
                citation, start=start - self._block_start, end=end - self._block_start
            )
            self._events.append(
                BlockDelta(index=self._current[1], delta=CitationDelta(citation=relative))
            )

    def _ensure(self, kind: str, initial: Block) -> int:
        if self._current is not None and self._current[0] == kind:
            return self._current[1]
        self._close()
        index = self._new_index()
        if kind == "text":
            self._block_start = self._answer_length
        self._events.append(BlockStart(index=index, block=initial))
        self._current = (kind, index)
        return index

    def _new_index(self) -> int:
        index, self._next_index = self._next_index, self._next_index + 1
        return index

    def _close(self) -> None:
        if self._current is not None:
            self._events.append(BlockStop(index=self._current[1]))
            self._current = None


def _input_only(usage: Usage) -> Usage:
    """Usage for ``message_start``: what is known up front (prompt and cache)."""
    return replace(usage, output_tokens=0, reasoning_tokens=None, extra={})


def _stream_error(error: Mapping[str, Any]) -> StreamError:
    status = error.get("status")
    code = error.get("code")
    return StreamError(
        type=ERROR_TYPES.get(str(status), "api_error"),
        message=str(error.get("message", "")),
        status=code if isinstance(code, int) else None,
    )
