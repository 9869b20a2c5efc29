"""Content blocks of the provider-neutral conversation.

Every block is a frozen, slotted dataclass. Fields a wire format has but the canonical model
does not interpret travel in ``extra``: a mapping from wire name (``"openai"``,
``"anthropic"``, ``"gemini"``) to the unknown keys that wire carried, so translating back into
the same wire restores them and translating into another wire never leaks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

WireName: TypeAlias = Literal["openai", "anthropic", "gemini"]
Extras: TypeAlias = Mapping[str, Mapping[str, Any]]
ContentShape: TypeAlias = Literal["string", "blocks", "null"]
"""How a wire wrote a content field: a bare string, a list of blocks, or JSON null."""

ANTHROPIC_THINKING_FORMAT: Final = "anthropic-claude-v1"
"""``format`` of reasoning produced by Anthropic (OpenRouter's ``reasoning_details`` naming)."""

GEMINI_THINKING_FORMAT: Final = "google-gemini-v1"
"""``format`` of reasoning produced by Gemini (OpenRouter's ``reasoning_details`` naming)."""


def no_extras() -> Extras:
    """Return an empty extras mapping (default factory)."""
    return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Citation:
    """A source a piece of text relies on.

    ``kind`` is the wire type (``url_citation``, ``web_search_result_location``,
    ``char_location`` …). ``start``/``end`` are character offsets into the text block when the
    wire gives them (OpenAI annotations); Anthropic citations cover their whole block.
    """

    kind: str
    url: str | None = None
    title: str | None = None
    cited_text: str | None = None
    start: int | None = None
    end: int | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Base64Source:
    """Inline bytes, base64-encoded, with their MIME type."""

    media_type: str
    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlSource:
    """Bytes behind a URL (http(s), gs://, a Files API URI)."""

    url: str
    media_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileIdSource:
    """A file uploaded to the vendor earlier (not portable between vendors)."""

    file_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlainTextSource:
    """A text document given inline."""

    text: str
    media_type: str = "text/plain"


MediaSource: TypeAlias = Base64Source | UrlSource | FileIdSource | PlainTextSource


@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    """Plain text, optionally with citations."""

    text: str
    citations: tuple[Citation, ...] = ()
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """An image; ``detail`` is OpenAI's resolution hint."""

    source: MediaSource
    detail: str | None = None
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A document (PDF, plain text, …)."""

    source: MediaSource
    title: str | None = None
    filename: str | None = None
    context: str | None = None
    citations_enabled: bool | None = None
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Audio:
    """Input audio, base64 with its format (``wav``, ``mp3``)."""

    data: str
    format: str
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolUse:
    """A call of a client-side tool.

    ``input`` is the parsed argument object. ``arguments`` keeps the exact JSON text when the
    wire carried text (OpenAI), so re-emitting it is byte-for-byte faithful, including
    truncated or invalid JSON from a ``length`` stop.
    """

    id: str
    name: str
    input: Any
    arguments: str | None = None
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResult:
    """The answer to a ``ToolUse``: nested content blocks and an error flag."""

    tool_use_id: str
    content: tuple[Block, ...] = ()
    content_shape: ContentShape | None = None
    is_error: bool | None = None
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Thinking:
    """Reasoning text; ``signature`` must be returned unmodified to the vendor that signed it.

    ``format`` names who produced it (``anthropic-claude-v1``, ``google-gemini-v1``,
    ``openai-responses-v1`` …): the signature's provenance, and the only vendor it may be sent
    back to. ``None`` means vendor-less reasoning (DeepSeek ``reasoning_content``); a signature
    without a format has no known issuer and goes back to no vendor.
    """

    thinking: str
    signature: str | None = None
    format: str | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedactedThinking:
    """Encrypted reasoning, opaque; returned unchanged to its vendor, named by ``format``."""

    data: str
    format: str | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerToolUse:
    """A call of a tool the vendor runs itself (web search, code execution …)."""

    id: str
    name: str
    input: Any
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerToolResult:
    """The vendor's result of a ``ServerToolUse``; ``kind`` is the wire block type.

    ``content`` is kept as the vendor sent it (e.g. a list of ``web_search_result`` objects
    with their ``encrypted_content``), because it must be replayed unchanged.
    """

    kind: str
    tool_use_id: str
    content: Any
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """The model declined; OpenAI's ``refusal`` text."""

    text: str
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpaqueBlock:
    """A block only one wire understands, carried whole for same-wire round trips."""

    wire: WireName
    data: Mapping[str, Any]


Block: TypeAlias = (
    Text
    | Image
    | Document
    | Audio
    | ToolUse
    | ToolResult
    | Thinking
    | RedactedThinking
    | ServerToolUse
    | ServerToolResult
    | Refusal
    | OpaqueBlock
)
