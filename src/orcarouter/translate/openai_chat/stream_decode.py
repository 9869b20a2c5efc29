"""OpenAI ``chat.completion.chunk`` dicts → canonical stream events (one chunk at a time).

Normalises what OpenAI-compatible servers get wrong: Ollama's whole tool calls that reuse
``index: 0`` with fresh ids and end with ``stop``
(https://github.com/BerriAI/litellm/issues/35663), dict ``arguments``, reasoning under
``reasoning_content``/``reasoning``/``reasoning_details``
(https://github.com/vllm-project/vllm/issues/27755).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from orcarouter.canonical import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    Citation,
    CitationDelta,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    Refusal,
    SignatureDelta,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolUse,
    UsageReport,
)
from orcarouter.translate.common import TranslationError, dump_json
from orcarouter.translate.openai_chat.ordering import is_marker
from orcarouter.translate.openai_chat.parts import (
    REASONING_DETAILS,
    REASONING_TEXT_KEYS,
    detail_to_block,
    mistral_thinking_text,
)
from orcarouter.translate.stop_reasons import stop_from_openai
from orcarouter.translate.usage import usage_from_openai

_START_KEYS: Final = ("id", "object", "created", "model", "choices", "usage")
# What ``feed`` reads in a delta besides ``content`` (``plain_text`` wants them all empty).
_ACTIVE_DELTA_KEYS: Final = (
    "refusal",
    "annotations",
    "tool_calls",
    REASONING_DETAILS,
    *REASONING_TEXT_KEYS,
)


@dataclass(slots=True)
class _ToolCall:
    index: int
    id: str


class OpenAIChunkDecoder:
    """Feeds OpenAI stream chunks, returns canonical events; call ``finish()`` at ``[DONE]``."""

    def __init__(self) -> None:
        self._events: list[StreamEvent] = []
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open: list[int] = []
        self._current: tuple[str, int] | None = None
        self._tools: dict[int, _ToolCall] = {}
        self._details: dict[int, int] = {}
        self._text_offset = 0
        self._block_offset = 0
        self._usage: Mapping[str, Any] | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """Translate one decoded ``data:`` JSON object."""
        self._events = []
        error = chunk.get("error")
        if isinstance(error, Mapping):
            self._events.append(_stream_error(error))
            return self._events
        if not self._started:
            self._start(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
        finished_before = self._finished
        for choice in chunk.get("choices") or []:
            self._choice(choice)
        if finished_before and isinstance(usage, Mapping):
            # Usage after finish_reason: the include_usage chunk (or a vendor's late totals).
            self._events.append(UsageReport(usage=usage_from_openai(usage)))
        return self._events

    def plain_text(self, chunk: dict[str, Any]) -> tuple[int, str] | None:
        """What ``feed(chunk)`` does when the chunk is only more text for the open text block
        (nearly every chunk of a text answer): the state moves on as it would, and the block
        index and text come back instead of ``[BlockDelta(index, TextDelta(text))]``. None for
        any other chunk, which is then to be fed. Keys ``feed`` ignores may hold anything; the
        delta keys it reads besides ``content`` must be empty (``"refusal": null`` and the like,
        which several vendors send on every chunk). ``chunk`` is decoded JSON, so its objects
        are checked as ``dict`` (several times faster than asking ``Mapping``)."""
        current = self._current
        if current is None or current[0] != "text" or self._finished:
            return None
        if isinstance(chunk.get("error"), dict) or isinstance(chunk.get("usage"), dict):
            return None
        choices = chunk.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            return None
        choice = choices[0]
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            return None
        if choice.get("finish_reason"):
            return None
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        if len(delta) > 1 and any(delta.get(key) for key in _ACTIVE_DELTA_KEYS):
            return None  # (a delta of one key holds none of them: ``content`` is the one)
        text = delta.get("content")
        if not isinstance(text, str) or not text:
            return None
        return self.more_text(text)

    def more_text(self, text: str) -> tuple[int, str] | None:
        """``plain_text`` for a chunk already known to hold only ``text`` (not empty) as its
        one choice's delta: the block index and the text while a text block is open (the
        state moved on), else None and nothing changed."""
        current = self._current
        if current is None or current[0] != "text" or self._finished:
            return None
        self._text_offset += len(text)
        return current[1], text

    def finish(self) -> list[StreamEvent]:
        """End of stream (``[DONE]`` or EOF): close what is open and stop."""
        self._events = []
        if not self._started:
            return self._events
        if not self._finished:
            self._close_all()
            self._events.append(MessageDelta(usage=self._canonical_usage()))
            self._finished = True
        self._events.append(MessageStop())
        return self._events

    def _start(self, chunk: Mapping[str, Any]) -> None:
        self._started = True
        extra = {k: v for k, v in chunk.items() if k not in _START_KEYS}
        created = chunk.get("created")
        self._events.append(
            MessageStart(
                id=chunk.get("id"),
                model=chunk.get("model"),
                created=created if isinstance(created, int) else None,
                extra={"openai": extra} if extra else {},
            )
        )

    def _choice(self, choice: Mapping[str, Any]) -> None:
        if choice.get("index", 0) != 0:
            raise TranslationError(param="n", message="only one choice can be streamed")
        delta = choice.get("delta")
        if isinstance(delta, Mapping) and not self._finished:
            self._reasoning(delta)
            content = delta.get("content")
            if isinstance(content, list):
                self._content_parts(content)
            else:
                self._text(content, "text")
            self._text(delta.get("refusal"), "refusal")
            self._annotations(delta.get("annotations"))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, Mapping):
                    self._tool_call(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish and not self._finished:
            self._close_all()
            reason = stop_from_openai(finish, saw_tool_calls=bool(self._tools))
            self._events.append(MessageDelta(stop_reason=reason, usage=self._canonical_usage()))
            self._finished = True

    def _canonical_usage(self) -> Any:
        return usage_from_openai(self._usage) if self._usage is not None else None

    def _reasoning(self, delta: Mapping[str, Any]) -> None:
        details = delta.get(REASONING_DETAILS)
        if isinstance(details, list) and details:
            for entry in details:
                if isinstance(entry, Mapping) and not is_marker(entry):
                    self._detail(entry)
            return
        for key in REASONING_TEXT_KEYS:
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._thinking(text)
                return

    def _detail(self, entry: Mapping[str, Any]) -> None:
        position = entry.get("index", 0)
        block = detail_to_block(entry)
        index = self._details.get(position) if isinstance(position, int) else None
        if index is None or index not in self._open or not isinstance(block, Thinking):
            if not isinstance(block, Thinking):
                self._complete_block(block)
                return
            index = self._ensure_current("thinking", Thinking(thinking="", format=block.format))
            if isinstance(position, int):
                self._details[position] = index
        if block.thinking:
            self._events.append(
                BlockDelta(index=index, delta=ThinkingDelta(thinking=block.thinking))
            )
        if block.signature:
            self._events.append(
                BlockDelta(index=index, delta=SignatureDelta(signature=block.signature))
            )

    def _complete_block(self, block: Block) -> None:
        self._close_current()
        index = self._new_index()
        self._events.extend((BlockStart(index=index, block=block), BlockStop(index=index)))

    def _text(self, text: Any, kind: str) -> None:
        if not isinstance(text, str) or not text:
            return
        if kind == "text":
            if self._current is None or self._current[0] != "text":
                self._block_offset = self._text_offset
            self._text_offset += len(text)
        initial: Block = Text(text="") if kind == "text" else Refusal(text="")
        index = self._ensure_current(kind, initial)
        self._events.append(BlockDelta(index=index, delta=TextDelta(text=text)))

    def _content_parts(self, parts: list[Any]) -> None:
        """Mistral's structured deltas: text parts are text, ``thinking`` parts reasoning."""
        for part in parts:
            if not isinstance(part, Mapping):
                continue
            thinking = mistral_thinking_text(part)
            if thinking is not None:
                self._thinking(thinking)
            elif part.get("type") == "text":
                self._text(part.get("text"), "text")

    def _thinking(self, text: str) -> None:
        if text:
            index = self._ensure_current("thinking", Thinking(thinking=""))
            self._events.append(BlockDelta(index=index, delta=ThinkingDelta(thinking=text)))

    def _annotations(self, annotations: Any) -> None:
        if not isinstance(annotations, list) or self._current is None:
            return
        kind, index = self._current
        if kind != "text":
            return
        for item in annotations:
            spec = item.get("url_citation") if isinstance(item, Mapping) else None
            if not isinstance(spec, Mapping):
                continue
            citation = Citation(
                kind="url_citation",
                url=spec.get("url"),
                title=spec.get("title"),
                start=_relative(spec.get("start_index"), self._block_offset),
                end=_relative(spec.get("end_index"), self._block_offset),
            )
            self._events.append(BlockDelta(index=index, delta=CitationDelta(citation=citation)))

    def _tool_call(self, call: Mapping[str, Any]) -> None:
        position = call.get("index")
        position = position if isinstance(position, int) else len(self._tools)
        call_id = call.get("id")
        raw_function = call.get("function")
        function: Mapping[str, Any] = raw_function if isinstance(raw_function, Mapping) else {}
        known = self._tools.get(position)
        if known is None or (isinstance(call_id, str) and call_id and call_id != known.id):
            self._close_current()
            if known is not None and known.index in self._open:
                self._stop(known.index)
            index = self._new_index()
            tool_id = call_id if isinstance(call_id, str) and call_id else f"call_{index}"
            known = _ToolCall(index=index, id=tool_id)
            self._tools[position] = known
            name = str(function.get("name") or "")
            block = ToolUse(id=tool_id, name=name, input={})
            self._events.append(BlockStart(index=index, block=block))
            self._open.append(index)
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            arguments = dump_json(arguments)
        if isinstance(arguments, str) and arguments and known.index in self._open:
            delta = InputJsonDelta(partial_json=arguments)
            self._events.append(BlockDelta(index=known.index, delta=delta))

    def _ensure_current(self, kind: str, initial: Block) -> int:
        if self._current is not None and self._current[0] == kind:
            return self._current[1]
        self._close_current()
        index = self._new_index()
        self._events.append(BlockStart(index=index, block=initial))
        self._open.append(index)
        self._current = (kind, index)
        return index

    def _new_index(self) -> int:
        index, self._next_index = self._next_index, self._next_index + 1
        return index

    def _close_current(self) -> None:
        if self._current is not None:
            self._stop(self._current[1])
            self._current = None

    def _stop(self, index: int) -> None:
        if index in self._open:
            self._open.remove(index)
            self._events.append(BlockStop(index=index))

    def _close_all(self) -> None:
        self._current = None
        for index in list(self._open):
            self._stop(index)


def _relative(value: Any, offset: int) -> int | None:
    return value - offset if isinstance(value, int) else None


def _stream_error(error: Mapping[str, Any]) -> StreamError:
    kind = error.get("type") or error.get("code") or "api_error"
    return StreamError(type=str(kind), message=str(error.get("message", "")))
