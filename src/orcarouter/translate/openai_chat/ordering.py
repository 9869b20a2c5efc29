"""Keeping block order through an OpenAI assistant message.

An OpenAI message has one ``content`` string, a ``tool_calls`` list and (non-standard)
``reasoning_details``, so the interleaving of Anthropic blocks (text, server tool use, its
result, more text; https://github.com/BerriAI/litellm/issues/23047) would be lost. When a
message holds blocks other than thinking in ``reasoning_details``, marker entries record where
each text run (by length) and each tool call (by id) sat, and parsing restores the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import Block, Text, Thinking, ToolUse
from orcarouter.translate.common import JsonDict
from orcarouter.translate.openai_chat.parts import block_to_detail, is_reasoning_like

TEXT_SPAN: Final = "orcarouter.text_span"
TOOL_REF: Final = "orcarouter.tool_call"
MARKERS: Final = frozenset({TEXT_SPAN, TOOL_REF})


def needs_markers(blocks: Sequence[Block]) -> bool:
    """Whether the order of text, tool calls and reasoning would be lost without markers.

    Without markers a parser puts reasoning first; that is right unless a block other than
    thinking rides in ``reasoning_details`` or thinking follows text or a tool call.
    """
    seen_answer = False
    for block in blocks:
        if isinstance(block, Thinking) and seen_answer:
            return True
        if is_reasoning_like(block) and not isinstance(block, Thinking):
            return True
        seen_answer = seen_answer or isinstance(block, Text | ToolUse)
    return False


def text_span(length: int, index: int) -> JsonDict:
    """Marker: the next ``length`` characters of ``content`` sit here."""
    return {"type": TEXT_SPAN, "length": length, "index": index}


def tool_ref(tool_id: str, index: int) -> JsonDict:
    """Marker: the tool call ``tool_id`` sits here."""
    return {"type": TOOL_REF, "id": tool_id, "index": index}


def detail_entries(blocks: Sequence[Block]) -> list[JsonDict]:
    """The ``reasoning_details`` list for a message's blocks, with markers when needed."""
    marked = needs_markers(blocks)
    out: list[JsonDict] = []
    for block in blocks:
        if is_reasoning_like(block):
            entry = block_to_detail(block, len(out))
            if entry is not None:
                out.append(entry)
        elif marked and isinstance(block, Text):
            out.append(text_span(len(block.text), len(out)))
        elif marked and isinstance(block, ToolUse):
            out.append(tool_ref(block.id, len(out)))
    return out


def is_marker(entry: Mapping[str, Any]) -> bool:
    """Whether a ``reasoning_details`` entry is an order marker rather than reasoning."""
    return entry.get("type") in MARKERS


def restore_order(blocks: list[Block], details: Any) -> list[Block]:
    """Rebuild the original block order from markers; unchanged if there are none or they lie.

    ``blocks`` is the parsed message in default order: reasoning blocks (markers skipped),
    at most one ``Text`` with message-wide citation offsets, then the rest (refusal, tools).
    """
    entries = [e for e in details if isinstance(e, Mapping)] if isinstance(details, list) else []
    if not any(is_marker(e) for e in entries):
        return blocks
    reasoning = [b for b in blocks if is_reasoning_like(b)]
    texts = [b for b in blocks if isinstance(b, Text)]
    tools = {b.id: b for b in blocks if isinstance(b, ToolUse)}
    if len(texts) > 1 and all(not t.citations and not t.extra for t in texts):
        texts = [Text(text="".join(t.text for t in texts))]
    text = texts[0] if len(texts) == 1 else Text(text="")
    spans = [e.get("length") for e in entries if e.get("type") == TEXT_SPAN]
    refs = [e.get("id") for e in entries if e.get("type") == TOOL_REF]
    others = [e for e in entries if not is_marker(e)]
    valid = (
        len(texts) <= 1
        and all(isinstance(n, int) and n >= 0 for n in spans)
        and sum(n for n in spans if isinstance(n, int)) == len(text.text)
        and all(r in tools for r in refs)
        and len(others) == len(reasoning)
    )
    if not valid:
        return blocks
    return _rebuild(entries, iter(reasoning), text, tools, blocks)


def _rebuild(
    entries: list[Mapping[str, Any]],
    reasoning: Any,
    text: Text,
    tools: dict[str, ToolUse],
    blocks: list[Block],
) -> list[Block]:
    out: list[Block] = []
    position = 0
    placed: set[str] = set()
    for entry in entries:
        if entry.get("type") == TEXT_SPAN:
            length = int(entry["length"])
            out.append(_slice(text, position, position + length))
            position += length
        elif entry.get("type") == TOOL_REF:
            out.append(tools[str(entry["id"])])
            placed.add(str(entry["id"]))
        else:
            out.append(next(reasoning))
    rest = [
        b
        for b in blocks
        if not is_reasoning_like(b)
        and not isinstance(b, Text)
        and not (isinstance(b, ToolUse) and b.id in placed)
    ]
    return [*out, *rest]


def _slice(text: Text, start: int, end: int) -> Text:
    citations = tuple(
        replace(c, start=(c.start or 0) - start, end=(c.end or 0) - start)
        for c in text.citations
        if c.start is not None and c.end is not None and start <= c.start and c.end <= end
    )
    return Text(text=text.text[start:end], citations=citations)
