"""Token usage in one set of semantics, whatever the provider reported.

Canonical ``Usage``: ``input_tokens`` excludes cache reads and writes, ``prompt_tokens`` (the
OpenAI view) includes them, ``output_tokens`` includes reasoning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orcarouter.canonical import Usage
from orcarouter.metering.usage import UsageRecord
from orcarouter.providers.anthropic import merge_anthropic_usage
from orcarouter.translate.usage import usage_from_openai

# --- OpenAI (passthrough reading) ----------------------------------------------------------


def test_openai_usage_with_cached_and_reasoning_tokens() -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
        }
    )
    assert (usage.prompt_tokens, usage.input_tokens, usage.output_tokens) == (1200, 176, 300)
    assert (usage.cache_read_tokens, usage.reasoning_tokens) == (1024, 256)
    assert usage.total_tokens == 1500  # cached tokens are a subset of the prompt


def test_openai_cache_write_tokens_are_read_from_prompt_details() -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 500,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 400},
        }
    )
    assert (usage.prompt_tokens, usage.cache_write_tokens, usage.total_tokens) == (500, 400, 505)


def test_openai_usage_ignores_a_wrong_total() -> None:
    usage = usage_from_openai({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 999})
    assert usage.total_tokens == 12


@pytest.mark.parametrize("odd", ["12", 12.5, True, None])
def test_openai_odd_counters_count_as_zero(odd: Any) -> None:
    usage = usage_from_openai({"prompt_tokens": odd, "completion_tokens": 7})
    assert (usage.prompt_tokens, usage.output_tokens) == (0, 7)


# --- Anthropic (message_start, then message_delta) -----------------------------------------


def test_anthropic_prompt_is_input_plus_cache_read_plus_cache_write() -> None:
    usage = merge_anthropic_usage(
        None,
        {
            "input_tokens": 12,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 300,
            "output_tokens": 40,
        },
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.output_tokens, usage.total_tokens) == (2312, 40, 2352)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (2000, 300)


def test_anthropic_stream_output_tokens_are_cumulative_and_replace() -> None:
    start = {"input_tokens": 25, "cache_read_input_tokens": 100, "output_tokens": 1}
    usage = merge_anthropic_usage(None, start)
    usage = merge_anthropic_usage(usage, {"output_tokens": 15})
    usage = merge_anthropic_usage(usage, {"output_tokens": 48})
    assert usage is not None
    assert (usage.output_tokens, usage.prompt_tokens, usage.cache_read_tokens) == (48, 125, 100)


def test_anthropic_message_delta_repeating_every_counter_does_not_double_count() -> None:
    start = {
        "input_tokens": 25,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 7,
        "output_tokens": 1,
    }
    usage = merge_anthropic_usage(
        merge_anthropic_usage(None, start), {**start, "output_tokens": 30}
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.output_tokens) == (132, 30)


def test_anthropic_cache_counters_only_in_message_delta_are_counted() -> None:
    # Bedrock-style upstreams send the cache counters only at the end of the stream.
    usage = merge_anthropic_usage(None, {"input_tokens": 10, "output_tokens": 1})
    usage = merge_anthropic_usage(
        usage,
        {"output_tokens": 50, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5},
    )
    assert usage is not None
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (100, 5)
    assert (usage.prompt_tokens, usage.output_tokens) == (115, 50)


def test_anthropic_null_counters_leave_earlier_values() -> None:
    usage = merge_anthropic_usage(
        None, {"input_tokens": 9, "cache_read_input_tokens": 4, "output_tokens": 1}
    )
    usage = merge_anthropic_usage(
        usage,
        {
            "input_tokens": None,
            "cache_read_input_tokens": None,
            "cache_creation_input_tokens": None,
            "output_tokens": 20,
        },
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.output_tokens, usage.cache_read_tokens) == (13, 20, 4)


def test_anthropic_thinking_tokens_and_server_tools() -> None:
    usage = merge_anthropic_usage(
        None,
        {
            "input_tokens": 5,
            "output_tokens": 900,
            "output_tokens_details": {"thinking_tokens": 700},
            "server_tool_use": {"web_search_requests": 2},
        },
    )
    assert usage is not None
    assert (usage.reasoning_tokens, usage.output_tokens) == (700, 900)
    assert usage.server_tool_uses == {"web_search_requests": 2}
    usage = merge_anthropic_usage(usage, {"server_tool_use": {"web_search_requests": 3}})
    assert usage is not None and usage.server_tool_uses == {"web_search_requests": 3}


@pytest.mark.parametrize("raw", [None, "x", [], 3])
def test_anthropic_usage_that_is_not_an_object_changes_nothing(raw: Any) -> None:
    before = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=2)
    assert merge_anthropic_usage(before, raw) is before
    assert merge_anthropic_usage(None, raw) is None


@pytest.mark.parametrize("odd", ["12", 12.5, [1], True])
def test_anthropic_odd_counter_values_are_ignored(odd: Any) -> None:
    before = Usage(input_tokens=10, output_tokens=5)
    usage = merge_anthropic_usage(
        before,
        {
            "input_tokens": odd,
            "output_tokens": odd,
            "cache_read_input_tokens": odd,
            "output_tokens_details": {"thinking_tokens": odd},
        },
    )
    assert usage == before


@given(
    input_tokens=st.integers(0, 10**7),
    cache_read=st.integers(0, 10**7),
    cache_write=st.integers(0, 10**7),
    outputs=st.lists(st.integers(0, 10**6), min_size=1, max_size=6).map(sorted),
    cache_in_delta=st.booleans(),
)
def test_anthropic_stream_totals_match_the_one_shot_message(
    input_tokens: int,
    cache_read: int,
    cache_write: int,
    outputs: list[int],
    cache_in_delta: bool,
) -> None:
    cache = {"cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}
    streamed = merge_anthropic_usage(
        None,
        {"input_tokens": input_tokens, "output_tokens": 1, **({} if cache_in_delta else cache)},
    )
    for index, output in enumerate(outputs):
        last = index == len(outputs) - 1
        delta = {"output_tokens": output, **(cache if cache_in_delta and last else {})}
        streamed = merge_anthropic_usage(streamed, delta)
    whole = merge_anthropic_usage(
        None, {"input_tokens": input_tokens, "output_tokens": outputs[-1], **cache}
    )
    assert streamed is not None and whole is not None
    assert (streamed.prompt_tokens, streamed.output_tokens) == (
        whole.prompt_tokens,
        whole.output_tokens,
    )
    assert whole.prompt_tokens == input_tokens + cache_read + cache_write


# --- the ledger row ------------------------------------------------------------------------

WHEN = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_as_row_totals_add_up() -> None:
    record = UsageRecord(
        request_id="req_1",
        created_at=WHEN,
        workspace_id="ws_default",
        key_id="key_1",
        endpoint="chat",
        stream=True,
        model_requested="gpt-4o-mini",
        model_served="openai/gpt-4o-mini",
        upstream_model="gpt-4o-mini-2024-07-18",
        provider_id="openai",
        status_code=200,
        usage=Usage(
            input_tokens=176, output_tokens=300, cache_read_tokens=1024, reasoning_tokens=256
        ),
        latency_ms=840,
        ttft_ms=120,
    )
    row = record.as_row()
    assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"] == 1500
    assert (row["prompt_tokens"], row["cache_read_tokens"], row["reasoning_tokens"]) == (
        1200,
        1024,
        256,
    )
    assert row["cache_write_tokens"] == 0
    assert (row["stream"], row["status_code"], row["outcome"]) == (True, 200, "ok")
    assert (row["latency_ms"], row["ttft_ms"]) == (840, 120)
    assert row["upstream_model"] == "gpt-4o-mini-2024-07-18"


def test_as_row_without_usage_leaves_every_token_column_empty() -> None:
    record = UsageRecord(
        request_id="req_2",
        created_at=WHEN,
        workspace_id=None,
        key_id=None,
        endpoint="messages",
        stream=False,
        status_code=502,
        outcome="error",
        error_type="upstream_unreachable",
    )
    row = record.as_row()
    token_columns = [name for name in row if name.endswith("_tokens")]
    assert len(token_columns) == 6
    assert all(row[name] is None for name in token_columns)


@given(prompt=st.integers(0, 10**9), completion=st.integers(0, 10**9))
def test_as_row_total_is_always_prompt_plus_completion(prompt: int, completion: int) -> None:
    usage = Usage(input_tokens=prompt, output_tokens=completion)
    row = UsageRecord("r", WHEN, None, None, "chat", False, usage=usage).as_row()
    assert row["total_tokens"] == prompt + completion
