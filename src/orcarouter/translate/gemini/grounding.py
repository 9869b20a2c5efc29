"""Gemini ``groundingMetadata`` (Google Search, file search) ⇄ canonical citations.

``groundingSupports[].segment`` indices are UTF-8 byte offsets into the answer text, OpenAI
``url_citation`` indices are characters: convert (LiteLLM copies them raw, wire-formats.md
§4.8). Field reference: https://ai.google.dev/api/generate-content#GroundingMetadata
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import Block, Citation, Text
from orcarouter.translate.common import JsonDict, optional_int
from orcarouter.translate.gemini.fields import get, mapping

GROUNDING: Final = "gemini_grounding"
"""``Citation.kind`` of citations parsed from Gemini grounding."""
_SOURCES: Final = ("web", "retrievedContext", "maps")


def citation_spans(metadata: Mapping[str, Any], text: str) -> list[Citation]:
    """Citations with character offsets into ``text``, the candidate's whole answer text."""
    chunks = get(metadata, "groundingChunks")
    supports = get(metadata, "groundingSupports")
    if not isinstance(chunks, list) or not isinstance(supports, list):
        return []
    encoded = text.encode("utf-8")
    out: list[Citation] = []
    for support in supports:
        segment = mapping(get(mapping(support), "segment"))
        start, end = _char_span(segment, encoded, text)
        indices = get(mapping(support), "groundingChunkIndices")
        for index in indices if isinstance(indices, list) else ():
            chunk = chunks[index] if isinstance(index, int) and 0 <= index < len(chunks) else {}
            source = next(
                (mapping(get(mapping(chunk), s)) for s in _SOURCES if s in mapping(chunk)), {}
            )
            uri = source.get("uri")
            if isinstance(uri, str):
                title = source.get("title")
                out.append(
                    Citation(
                        kind=GROUNDING,
                        url=uri,
                        title=title if isinstance(title, str) else None,
                        cited_text=segment.get("text")
                        if isinstance(segment.get("text"), str)
                        else None,
                        start=start,
                        end=end,
                    )
                )
    return out


def _char_span(segment: Mapping[str, Any], encoded: bytes, text: str) -> tuple[int, int]:
    start_byte = optional_int(get(segment, "startIndex")) or 0
    end_byte = optional_int(get(segment, "endIndex")) or 0
    start = len(encoded[:start_byte].decode("utf-8", errors="ignore"))
    end = len(encoded[:end_byte].decode("utf-8", errors="ignore"))
    cited = segment.get("text")
    if isinstance(cited, str) and cited and text[start:end] != cited:
        found = text.find(cited)
        if found >= 0:
            return found, found + len(cited)
    return start, end


def attach_citations(blocks: Sequence[Block], metadata: Mapping[str, Any]) -> list[Block]:
    """Put grounding citations on the text blocks they fall in (offsets made block-relative)."""
    spans: list[tuple[int, int, int]] = []
    offset = 0
    for position, block in enumerate(blocks):
        if isinstance(block, Text):
            spans.append((position, offset, offset + len(block.text)))
            offset += len(block.text)
    if not spans:
        return list(blocks)
    full = "".join(b.text for b in blocks if isinstance(b, Text))
    found: dict[int, list[Citation]] = {}
    for citation in citation_spans(metadata, full):
        start = citation.start or 0
        position, begin, stop = next(
            (s for s in spans if s[1] <= start < s[2] or start == s[2] == offset), spans[-1]
        )
        relative = replace(citation, start=start - begin, end=min(citation.end or 0, stop) - begin)
        found.setdefault(position, []).append(relative)
    out = list(blocks)
    for position, citations in found.items():
        text = out[position]
        assert isinstance(text, Text)
        out[position] = replace(text, citations=(*text.citations, *citations))
    return out


def text_offsets(blocks: Sequence[Block]) -> list[tuple[int, Text]]:
    """Each text block with the UTF-8 byte offset where it starts in the answer text."""
    out: list[tuple[int, Text]] = []
    offset = 0
    for block in blocks:
        if isinstance(block, Text):
            out.append((offset, block))
            offset += len(block.text.encode("utf-8"))
    return out


def grounding_metadata(
    texts: Sequence[tuple[int, Text]], *, include_gemini: bool = False
) -> JsonDict | None:
    """``groundingMetadata`` for the citations on ``texts`` (byte offset, block).

    Citations parsed from Gemini are skipped unless ``include_gemini``: a non-stream response
    keeps its original ``groundingMetadata`` whole.
    """
    chunks: list[JsonDict] = []
    supports: list[JsonDict] = []
    seen: dict[tuple[str, str | None], int] = {}
    for byte_offset, block in texts:
        for citation in block.citations:
            if citation.url is None or (citation.kind == GROUNDING and not include_gemini):
                continue
            key = (citation.url, citation.title)
            if key not in seen:
                seen[key] = len(chunks)
                web = {"uri": citation.url} | ({"title": citation.title} if citation.title else {})
                chunks.append({"web": web})
            supports.append(
                {
                    "segment": _segment(block.text, citation, byte_offset),
                    "groundingChunkIndices": [seen[key]],
                }
            )
    if not chunks:
        return None
    return {"groundingChunks": chunks, "groundingSupports": supports}


def _segment(text: str, citation: Citation, byte_offset: int) -> JsonDict:
    start = citation.start if citation.start is not None else 0
    end = citation.end if citation.end is not None else len(text)
    return {
        "startIndex": byte_offset + len(text[:start].encode("utf-8")),
        "endIndex": byte_offset + len(text[:end].encode("utf-8")),
        "text": text[start:end],
    }
