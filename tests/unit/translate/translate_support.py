"""Helpers for the translation tests: essence extraction, SSE parsing, SDK accumulation."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from orcarouter.canonical import (
    Block,
    Document,
    Image,
    Message,
    PlainTextSource,
    RedactedThinking,
    Refusal,
    Request,
    Response,
    ServerToolResult,
    ServerToolUse,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from orcarouter.translate.common import sanitize_tool_id
from orcarouter.wire.sse import SSESplitter


def sse_events(raw: str | bytes, *, chunk_size: int | None = None) -> Iterator[tuple[str, str]]:
    """(event name, data) of every SSE event in ``raw``, fed in chunks of ``chunk_size`` bytes."""
    data = raw.encode() if isinstance(raw, str) else raw
    splitter = SSESplitter()
    size = chunk_size or len(data) or 1
    for start in range(0, len(data), size):
        for event in splitter.feed(data[start : start + size]):
            if not event.is_comment:
                yield event.event, event.data
    last = splitter.close()
    if last is not None and not last.is_comment:
        yield last.event, last.data


def json_events(raw: str | bytes, *, chunk_size: int | None = None) -> list[dict[str, Any]]:
    """Decoded JSON ``data:`` payloads, skipping ``[DONE]`` and empty data."""
    out = []
    for _, data in sse_events(raw, chunk_size=chunk_size):
        if data and data.strip() != "[DONE]":
            out.append(json.loads(data))
    return out


def openai_accumulate(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Accumulate OpenAI chunk dicts with the official SDK state machine."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    with warnings.catch_warnings():
        # Vendor content (e.g. Mistral's list-valued thinking) trips pydantic's serializer.
        warnings.simplefilter("ignore")
        for chunk in chunks:
            assert "error" not in chunk, chunk
            state.handle_chunk(ChatCompletionChunk.construct(**chunk))
        return state.current_completion_snapshot.model_dump(warnings=False)


def anthropic_accumulate(events: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Accumulate Anthropic events with the official SDK ``accumulate_event``."""
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for name, data in events:
        assert name == data["type"], (name, data)
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)  # type: ignore[arg-type]
    assert snapshot is not None
    return dict(snapshot.model_dump(exclude_unset=True, warnings=False))


def check_openai_chunk_invariants(chunks: Sequence[dict[str, Any]]) -> None:
    """§1.9: tool-call indexes 0..k-1 contiguous, id/name once, one finish, usage last."""
    seen_ids: dict[int, str] = {}
    finishes = 0
    for position, chunk in enumerate(chunks):
        for choice in chunk.get("choices") or ():
            for call in choice["delta"].get("tool_calls") or ():
                index = call["index"]
                if "id" in call:
                    assert index not in seen_ids, f"id repeated for tool index {index}"
                    assert index == len(seen_ids), f"tool index {index} not contiguous"
                    seen_ids[index] = call["id"]
                else:
                    assert index in seen_ids, f"delta for unstarted tool index {index}"
                    assert "name" not in call.get("function", {})
            if choice.get("finish_reason"):
                finishes += 1
        if not chunk.get("choices") and chunk.get("usage"):
            assert position == len(chunks) - 1, "usage chunk must be last"
            assert finishes == 1
    assert finishes == 1, f"{finishes} finish_reason chunks"


def check_anthropic_event_invariants(events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """§2.8: one message_start first, contiguous indexes, one open block, delta type = block."""
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-1] == "message_stop" and names.count("message_delta") == 1
    open_index: int | None = None
    open_type = ""
    next_index = 0
    matching = {
        "text_delta": ("text",),
        "citations_delta": ("text",),
        "thinking_delta": ("thinking",),
        "signature_delta": ("thinking",),
        "input_json_delta": ("tool_use", "server_tool_use"),
    }
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None, "two blocks open at once"
            assert data["index"] == next_index, "block indexes must be contiguous"
            open_index, open_type = next_index, data["content_block"]["type"]
            next_index += 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
            delta_type = data["delta"]["type"]
            assert open_type in matching.get(delta_type, (open_type,)), (delta_type, open_type)
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "message_delta with a block still open"
            assert "output_tokens" in data["usage"]


def block_essence(block: Block, keep: Any = None) -> Any:
    """What must survive any translation of a block (``keep`` filters nested blocks)."""
    if isinstance(block, Text | Refusal):
        return ("text", block.text)
    if isinstance(block, ToolUse):
        return ("tool_use", sanitize_tool_id(block.id), block.name, block.input)
    if isinstance(block, ToolResult):
        nested = [b for b in block.content if keep is None or keep(b)]
        content = merge_text([block_essence(b, keep) for b in nested])
        return ("tool_result", sanitize_tool_id(block.tool_use_id), tuple(content))
    if isinstance(block, Thinking):
        return ("thinking", block.thinking, block.signature or None)
    if isinstance(block, RedactedThinking):
        return ("redacted", block.data)
    if isinstance(block, ServerToolUse):
        return ("server_tool_use", block.id, block.name, block.input)
    if isinstance(block, ServerToolResult):
        return ("server_tool_result", block.kind, block.tool_use_id, block.content)
    if isinstance(block, Document) and isinstance(block.source, PlainTextSource):
        return ("text", block.source.text)
    if isinstance(block, Image | Document):
        return (type(block).__name__, block.source)
    return (type(block).__name__,)


def merge_text(essence: list[Any]) -> list[Any]:
    """Join adjacent text items (wires split and join text blocks differently)."""
    out: list[Any] = []
    for item in essence:
        if item[0] == "text" and out and out[-1][0] == "text":
            out[-1] = ("text", out[-1][1] + item[1])
        elif not (item[0] == "text" and item[1] == ""):
            out.append(item)
    return out


def conversation_essence(messages: Sequence[Message], keep: Any = None) -> list[Any]:
    """Role and block essence per turn; tool turns count as user turns, system as system."""
    turns: list[tuple[str, list[Any]]] = []
    for message in messages:
        role = {"tool": "user", "developer": "system"}.get(message.role, message.role)
        items = [block_essence(b, keep) for b in message.content if keep is None or keep(b)]
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(items)
        else:
            turns.append((role, items))
    return [(role, _tool_results_first(merge_text(items))) for role, items in turns if items]


def _tool_results_first(items: list[Any]) -> list[Any]:
    results = [i for i in items if i[0] == "tool_result"]
    return [*results, *[i for i in items if i[0] != "tool_result"]]


def response_essence(response: Response) -> dict[str, Any]:
    """Text, tool calls, reasoning, stop reason and usage of the first choice."""
    choice = response.choices[0]
    usage = response.usage
    return {
        "content": merge_text([block_essence(b) for b in choice.content]),
        "stop": choice.stop_reason,
        "usage": None
        if usage is None
        else (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens or 0,
            usage.cache_write_tokens or 0,
        ),
    }


def request_essence(request: Request, keep: Any = None) -> dict[str, Any]:
    """Messages plus function tool names and the tool choice mode."""
    return {
        "messages": conversation_essence(request.messages, keep),
        "tools": [getattr(t, "name", None) for t in request.tools if hasattr(t, "parameters")],
        "tool_choice": request.tool_choice.mode if request.tool_choice else None,
    }
