"""Usage conversion between each wire's token-count semantics and canonical ``Usage``.

Canonical: ``input_tokens`` excludes cache reads and writes; ``output_tokens`` includes
reasoning (see ``orcarouter.canonical.Usage``). Formulas: wire-formats.md §4.5; Portkey's
fix for the OpenAI invariant: https://github.com/Portkey-AI/gateway/pull/1754
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orcarouter.canonical import Usage, WireName
from orcarouter.translate.common import (
    JsonDict,
    extras_for,
    is_mapping,
    optional_int,
    residual,
    with_extras,
)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if is_mapping(value) else {}


def _with_rest(usage: Usage, wire: WireName, rest: JsonDict) -> Usage:
    """``usage`` keeping what its wire sent beyond it (``dataclasses.replace`` costs 1.7x this)."""
    if not rest:
        return usage
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        server_tool_uses=usage.server_tool_uses,
        extra=extras_for(wire, rest),
    )


def usage_from_openai(data: Mapping[str, Any]) -> Usage:
    """OpenAI ``CompletionUsage`` (prompt includes cached, completion includes reasoning)."""
    prompt = optional_int(data.get("prompt_tokens")) or 0
    prompt_details = _mapping(data.get("prompt_tokens_details"))
    completion_details = _mapping(data.get("completion_tokens_details"))
    cached = optional_int(prompt_details.get("cached_tokens"))
    written = optional_int(prompt_details.get("cache_write_tokens"))
    usage = Usage(
        input_tokens=max(prompt - (cached or 0) - (written or 0), 0),
        output_tokens=optional_int(data.get("completion_tokens")) or 0,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=optional_int(completion_details.get("reasoning_tokens")),
    )
    return _with_rest(usage, "openai", residual(data, usage_to_openai(usage)))


def usage_to_openai(usage: Usage) -> JsonDict:
    """Render canonical usage as OpenAI ``CompletionUsage`` (``prompt + completion == total``)."""
    out: JsonDict = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    prompt_details: JsonDict = {}
    if usage.cache_read_tokens is not None:
        prompt_details["cached_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens is not None:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    if prompt_details:
        out["prompt_tokens_details"] = prompt_details
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return with_extras(out, usage.extra, "openai")


def usage_from_anthropic(data: Mapping[str, Any]) -> Usage:
    """Anthropic ``Usage`` (``input_tokens`` already excludes both cache counters)."""
    server = _mapping(data.get("server_tool_use"))
    details = _mapping(data.get("output_tokens_details"))
    usage = Usage(
        input_tokens=optional_int(data.get("input_tokens")) or 0,
        output_tokens=optional_int(data.get("output_tokens")) or 0,
        cache_read_tokens=optional_int(data.get("cache_read_input_tokens")),
        cache_write_tokens=optional_int(data.get("cache_creation_input_tokens")),
        reasoning_tokens=optional_int(details.get("thinking_tokens")),
        server_tool_uses=(
            {k: v for k, v in server.items() if isinstance(v, int)} if server else None
        ),
    )
    return _with_rest(usage, "anthropic", residual(data, usage_to_anthropic(usage)))


def usage_to_anthropic(usage: Usage) -> JsonDict:
    """Render canonical usage as Anthropic ``Usage``."""
    out: JsonDict = {"input_tokens": usage.input_tokens}
    if usage.cache_write_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_write_tokens
    if usage.cache_read_tokens is not None:
        out["cache_read_input_tokens"] = usage.cache_read_tokens
    out["output_tokens"] = usage.output_tokens
    if usage.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    if usage.server_tool_uses is not None:
        out["server_tool_use"] = dict(usage.server_tool_uses)
    return with_extras(out, usage.extra, "anthropic")


def usage_from_gemini(data: Mapping[str, Any]) -> Usage:
    """Gemini ``usageMetadata`` (prompt includes cached; candidates exclude thoughts).

    ``totalTokenCount = prompt + toolUsePrompt + candidates + thoughts``; when the total shows
    that candidates already include the thoughts (older Vertex responses), they are not added
    twice (LiteLLM ``is_candidate_token_count_inclusive``).
    https://ai.google.dev/api/generate-content#UsageMetadata
    """
    prompt = (optional_int(data.get("promptTokenCount")) or 0) + (
        optional_int(data.get("toolUsePromptTokenCount")) or 0
    )
    cached = optional_int(data.get("cachedContentTokenCount"))
    thoughts = optional_int(data.get("thoughtsTokenCount"))
    candidates = optional_int(data.get("candidatesTokenCount")) or 0
    total = optional_int(data.get("totalTokenCount"))
    inclusive = bool(thoughts) and total == prompt + candidates
    usage = Usage(
        input_tokens=max(prompt - (cached or 0), 0),
        output_tokens=candidates if inclusive else candidates + (thoughts or 0),
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )
    return _with_rest(usage, "gemini", residual(data, usage_to_gemini(usage)))


def usage_to_gemini(usage: Usage) -> JsonDict:
    """Render canonical usage as Gemini ``usageMetadata`` (tool-use prompt folded into prompt)."""
    out: JsonDict = {"promptTokenCount": usage.prompt_tokens}
    if usage.cache_read_tokens is not None:
        out["cachedContentTokenCount"] = usage.cache_read_tokens
    out["candidatesTokenCount"] = usage.output_tokens - (usage.reasoning_tokens or 0)
    if usage.reasoning_tokens is not None:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    out["totalTokenCount"] = usage.total_tokens
    return with_extras(out, usage.extra, "gemini")
