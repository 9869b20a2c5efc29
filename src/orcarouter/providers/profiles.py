"""Per-model dialect choices as data: what each target needs to accept a translated request.

Rows are matched in order against ``provider/model``; every row that matches contributes its
options, later rows overriding earlier ones. A new vendor quirk is a row here, never a branch
in the gateway's code.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orcarouter.catalog import Catalog
from orcarouter.translate.codecs import TargetOptions
from orcarouter.translate.gemini import GeminiTarget


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """Options for the models matching ``pattern`` (an fnmatch glob on ``provider/model``)."""

    pattern: str
    options: dict[str, Any] = field(default_factory=dict)
    doc: str = ""


PROFILES: tuple[ProfileRow, ...] = (
    # Most OpenAI-compatible servers know only max_tokens.
    ProfileRow("*", {"max_tokens_field": "max_tokens"}),
    # OpenAI takes max_completion_tokens on every model and requires it on reasoning models,
    # and accepts no reasoning text back in the conversation.
    ProfileRow(
        "openai/*",
        {"max_tokens_field": "max_completion_tokens", "reasoning_fields": ()},
        "https://platform.openai.com/docs/api-reference/chat/create#chat-create-max_completion_tokens",
    ),
    # DeepSeek and Kimi want the earlier turns' reasoning back as reasoning_content.
    ProfileRow(
        "deepseek/*",
        {"reasoning_fields": ("reasoning_content",)},
        "https://api-docs.deepseek.com/guides/thinking_mode",
    ),
    ProfileRow(
        "moonshot/*",
        {"reasoning_fields": ("reasoning_content",)},
        "https://platform.moonshot.ai/docs/guide/use-kimi-k2-thinking-model",
    ),
    # OpenRouter carries signed reasoning as reasoning_details.
    ProfileRow(
        "openrouter/*",
        {"reasoning_fields": ("reasoning", "reasoning_details")},
        "https://openrouter.ai/docs/use-cases/reasoning-tokens#preserving-reasoning-blocks",
    ),
    # Gemini 2.5 and later take full JSON Schema (responseJsonSchema, parametersJsonSchema);
    # older models only the OpenAPI-subset Schema (responseSchema, parameters).
    ProfileRow(
        "*/gemini-2.5*",
        {"gemini": GeminiTarget(json_schema=True)},
        "https://ai.google.dev/gemini-api/docs/structured-output#json-schema",
    ),
    # Gemini 3 also takes a thinking level instead of a budget, validates thought signatures on
    # function calls, and takes media inside function responses. (A row's GeminiTarget
    # replaces an earlier row's whole, so this one repeats json_schema.)
    ProfileRow(
        "*/gemini-3*",
        {
            "gemini": GeminiTarget(
                thinking="level",
                signatures_required=True,
                function_response_media=True,
                json_schema=True,
            )
        },
        "https://ai.google.dev/gemini-api/docs/thought-signatures",
    ),
    # Claude 4.6 and later think adaptively (thinking.type = adaptive + output_config.effort);
    # Opus 4.7+ rejects a fixed budget.
    *(
        ProfileRow(
            f"*/claude-*-{version}*",
            {"adaptive_thinking": True},
            "https://docs.claude.com/en/docs/build-with-claude/adaptive-thinking",
        )
        for version in ("4-6", "4-7", "4-8", "4.6", "4.7", "4.8", "5")
    ),
)


_CACHE_LIMIT = 4096


class ProfileBook:
    """Resolves the ``TargetOptions`` of a target model from the rows and the catalog."""

    def __init__(self, catalog: Catalog, rows: Sequence[ProfileRow] = PROFILES) -> None:
        self._catalog = catalog
        self._rows = tuple(rows)
        self._cache: dict[str, TargetOptions] = {}

    def options(self, provider_id: str, model: str, *, drop_params: bool) -> TargetOptions:
        """The options for ``provider/model``; ``max_tokens`` defaults to its output limit."""
        key = f"{provider_id}/{model}"
        options = self._cache.get(key)
        if options is None:
            options = self._build(key, provider_id, model)
            if len(self._cache) >= _CACHE_LIMIT:  # model ids come from clients: stay bounded
                self._cache.clear()
            self._cache[key] = options
        return replace(options, drop_params=True) if drop_params else options

    def _build(self, key: str, provider_id: str, model: str) -> TargetOptions:
        merged: dict[str, Any] = {}
        for row in self._rows:
            if fnmatch.fnmatchcase(key, row.pattern):
                merged.update(row.options)
        info = self._catalog.get(provider_id, model)
        if info is not None and info.max_output:
            merged["default_max_tokens"] = info.max_output
        return TargetOptions(**merged)
