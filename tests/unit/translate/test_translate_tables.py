"""The mapping tables: stop reasons (§4.4), usage (§4.5), effort ⇄ budget (§4.7), tool choice."""

from __future__ import annotations

from typing import Any

import pytest

from orcarouter.canonical import StopReason, Usage
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.reasoning import effort_for_budget, fit_budget
from orcarouter.translate.stop_reasons import (
    stop_from_anthropic,
    stop_from_openai,
    stop_to_anthropic,
    stop_to_openai,
)
from orcarouter.translate.usage import (
    usage_from_anthropic,
    usage_from_gemini,
    usage_from_openai,
    usage_to_anthropic,
    usage_to_gemini,
    usage_to_openai,
)


@pytest.mark.parametrize(
    ("anthropic", "openai"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "length"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_anthropic_stop_reason_to_openai(anthropic: str, openai: str) -> None:
    assert stop_to_openai(stop_from_anthropic(anthropic)) == openai


@pytest.mark.parametrize(
    ("openai", "anthropic"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ],
)
def test_openai_finish_reason_to_anthropic(openai: str, anthropic: str) -> None:
    assert stop_to_anthropic(stop_from_openai(openai, saw_tool_calls=False)) == anthropic


def test_stop_after_tool_calls_is_tool_use() -> None:
    assert stop_from_openai("stop", saw_tool_calls=True) is StopReason.TOOL_USE


def test_usage_semantics_and_conversions_are_exact() -> None:
    usage = Usage(
        input_tokens=10,
        output_tokens=20,
        cache_read_tokens=30,
        cache_write_tokens=4,
        reasoning_tokens=5,
    )
    assert usage.prompt_tokens == 44 and usage.total_tokens == 64
    openai = usage_to_openai(usage)
    assert openai == {
        "prompt_tokens": 44,
        "completion_tokens": 20,
        "total_tokens": 64,
        "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    assert usage_from_openai(openai) == usage
    anthropic = usage_to_anthropic(usage)
    assert anthropic["input_tokens"] == 10 and anthropic["cache_read_input_tokens"] == 30
    assert usage_from_anthropic(anthropic) == usage
    gemini = {
        "promptTokenCount": 100,
        "cachedContentTokenCount": 60,
        "candidatesTokenCount": 7,
        "thoughtsTokenCount": 3,
        "totalTokenCount": 110,
    }
    parsed = usage_from_gemini(gemini)
    assert (parsed.input_tokens, parsed.output_tokens, parsed.reasoning_tokens) == (40, 10, 3)
    assert usage_to_gemini(parsed) == gemini


def test_vendor_usage_fields_survive_same_wire_round_trip() -> None:
    groq = {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "queue_time": 0.1,
        "prompt_tokens_details": None,
    }
    assert usage_to_openai(usage_from_openai(groq)) == groq


@pytest.mark.parametrize(
    ("effort", "budget"),
    [
        ("minimal", 1024),
        ("low", 1024),
        ("medium", 2048),
        ("high", 4096),
        ("xhigh", 8192),
        ("max", 16384),
    ],
)
def test_effort_to_budget_table(effort: str, budget: int) -> None:
    body = {
        "model": "m",
        "reasoning_effort": effort,
        "messages": [{"role": "user", "content": "x"}],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=100_000)
    assert result.body["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_effort_none_sends_no_thinking() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "none",
        "messages": [{"role": "user", "content": "x"}],
    }
    assert (
        "thinking"
        not in am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=9).body
    )


def test_budget_above_max_tokens_raises_max_tokens_instead_of_starving_the_answer() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "high",
        "max_completion_tokens": 1000,
        "messages": [{"role": "user", "content": "x"}],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=9)
    assert result.body["thinking"]["budget_tokens"] == 4096 and result.body["max_tokens"] == 5096
    assert result.body["thinking"]["budget_tokens"] < result.body["max_tokens"]
    assert "max_tokens" in result.adjusted
    assert fit_budget(500, 10_000) == (1024, 10_000)


def test_adaptive_models_get_effort_not_budget() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "minimal",
        "messages": [{"role": "user", "content": "x"}],
    }
    result = am.request_from_canonical(
        oc.request_to_canonical(body), default_max_tokens=9, adaptive_thinking=True
    )
    assert result.body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert result.body["output_config"] == {"effort": "low"}


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(16000, "high"), (4096, "high"), (3000, "medium"), (1024, "low"), (512, "minimal")],
)
def test_budget_to_effort(budget: int, effort: str) -> None:
    assert effort_for_budget(budget) == effort
    body = {
        "model": "c",
        "max_tokens": 20000,
        "thinking": {"type": "enabled", "budget_tokens": budget},
        "messages": [{"role": "user", "content": "x"}],
    }
    assert (
        oc.request_from_canonical(am.request_to_canonical(body)).body["reasoning_effort"] == effort
    )


@pytest.mark.parametrize(
    ("openai", "anthropic"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice_mapping(openai: Any, anthropic: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {
        "model": "m",
        "tools": tools,
        "tool_choice": openai,
        "messages": [{"role": "user", "content": "x"}],
    }
    rendered = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=9).body
    assert rendered["tool_choice"] == anthropic
    back = oc.request_from_canonical(am.request_to_canonical(rendered)).body
    assert back["tool_choice"] == openai


def test_parallel_tool_calls_false_maps_to_disable_parallel_tool_use() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {
        "model": "m",
        "tools": tools,
        "parallel_tool_calls": False,
        "messages": [{"role": "user", "content": "x"}],
    }
    rendered = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=9).body
    assert rendered["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    none = {**body, "tool_choice": "none"}
    rendered = am.request_from_canonical(oc.request_to_canonical(none), default_max_tokens=9).body
    assert rendered["tool_choice"] == {"type": "none"}


def test_images_data_url_and_base64_and_url() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBE"}},
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    content = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=9).body[
        "messages"
    ][0]["content"]
    assert content == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        },
    ]
    back = oc.request_from_canonical(
        am.request_to_canonical(
            {"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": content[:2]}]}
        )
    ).body
    assert [p["image_url"]["url"] for p in back["messages"][0]["content"]] == [
        "data:image/png;base64,AAAA",
        "https://x.test/a.png",
    ]


def test_web_search_options_to_anthropic_tool_and_back() -> None:
    options = {
        "search_context_size": "high",
        "user_location": {"type": "approximate", "approximate": {"city": "Paris", "country": "FR"}},
    }
    body = {
        "model": "m",
        "web_search_options": options,
        "messages": [{"role": "user", "content": "x"}],
    }
    rendered = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=9).body
    assert rendered["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "max_uses": 10,
            "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
        }
    ]
    back = oc.request_from_canonical(am.request_to_canonical(rendered)).body
    assert back["web_search_options"] == options


def test_anthropic_stream_request_asks_openai_for_usage() -> None:
    body = {
        "model": "c",
        "max_tokens": 5,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    rendered = oc.request_from_canonical(am.request_to_canonical(body)).body
    assert rendered["stream_options"] == {"include_usage": True}
    assert rendered["max_completion_tokens"] == 5


def test_deepseek_reasoning_content_replay_is_text_only_when_profiled() -> None:
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "text", "text": "a"},
                ],
            },
        ],
    }
    rendered = oc.request_from_canonical(
        am.request_to_canonical(body), reasoning_fields=("reasoning_content",)
    ).body
    assert rendered["messages"][1] == {
        "role": "assistant",
        "content": "a",
        "reasoning_content": "t",
    }
