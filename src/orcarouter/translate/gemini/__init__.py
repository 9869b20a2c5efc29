"""Gemini ``generateContent`` ⇄ canonical: requests, responses and streams (REST camelCase)."""

from orcarouter.translate.gemini.fields import GEMINI_THINKING_FORMAT
from orcarouter.translate.gemini.requests import (
    GeminiTarget,
    request_from_canonical,
    request_to_canonical,
)
from orcarouter.translate.gemini.responses import (
    response_from_canonical,
    response_to_canonical,
)
from orcarouter.translate.gemini.stream_decode import GeminiChunkDecoder
from orcarouter.translate.gemini.stream_encode import GeminiChunkEncoder

__all__ = [
    "GEMINI_THINKING_FORMAT",
    "GeminiChunkDecoder",
    "GeminiChunkEncoder",
    "GeminiTarget",
    "request_from_canonical",
    "request_to_canonical",
    "response_from_canonical",
    "response_to_canonical",
]
