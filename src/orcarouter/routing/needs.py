"""What one request needs from a model, read from the decoded body of either dialect.

Only types and a few fields are looked at, never the text itself, so this costs a walk over the
message and content-block lists. The body is decoded JSON, so its objects are plain ``dict``s
and are checked as such (an ABC check costs several times more, on every message of every
request). The prompt's size is estimated from the body's size: about four bytes of JSON per
token, with inline images taken out of the byte count and counted at a fixed allowance each (a
base64 image says nothing about its token cost by its length).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

BYTES_PER_TOKEN: Final = 4
TOKENS_PER_IMAGE: Final = 1_600  # about what a full-size image costs on the large vendors
DEFAULT_OUTPUT_TOKENS: Final = 1_000  # expected output when the request sets no max_tokens

_IMAGE_BLOCKS: Final = frozenset({"image_url", "image", "input_image"})
_DOCUMENT_BLOCKS: Final = frozenset({"document", "file", "input_file"})


@dataclass(frozen=True, slots=True)
class RequestNeeds:
    """The capabilities and sizes a candidate must meet to serve this request."""

    prompt_tokens: int
    max_tokens: int | None = None
    tools: bool = False
    images: bool = False
    documents: bool = False
    structured_output: bool = False
    reasoning: bool = False

    @property
    def expected_output_tokens(self) -> int:
        """The output the cheapest strategy prices: ``max_tokens``, else a default."""
        return self.max_tokens if self.max_tokens is not None else DEFAULT_OUTPUT_TOKENS


def _max_tokens(payload: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _wants_reasoning(payload: Mapping[str, Any]) -> bool:
    effort = payload.get("reasoning_effort")
    if isinstance(effort, str) and effort not in ("none", "minimal"):
        return True
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") not in (None, "none"):
        return True
    thinking = payload.get("thinking")  # Anthropic: {"type": "enabled" | "adaptive", ...}
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _wants_structured_output(payload: Mapping[str, Any]) -> bool:
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return True
    output_format = payload.get("output_format")  # Anthropic structured outputs
    return isinstance(output_format, dict) and output_format.get("type") == "json_schema"


@dataclass(slots=True)
class _Media:
    images: int = 0
    image_bytes: int = 0
    documents: int = 0


def _scan_blocks(blocks: list[Any], media: _Media, depth: int = 0) -> None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in _IMAGE_BLOCKS:
            media.images += 1
            media.image_bytes += _inline_bytes(block)
        elif kind in _DOCUMENT_BLOCKS:
            media.documents += 1
        inner = block.get("content")  # Anthropic tool_result blocks nest content
        if depth < 2 and isinstance(inner, list):
            _scan_blocks(inner, media, depth + 1)


def _inline_bytes(block: Mapping[str, Any]) -> int:
    image_url = block.get("image_url")
    if isinstance(image_url, dict):
        url = image_url.get("url")
        return len(url) if isinstance(url, str) and url.startswith("data:") else 0
    source = block.get("source")
    if isinstance(source, dict) and isinstance(source.get("data"), str):
        return len(source["data"])
    return 0


def needs_of(payload: Mapping[str, Any], body_bytes: int) -> RequestNeeds:
    """Read what the request needs: tools, images, documents, structured output, reasoning,
    the estimated prompt tokens and the requested output budget."""
    media = _Media()
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and isinstance(message.get("content"), list):
                _scan_blocks(message["content"], media)
    system = payload.get("system")
    if isinstance(system, list):
        _scan_blocks(system, media)
    tools = payload.get("tools") or payload.get("functions")
    text_bytes = max(body_bytes - media.image_bytes, 0)
    return RequestNeeds(
        prompt_tokens=text_bytes // BYTES_PER_TOKEN + media.images * TOKENS_PER_IMAGE,
        max_tokens=_max_tokens(payload),
        tools=isinstance(tools, list) and bool(tools),
        images=media.images > 0,
        documents=media.documents > 0,
        structured_output=_wants_structured_output(payload),
        reasoning=_wants_reasoning(payload),
    )
