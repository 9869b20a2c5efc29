"""Table tests for the Gemini translator: the Gemini rows of wire-formats.md §4.3 (tool choice,
web search, unsupported parameters), §4.4 (finish reasons), §4.5 (usage), §4.7 (thinking) and
§4.8 (grounding)."""

from __future__ import annotations

from typing import Any

import pytest

from orcarouter.canonical import (
    BlockDelta,
    CitationDelta,
    StopReason,
)
from orcarouter.translate import TranslationError
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from tests.unit.translate.test_translate_gemini_support import (
    chunk,
    decode,
    openai_body,
    to_gemini,
)

GEMINI_3 = gm.GeminiTarget(thinking="level", signatures_required=True)


def test_tool_choice_and_web_search_mapping() -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    base = openai_body([{"role": "user", "content": "x"}], tools=tools)
    config = {
        "auto": {"mode": "AUTO"},
        "none": {"mode": "NONE"},
        "required": {"mode": "ANY"},
    }
    for choice, expected in config.items():
        assert to_gemini({**base, "tool_choice": choice})["toolConfig"] == {
            "functionCallingConfig": expected
        }
    named = {"type": "function", "function": {"name": "b"}}
    assert to_gemini({**base, "tool_choice": named})["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}
    }
    search = to_gemini({**base, "web_search_options": {"search_context_size": "high"}})
    assert search["tools"][-1] == {"googleSearch": {}}


def test_unsupported_params_are_reported_or_refused() -> None:
    """§4.9: parallel_tool_calls=false and logit_bias dropped; audio output refused."""
    tools = [{"type": "function", "function": {"name": "a"}}]
    body = openai_body(
        [{"role": "user", "content": "x"}],
        tools=tools,
        parallel_tool_calls=False,
        logit_bias={"1": 2},
        user="u1",
        n=2,
    )
    translation = gm.request_from_canonical(oc.request_to_canonical(body))
    assert {"parallel_tool_calls", "logit_bias", "user"} <= set(translation.dropped)
    assert translation.body["generationConfig"]["candidateCount"] == 2
    audio = {**body, "modalities": ["text", "audio"]}
    with pytest.raises(TranslationError):
        gm.request_from_canonical(oc.request_to_canonical(audio))


# ---- thinking config (§4.7) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "budget", "level"),
    [
        ("none", {"thinkingBudget": 0}, {"thinkingLevel": "LOW"}),
        ("minimal", {"thinkingBudget": 512, "includeThoughts": True}, None),
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}, None),
        ("high", {"thinkingBudget": 4096, "includeThoughts": True}, None),
    ],
)
def test_reasoning_effort_to_thinking_budget_or_level_never_both(
    effort: str, budget: dict[str, Any], level: dict[str, Any] | None
) -> None:
    body = openai_body([{"role": "user", "content": "x"}], reasoning_effort=effort)
    assert to_gemini(body)["generationConfig"]["thinkingConfig"] == budget
    three = to_gemini(body, target=gm.GeminiTarget(thinking="level"))
    expected = level or {"thinkingLevel": effort.upper(), "includeThoughts": True}
    assert three["generationConfig"]["thinkingConfig"] == expected


def test_anthropic_budget_and_gemini_budget_round_trip() -> None:
    body = {
        "model": "c",
        "max_tokens": 5000,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "enabled", "budget_tokens": 3000},
    }
    gemini = gm.request_from_canonical(am.request_to_canonical(body)).body
    assert gemini["generationConfig"] == {
        "maxOutputTokens": 5000,
        "thinkingConfig": {"thinkingBudget": 3000, "includeThoughts": True},
    }
    back = gm.request_to_canonical(gemini)
    assert back.reasoning is not None and back.reasoning.budget_tokens == 3000
    assert oc.request_from_canonical(back).body["reasoning_effort"] == "medium"


# ---- responses: finish reasons, usage, grounding ---------------------------------------------


