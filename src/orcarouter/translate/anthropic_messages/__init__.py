"""Anthropic Messages ⇄ canonical: requests, responses and streams (with SSE event names)."""

from orcarouter.translate.anthropic_messages.requests import (
    request_from_canonical,
    request_to_canonical,
)
from orcarouter.translate.anthropic_messages.responses import (
    response_from_canonical,
    response_to_canonical,
)
from orcarouter.translate.anthropic_messages.stream_decode import AnthropicEventDecoder
from orcarouter.translate.anthropic_messages.stream_encode import AnthropicEventEncoder
from orcarouter.translate.anthropic_messages.thinking import AnthropicTarget

__all__ = [
    "AnthropicEventDecoder",
    "AnthropicEventEncoder",
    "AnthropicTarget",
    "request_from_canonical",
    "request_to_canonical",
    "response_from_canonical",
    "response_to_canonical",
]
