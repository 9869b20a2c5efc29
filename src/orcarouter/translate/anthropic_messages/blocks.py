"""Anthropic content blocks and citations ⇄ canonical blocks.

Rules: https://platform.claude.com/docs/en/build-with-claude/extended-thinking (thinking is
returned unmodified, signed), https://github.com/anthropics/anthropic-sdk-python/issues/461
(empty text blocks are rejected). Reasoning another vendor signed is shown to Anthropic clients
with its signature wrapped (translate/signatures.py), so that it is never replayed to Anthropic
and still returns intact to its own vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from orcarouter.canonical import (
    ANTHROPIC_THINKING_FORMAT,
    Audio,
    Base64Source,
    Block,
    Citation,
    Document,
    FileIdSource,
    Image,
    MediaSource,
    OpaqueBlock,
    PlainTextSource,
    RedactedThinking,
    Refusal,
    ServerToolResult,
    ServerToolUse,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    UrlSource,
)
from orcarouter.translate.common import (
    JsonDict,
    Policy,
    extras_for,
    residual,
    sanitize_tool_id,
    with_extras,
)
from orcarouter.translate.signatures import client_signature, unwrap_signature

ANTHROPIC_CITATION_KINDS: Final = frozenset(
    {
        "char_location",
        "page_location",
        "content_block_location",
        "web_search_result_location",
        "search_result_location",
    }
)


def citation_from_anthropic(data: Mapping[str, Any]) -> Citation:
    """An Anthropic citation (its location fields stay as extras)."""
    citation = Citation(
        kind=str(data.get("type", "")),
        url=data.get("url"),
        title=data.get("title"),
        cited_text=data.get("cited_text"),
    )
    rendered = citation_to_anthropic(citation)
    return replace(citation, extra=extras_for("anthropic", residual(data, rendered)))


def citation_to_anthropic(citation: Citation) -> JsonDict:
    """A citation as Anthropic's; a foreign URL citation becomes a web search location."""
    kind = citation.kind if citation.kind in ANTHROPIC_CITATION_KINDS else None
    if kind is None and citation.url is not None:
        kind = "web_search_result_location"
    out: JsonDict = {"type": kind or citation.kind}
    for key in ("cited_text", "url", "title"):
        value = getattr(citation, key)
        if value is not None:
            out[key] = value
    if kind == "web_search_result_location" and "anthropic" not in citation.extra:
        out["encrypted_index"] = ""
    return with_extras(out, citation.extra, "anthropic")


def block_from_anthropic(data: Mapping[str, Any]) -> Block:
    """One Anthropic content block as a canonical block."""
    block = _parse(data)
    if isinstance(block, OpaqueBlock):
        return block
    rendered = BlockRenderer(policy=Policy(drop_params=True), for_request=False).render(block)
    extra = residual(data, rendered or {})
    return replace(block, extra=extras_for("anthropic", extra)) if extra else block


def _parse(data: Mapping[str, Any]) -> Block:
    kind = data.get("type")
    cache = data.get("cache_control")
    if kind == "text" and isinstance(data.get("text"), str):
        citations = tuple(
            citation_from_anthropic(c)
            for c in data.get("citations") or ()
            if isinstance(c, Mapping)
        )
        return Text(text=data["text"], citations=citations, cache_control=cache)
    if kind == "thinking":
        given = data.get("signature")
        signature: str | None = None
        issuer: str | None = ANTHROPIC_THINKING_FORMAT
        if isinstance(given, str):
            signature, issuer = unwrap_signature(given, ANTHROPIC_THINKING_FORMAT)
        return Thinking(thinking=str(data.get("thinking", "")), signature=signature, format=issuer)
    if kind == "redacted_thinking":
        redacted, issuer = unwrap_signature(str(data.get("data", "")), ANTHROPIC_THINKING_FORMAT)
        return RedactedThinking(data=redacted, format=issuer)
    if kind == "tool_use":
        return ToolUse(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            input=data.get("input"),
            cache_control=cache,
        )
    if kind == "tool_result":
        return _tool_result(data)
    if kind == "server_tool_use":
        return ServerToolUse(
            id=str(data.get("id", "")), name=str(data.get("name", "")), input=data.get("input")
        )
    if isinstance(kind, str) and kind.endswith("_tool_result") and "tool_use_id" in data:
        return ServerToolResult(
            kind=kind, tool_use_id=str(data["tool_use_id"]), content=data.get("content")
        )
    return _media(data) or OpaqueBlock(wire="anthropic", data=dict(data))