@pytest.mark.parametrize(
    ("finish", "openai", "anthropic"),
    [
        ("STOP", "stop", "end_turn"),
        ("MAX_TOKENS", "length", "max_tokens"),
        ("SAFETY", "content_filter", "refusal"),
        ("RECITATION", "content_filter", "refusal"),
        ("BLOCKLIST", "content_filter", "refusal"),
        ("PROHIBITED_CONTENT", "content_filter", "refusal"),
        ("SPII", "content_filter", "refusal"),
        ("MALFORMED_FUNCTION_CALL", "stop", "end_turn"),
    ],
)
def test_finish_reason_rows_of_4_4(finish: str, openai: str, anthropic: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": finish}]}
    canonical = gm.response_to_canonical(body)
    assert oc.response_from_canonical(canonical, created=1)["choices"][0]["finish_reason"] == openai
    assert am.response_from_canonical(canonical)["stop_reason"] == anthropic


def test_prompt_feedback_block_reason_is_content_filter_with_no_content() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    canonical = gm.response_to_canonical(body)
    choice = oc.response_from_canonical(canonical, created=1)["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("content_filter", None)
    assert gm.response_from_canonical(canonical) == body
    events = decode([body])
    assert events[-2].stop_reason is StopReason.CONTENT_FILTER  # type: ignore[union-attr]


def test_usage_thoughts_outside_candidates_cache_inside_prompt_totals_add_up() -> None:
    """§4.5 (Portkey reports completion without thoughts; PR #1754 invariants)."""
    metadata = {
        "promptTokenCount": 100,
        "cachedContentTokenCount": 64,
        "candidatesTokenCount": 20,
        "thoughtsTokenCount": 150,
        "toolUsePromptTokenCount": 5,
        "totalTokenCount": 275,
    }
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}}], "usageMetadata": metadata}
    canonical = gm.response_to_canonical(body)
    usage = oc.response_from_canonical(canonical, created=1)["usage"]
    assert usage == {
        "prompt_tokens": 105,
        "completion_tokens": 170,
        "total_tokens": 275,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 150},
    }
    anthropic = am.response_from_canonical(canonical)["usage"]
    assert (anthropic["input_tokens"], anthropic["cache_read_input_tokens"]) == (41, 64)
    assert anthropic["output_tokens"] == 170
    inclusive = {**metadata, "candidatesTokenCount": 170}
    counted = gm.response_to_canonical({**body, "usageMetadata": inclusive}).usage
    assert counted is not None
    assert (counted.input_tokens, counted.output_tokens, counted.total_tokens) == (41, 170, 275)


def test_grounding_byte_offsets_become_character_offsets() -> None:
    """§4.8: segment indices are UTF-8 bytes; LiteLLM copies them raw into url_citation."""
    text = "Café au lait. Paris is nice."
    start = len("Café au lait. ".encode())
    grounding = {
        "groundingChunks": [{"web": {"uri": "https://ex.test/p", "title": "Paris"}}],
        "groundingSupports": [
            {
                "segment": {
                    "startIndex": start,
                    "endIndex": len(text.encode()),
                    "text": "Paris is nice.",
                },
                "groundingChunkIndices": [0],
            }
        ],
    }
    body = {
        "candidates": [{"content": {"parts": [{"text": text}]}, "groundingMetadata": grounding}]
    }
    message = oc.response_from_canonical(gm.response_to_canonical(body), created=1)["choices"][0][
        "message"
    ]
    (annotation,) = message["annotations"]
    spec = annotation["url_citation"]
    assert text[spec["start_index"] : spec["end_index"]] == "Paris is nice."
    streamed = decode(
        [
            chunk({"text": text}),
            {
                **chunk(finish="STOP"),
                "candidates": [
                    {
                        "content": {"parts": [], "role": "model"},
                        "finishReason": "STOP",
                        "groundingMetadata": grounding,
                    }
                ],
            },
        ]
    )
    (citation,) = [
        e.delta.citation
        for e in streamed
        if isinstance(e, BlockDelta) and isinstance(e.delta, CitationDelta)
    ]
    assert text[citation.start : citation.end] == "Paris is nice."
