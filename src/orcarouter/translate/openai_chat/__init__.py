"""OpenAI Chat Completions ⇄ canonical: requests, responses and streams."""

from orcarouter.translate.openai_chat.requests import request_from_canonical, request_to_canonical
from orcarouter.translate.openai_chat.responses import (
    response_from_canonical,
    response_to_canonical,
)
from orcarouter.translate.openai_chat.stream_decode import OpenAIChunkDecoder
from orcarouter.translate.openai_chat.stream_encode import OpenAIChunkEncoder

__all__ = [
    "OpenAIChunkDecoder",
    "OpenAIChunkEncoder",
    "request_from_canonical",
    "request_to_canonical",
    "response_from_canonical",
    "response_to_canonical",
]
