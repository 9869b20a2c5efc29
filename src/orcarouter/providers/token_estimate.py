"""Estimating prompt tokens for models whose provider has no counting endpoint.

OpenAI-protocol models are counted with their tiktoken encoding (bpe-openai ships the same
vocabularies, so nothing is downloaded at run time), over the request rendered as the model
would receive it, with OpenAI's per-message overhead
(https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken). Images cannot be
sized without decoding them: each counts as a 512 x 512 high-detail tile set (765 tokens,
https://platform.openai.com/docs/guides/images-vision#calculating-costs).
"""

from __future__ import annotations

import fnmatch
import importlib
import warnings
from collections.abc import Mapping
from functools import cache
from typing import Any

import orjson

TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
IMAGE_TOKENS = 765
# Older models use cl100k_base; everything newer (gpt-4o, o-series, gpt-4.1, gpt-5…) o200k_base.
_ENCODINGS = (("gpt-3.5*", "cl100k_base"), ("gpt-4", "cl100k_base"), ("gpt-4-*", "cl100k_base"))
DEFAULT_ENCODING = "o200k_base"


def encoding_for(model: str) -> str:
    """The tiktoken encoding name of an OpenAI-style model id."""
    for pattern, name in _ENCODINGS:
        if fnmatch.fnmatchcase(model, pattern):
            return name
    return DEFAULT_ENCODING


@cache
def _encoding(name: str) -> Any:
    # Loaded on first use: importing bpe-openai builds a vocabulary table of about 60 MiB,
    # which a gateway that never estimates should not carry. It also reads its data files
    # with a deprecated importlib API.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("bpe_openai").get_encoding(name)


def count_text(text: str, encoding: str) -> int:
    """Tokens of plain text (special-token lookalikes are counted as text)."""
    return len(_encoding(encoding).encode_ordinary(text))


def estimate_openai_prompt(body: Mapping[str, Any], encoding: str) -> int:
    """Prompt tokens of an OpenAI chat-completions body: messages, tools and the reply priming."""
    total = REPLY_PRIMING
    for message in body.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        total += TOKENS_PER_MESSAGE + count_text(str(message.get("role", "")), encoding)
        total += _content_tokens(message.get("content"), encoding)
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                total += count_text(str(function.get("name", "")), encoding)
                total += count_text(str(function.get("arguments", "")), encoding)
    tools = body.get("tools")
    if tools:
        total += count_text(orjson.dumps(tools).decode(), encoding)
    return total


def _content_tokens(content: Any, encoding: str) -> int:
    if isinstance(content, str):
        return count_text(content, encoding)
    total = 0
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            total += count_text(part["text"], encoding)
        elif part.get("type") == "image_url":
            total += IMAGE_TOKENS
        else:
            total += count_text(orjson.dumps(part).decode(), encoding)
    return total