def _tool_result(data: Mapping[str, Any]) -> Block:
    content = data.get("content")
    if isinstance(content, str):
        blocks: tuple[Block, ...] = (Text(text=content),)
        shape: Any = "string"
    elif isinstance(content, list):
        blocks = tuple(block_from_anthropic(b) for b in content if isinstance(b, Mapping))
        shape = "blocks"
    else:
        blocks, shape = (), None
    return ToolResult(
        tool_use_id=str(data.get("tool_use_id", "")),
        content=blocks,
        content_shape=shape,
        is_error=data.get("is_error"),
        cache_control=data.get("cache_control"),
    )


def _media(data: Mapping[str, Any]) -> Block | None:
    raw_source = data.get("source")
    if not isinstance(raw_source, Mapping):
        return None
    source = _source(raw_source)
    if source is None:
        return None
    cache = data.get("cache_control")
    if data.get("type") == "image" and not isinstance(source, PlainTextSource):
        return Image(source=source, cache_control=cache)
    if data.get("type") != "document":
        return None
    citations = data.get("citations")
    return Document(
        source=source,
        title=data.get("title"),
        context=data.get("context"),
        citations_enabled=citations.get("enabled") if isinstance(citations, Mapping) else None,
        cache_control=cache,
    )


def _source(source: Mapping[str, Any]) -> MediaSource | None:
    kind = source.get("type")
    if kind == "base64":
        return Base64Source(media_type=str(source.get("media_type")), data=str(source.get("data")))
    if kind == "url":
        return UrlSource(url=str(source.get("url")))
    if kind == "file":
        return FileIdSource(file_id=str(source.get("file_id")))
    if kind == "text":
        media_type = str(source.get("media_type", "text/plain"))
        return PlainTextSource(text=str(source.get("data", "")), media_type=media_type)
    return None


def _source_dict(source: MediaSource) -> JsonDict:
    if isinstance(source, Base64Source):
        return {"type": "base64", "media_type": source.media_type, "data": source.data}
    if isinstance(source, UrlSource):
        return {"type": "url", "url": source.url}
    if isinstance(source, FileIdSource):
        return {"type": "file", "file_id": source.file_id}
    return {"type": "text", "media_type": source.media_type, "data": source.text}


def keeps_thinking(block: Thinking | RedactedThinking) -> bool:
    """Whether Anthropic will accept this reasoning block back: Anthropic issued it.

    Reasoning another vendor signed (its ``format``), or whose issuer is unknown (no
    ``format``), is rejected by Anthropic ("Invalid signature"), so it is not replayed
    (wire-formats.md §4.6 B.8; provenance: translate/signatures.py).
    """
    return block.format == ANTHROPIC_THINKING_FORMAT


