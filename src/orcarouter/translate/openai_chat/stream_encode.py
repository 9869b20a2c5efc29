"""Canonical stream events → OpenAI ``chat.completion.chunk`` dicts (one event at a time).

Invariants (wire-formats.md §1.9, checked against the SDK's ``ChatCompletionStreamState``):
``tool_calls[].index`` counts tool calls only, from 0; ``id``/``type``/``name`` appear once, in
the first delta of a call; ``finish_reason`` comes once; the usage chunk (``choices: []``) comes
after it. Reasoning goes to ``reasoning_content`` and to ``reasoning_details`` (with the
signature and redacted blocks) so signed thinking survives a client's replay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

import orjson

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
    OpaqueBlock,
    Refusal,
    ServerToolUse,
    SignatureDelta,
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
from orcarouter.translate.common import JsonDict, dump_json, parse_arguments
from orcarouter.translate.openai_chat.ordering import text_span, tool_ref
from orcarouter.translate.openai_chat.parts import (
    DEFAULT_REASONING_FIELDS,
    REASONING_DETAILS,
    REASONING_TEXT_KEYS,
    block_to_detail,
)
from orcarouter.translate.openai_chat.responses import citation_to_annotation
from orcarouter.translate.stop_reasons import stop_to_openai
from orcarouter.translate.usage import usage_to_openai

_TEXT_TAIL: Final = b'},"finish_reason":null}]}\n\n'
_DUMPS: Final = orjson.dumps  # in a C static: compiled code looks ``orjson.dumps`` up per call


@dataclass(slots=True)
class _Block:
    block: Block
    tool_index: int | None = None
    detail_index: int | None = None
    text_start: int = 0
    arguments: list[str] = field(default_factory=list)
    signature: str | None = None
    citations: list[Citation] = field(default_factory=list)
    format_sent: bool = False
    """The ``reasoning_details`` entry's ``format`` went out: SDKs concatenate repeated strings
    of one entry (openai ``accumulate_delta``), so it is sent once, with the first fragment."""


class OpenAIChunkEncoder:
    """Feeds canonical events, returns OpenAI chunk dicts; send ``data: [DONE]`` after stop."""

    def __init__(
        self,
        *,
        include_usage: bool = True,
        created: int | None = None,
        reasoning_fields: tuple[str, ...] = DEFAULT_REASONING_FIELDS,
    ) -> None:
        self._include_usage = include_usage
        self._created = created
        self._fields = reasoning_fields
        self._id = ""
        self._model = ""
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._details = 0
        self._text_length = 0
        self._annotations: list[JsonDict] = []
        self._usage: Usage | None = None
        self._marked = False
        self._unmarked: list[JsonDict] = []
        self._finished = False
        self._stopped = False
        self._text_head: bytes | None = None  # a text chunk's event up to its content

    def feed(self, event: StreamEvent) -> list[JsonDict]:
        """Translate one canonical event into zero or more chunks."""
        if self._stopped:
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
            return []
        if isinstance(event, MessageStop):
            return self._message_stop()
        return self._error(event)

    def text_event(self, index: int, text: str) -> bytes | None:
        """What ``feed(BlockDelta(index=index, delta=TextDelta(text=text)))`` gives, framed as
        its SSE event without building it (b"" for none). None when the event is not the plain
        case of a text block's delta here; then ``feed`` it. A stream's hot path: nearly every
        event of a text answer is this one."""
        state = self._blocks.get(index)
        if self._stopped or state is None or not isinstance(state.block, Text):
            return None
        if not text:
            return b""
        self._text_length += len(text)
        head = self._text_head
        if head is None:
            chunk = self._chunk({})  # fixes ``created`` as any chunk does
            del chunk["choices"]
            head = self._text_head = (
                b"data: " + orjson.dumps(chunk)[:-1] + b',"choices":[{"index":0,"delta":{"content":'
            )
        return head + _DUMPS(text) + _TEXT_TAIL

    def _chunk(self, delta: JsonDict, finish_reason: str | None = None) -> JsonDict:
        created = self._created
        if not created:  # one time for the whole stream, as OpenAI's own chunks carry
            created = self._created = int(time.time())
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def _message_start(self, event: MessageStart) -> list[JsonDict]:
        self._text_head = None
        self._id = event.id or ""
        self._model = event.model or ""
        self._created = event.created or self._created
        self._usage = event.usage or self._usage
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, event: BlockStart) -> list[JsonDict]:
        block = event.block
        state = _Block(block=block, text_start=self._text_length)
        self._blocks[event.index] = state
        if isinstance(block, Text):
            state.citations.extend(block.citations)
            return self._content(block.text)
        if isinstance(block, Refusal):
            return [self._chunk({"refusal": block.text})] if block.text else []
        if isinstance(block, ToolUse):
            state.tool_index, self._tools = self._tools, self._tools + 1
            call = {
                "index": state.tool_index,
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]}), *self._marker(tool_ref(block.id, 0))]
        if isinstance(block, Thinking):
            # Thinking after text or a tool call: its place must be marked (ordering.py).
            chunks = self._start_marking() if self._unmarked else []
            state.detail_index, self._details = self._details, self._details + 1
            state.signature = block.signature or None
            return [*chunks, *self._thinking(state, block.thinking)]
        if isinstance(block, ServerToolUse):
            return []
        if isinstance(block, OpaqueBlock) and block.wire == "openai":
            return []
        return self._detail_chunk(block)

    def _detail_chunk(self, block: Block) -> list[JsonDict]:
        if REASONING_DETAILS not in self._fields or block_to_detail(block, 0) is None:
            return []
        chunks = self._start_marking()
        entry = block_to_detail(block, self._details)
        self._details += 1
        chunks.append(self._chunk({REASONING_DETAILS: [entry]}))
        return chunks

    def _start_marking(self) -> list[JsonDict]:
        """From now on order matters: place the text and tool calls seen so far first."""
        if self._marked or REASONING_DETAILS not in self._fields:
            return []
        self._marked = True
        chunks: list[JsonDict] = []
        for marker in self._unmarked:
            chunks.extend(self._marker(marker))
        self._unmarked.clear()
        return chunks

    def _marker(self, marker: JsonDict) -> list[JsonDict]:
        """Emit an order marker now, or keep it until a non-thinking detail makes it matter."""
        if REASONING_DETAILS not in self._fields:
            return []
        if not self._marked:
            self._unmarked.append(marker)
            return []
        entry = {**marker, "index": self._details}
        self._details += 1
        return [self._chunk({REASONING_DETAILS: [entry]})]

    def _content(self, text: str) -> list[JsonDict]:
        if not text:
            return []
        self._text_length += len(text)
        return [self._chunk({"content": text})]

    def _thinking(self, state: _Block, text: str) -> list[JsonDict]:
        if not text:
            return []
        delta: JsonDict = {key: text for key in REASONING_TEXT_KEYS if key in self._fields}
        if REASONING_DETAILS in self._fields:
            entry: JsonDict = {"type": "reasoning.text", "text": text, "index": state.detail_index}
            self._format(state, entry)
            delta[REASONING_DETAILS] = [entry]
        return [self._chunk(delta)] if delta else []

    def _block_delta(self, event: BlockDelta) -> list[JsonDict]:
        state = self._blocks.get(event.index)
        if state is None:
            return []
        delta, block = event.delta, state.block
        if isinstance(delta, TextDelta) and isinstance(block, Text):
            return self._content(delta.text)
        if isinstance(delta, TextDelta) and isinstance(block, Refusal):
            return [self._chunk({"refusal": delta.text})] if delta.text else []
        if isinstance(delta, ThinkingDelta) and isinstance(block, Thinking):
            return self._thinking(state, delta.thinking)
        if isinstance(delta, SignatureDelta):
            state.signature = delta.signature
        elif isinstance(delta, CitationDelta):
            state.citations.append(delta.citation)
        elif isinstance(delta, InputJsonDelta) and delta.partial_json:
            # Only tool blocks take argument fragments (https://github.com/BerriAI/litellm/issues/17254).
            if isinstance(block, ToolUse) and state.tool_index is not None:
                state.arguments.append(delta.partial_json)
                call = {"index": state.tool_index, "function": {"arguments": delta.partial_json}}
                return [self._chunk({"tool_calls": [call]})]
            if isinstance(block, ServerToolUse):
                state.arguments.append(delta.partial_json)
        return []

    def _block_stop(self, index: int) -> list[JsonDict]:
        state = self._blocks.pop(index, None)
        if state is None:
            return []
        block = state.block
        if isinstance(block, Text):
            for citation in state.citations:
                rendered = citation_to_annotation(citation, state.text_start, self._text_length)
                if rendered is not None:
                    self._annotations.append(rendered)
            return self._marker(text_span(self._text_length - state.text_start, 0))
        if isinstance(block, ToolUse) and not state.arguments and state.tool_index is not None:
            # A call whose input came whole (or empty) still needs valid JSON arguments.
            arguments = block.arguments or dump_json(block.input or {})
            call = {"index": state.tool_index, "function": {"arguments": arguments}}
            return [self._chunk({"tool_calls": [call]})]
        if isinstance(block, ServerToolUse):
            parsed = parse_arguments("".join(state.arguments)) if state.arguments else block.input
            return self._detail_chunk(ServerToolUse(id=block.id, name=block.name, input=parsed))
        if isinstance(block, Thinking) and state.signature and REASONING_DETAILS in self._fields:
            entry: JsonDict = {
                "type": "reasoning.text",
                "signature": state.signature,
                "index": state.detail_index,
            }
            self._format(state, entry)  # who signed it: the signature goes back only there
            return [self._chunk({REASONING_DETAILS: [entry]})]
        return []

    @staticmethod
    def _format(state: _Block, entry: JsonDict) -> None:
        """Put the thinking's ``format`` on its first ``reasoning_details`` fragment."""
        block = state.block
        if not state.format_sent and isinstance(block, Thinking) and block.format is not None:
            entry["format"] = block.format
            state.format_sent = True

    def _message_delta(self, event: MessageDelta) -> list[JsonDict]:
        chunks: list[JsonDict] = []
        for index in list(self._blocks):
            chunks.extend(self._block_stop(index))
        self._usage = event.usage or self._usage
        if self._finished:
            return chunks
        self._finished = True
        if self._annotations:
            chunks.append(self._chunk({"annotations": self._annotations}))
        reason = stop_to_openai(event.stop_reason) or "stop"
        chunks.append(self._chunk({}, reason))
        return chunks

    def _message_stop(self) -> list[JsonDict]:
        chunks = [] if self._finished else self._message_delta(MessageDelta())
        self._stopped = True
        if self._include_usage and self._usage is not None:
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = usage_to_openai(self._usage)
            chunks.append(usage_chunk)
        return chunks

    def _error(self, event: StreamError) -> list[JsonDict]:
        # The SDK raises on any data object with an "error" key (openai _streaming.py).
        self._stopped = True
        return [{"error": {"message": event.message, "type": event.type, "code": None}}]
