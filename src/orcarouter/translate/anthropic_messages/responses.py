"""Anthropic ``message`` response body ⇄ canonical ``Response``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from itertools import pairwise
from typing import Any, Final

from orcarouter.canonical import Block, Choice, Citation, Response, Text, Usage
from orcarouter.translate.anthropic_messages.blocks import BlockRenderer, block_from_anthropic
from orcarouter.translate.common import JsonDict, Policy, extras_for, split_known, with_extras
from orcarouter.translate.stop_reasons import stop_from_anthropic, stop_to_anthropic
from orcarouter.translate.usage import usage_from_anthropic, usage_to_anthropic

_KNOWN: Final = frozenset(
    {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
)


def response_to_canonical(body: Mapping[str, Any]) -> Response:
    """Parse an Anthropic ``message`` body."""
    leftover = split_known(body, _KNOWN)
    for key, standard in (("type", "message"), ("role", "assistant")):
        if body.get(key) != standard:
            leftover[key] = body.get(key)
    raw_stop = body.get("stop_reason")
    stop = stop_from_anthropic(raw_stop if isinstance(raw_stop, str) else None)
    choice_extra = {}
    if stop_to_anthropic(stop) != raw_stop:
        choice_extra["stop_reason"] = raw_stop
    choice = Choice(
        content=tuple(block_from_anthropic(b) for b in body.get("content") or ()),
        stop_reason=stop,
        stop_sequence=body.get("stop_sequence"),
        extra=extras_for("anthropic", choice_extra),
    )
    usage = body.get("usage")
    return Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        choices=(choice,),
        usage=usage_from_anthropic(usage) if isinstance(usage, Mapping) else None,
        source="anthropic",
        extra=extras_for("anthropic", leftover),
    )


def response_from_canonical(response: Response) -> JsonDict:
    """Render a canonical response as an Anthropic ``message`` body (first choice only).

    Anthropic clients expect one message; request ``n = 1`` from multi-choice upstreams.
    """
    choice = response.choices[0] if response.choices else Choice()
    foreign = response.source != "anthropic"
    renderer = BlockRenderer(policy=Policy(drop_params=True), for_request=False)
    content: list[JsonDict] = []
    for block in response_blocks(choice.content, foreign=foreign):
        rendered = renderer.render(block)
        if rendered is not None:
            content.append(rendered)
    body: JsonDict = {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_to_anthropic(choice.stop_reason),
        "stop_sequence": choice.stop_sequence,
        "usage": usage_to_anthropic(response.usage or Usage()),
    }
    with_extras(body, choice.extra, "anthropic")
    return with_extras(body, response.extra, "anthropic")


def response_blocks(blocks: tuple[Block, ...], *, foreign: bool) -> list[Block]:
    """Blocks as Anthropic shows them: cited ranges split into their own text blocks."""
    out: list[Block] = []
    for block in blocks:
        if not isinstance(block, Text):
            out.append(block)
        elif foreign:
            out.extend(t for t in split_cited_text(block) if t.text)
        else:
            out.append(block)
    return out


def split_cited_text(block: Text) -> list[Text]:
    """Split a text with offset citations (OpenAI annotations) into per-range text blocks.

    Anthropic citations cover a whole text block, so each cited range becomes its own block.
    Overlapping or offset-less citations are attached to the whole block instead.
    """
    ranged = [c for c in block.citations if c.start is not None and c.end is not None]
    if not ranged or len(ranged) != len(block.citations):
        return [block]
    spans = sorted({(c.start or 0, c.end or 0) for c in ranged})
    if any(a[1] > b[0] for a, b in pairwise(spans)):
        return [replace(block, citations=tuple(_whole(c, block.text) for c in ranged))]
    out: list[Text] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            out.append(Text(text=block.text[cursor:start]))
        segment = block.text[start:end]
        cited = tuple(_whole(c, segment) for c in ranged if (c.start, c.end) == (start, end))
        out.append(Text(text=segment, citations=cited))
        cursor = max(cursor, end)
    if cursor < len(block.text):
        out.append(Text(text=block.text[cursor:]))
    return out


def _whole(citation: Citation, text: str) -> Citation:
    cited = citation.cited_text if citation.cited_text is not None else text
    return replace(citation, start=None, end=None, cited_text=cited)