@dataclass(slots=True)
class BlockRenderer:
    """Renders canonical blocks as Anthropic blocks; ``for_request`` applies input rules."""

    policy: Policy
    for_request: bool
    foreign: bool = False
    """Rendering a request that came from another wire: sanitise ids, drop empty text."""

    def render(self, block: Block, where: str = "content") -> JsonDict | None:
        """One block, or ``None`` when Anthropic cannot take it (recorded in the policy)."""
        out = self._render(block, where)
        if out is None or isinstance(block, OpaqueBlock):
            return out
        cache_control = getattr(block, "cache_control", None)
        if cache_control is not None:
            out["cache_control"] = dict(cache_control)
        return with_extras(out, block.extra, "anthropic")

    def _render(self, block: Block, where: str) -> JsonDict | None:
        if isinstance(block, Text | Refusal):
            return self._text(block)
        if isinstance(block, Image | Document):
            return self._media(block)
        if isinstance(block, ToolUse):
            tool_id = sanitize_tool_id(block.id) if self.foreign else block.id
            tool_input = block.input if isinstance(block.input, Mapping) else {}
            return {"type": "tool_use", "id": tool_id, "name": block.name, "input": tool_input}
        if isinstance(block, ToolResult):
            return self._tool_result(block, where)
        if isinstance(block, Thinking | RedactedThinking):
            return self._thinking(block, where)
        if isinstance(block, ServerToolUse):
            return {
                "type": "server_tool_use",
                "id": block.id,
                "name": block.name,
                "input": block.input,
            }
        if isinstance(block, ServerToolResult):
            return {"type": block.kind, "tool_use_id": block.tool_use_id, "content": block.content}
        if isinstance(block, OpaqueBlock) and block.wire == "anthropic":
            return dict(block.data)
        name = "audio" if isinstance(block, Audio) else type(block).__name__
        self.policy.reject(where, f"{name} content has no Anthropic equivalent")
        return None

    def _text(self, block: Text | Refusal) -> JsonDict:
        out: JsonDict = {"type": "text", "text": block.text}
        if isinstance(block, Text) and block.citations:
            own = [c for c in block.citations if "anthropic" in c.extra or not self.for_request]
            if len(own) != len(block.citations):
                self.policy.drop("citations")
            if own:
                out["citations"] = [citation_to_anthropic(c) for c in own]
        return out

    def _media(self, block: Image | Document) -> JsonDict:
        source = block.source
        media_type = source.media_type if isinstance(source, Base64Source) else None
        if isinstance(block, Image) and (media_type is None or media_type.startswith("image/")):
            return {"type": "image", "source": _source_dict(source)}
        out: JsonDict = {"type": "document", "source": _source_dict(source)}
        if isinstance(block, Document):
            title = block.title if block.title is not None else block.filename
            if title is not None:
                out["title"] = title
            if block.context is not None:
                out["context"] = block.context
            if block.citations_enabled is not None:
                out["citations"] = {"enabled": block.citations_enabled}
        return out

    def _tool_result(self, block: ToolResult, where: str) -> JsonDict:
        tool_id = sanitize_tool_id(block.tool_use_id) if self.foreign else block.tool_use_id
        out: JsonDict = {"type": "tool_result", "tool_use_id": tool_id}
        plain = all(isinstance(b, Text) and not b.extra for b in block.content)
        if block.content_shape == "string" and plain:
            out["content"] = "".join(b.text for b in block.content if isinstance(b, Text))
        elif block.content or block.content_shape is not None:
            rendered = (self.render(b, where) for b in block.content)
            out["content"] = [
                b for b in rendered if b is not None and (not self.foreign or _non_empty(b))
            ]
        if block.is_error is not None:
            out["is_error"] = block.is_error
        return out

    def _thinking(self, block: Thinking | RedactedThinking, where: str) -> JsonDict | None:
        if self.for_request and not keeps_thinking(block):
            # Unsigned or foreign reasoning cannot be replayed to Anthropic (§4.6 B.8).
            self.policy.drop(f"{where}.thinking")
            return None
        if isinstance(block, RedactedThinking):
            data = client_signature(block.data, block.format, ANTHROPIC_THINKING_FORMAT)
            return {"type": "redacted_thinking", "data": data}
        signature = client_signature(block.signature or "", block.format, ANTHROPIC_THINKING_FORMAT)
        return {"type": "thinking", "thinking": block.thinking, "signature": signature}


def _non_empty(block: JsonDict) -> bool:
    return block.get("type") != "text" or bool(block.get("text"))
