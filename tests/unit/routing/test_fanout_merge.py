"""Merging fanned-out answers: usage sums, choices are re-indexed."""

from __future__ import annotations

from orcarouter.api.fanout import merge_responses, sum_usage, wanted_choices
from orcarouter.canonical import Choice, Response, Text, Usage


def test_usage_sums_and_unreported_counters_stay_unreported() -> None:
    total = sum_usage(
        [
            Usage(input_tokens=5, output_tokens=2, cache_read_tokens=3),
            None,
            Usage(input_tokens=7, output_tokens=1, server_tool_uses={"web_search_requests": 1}),
        ]
    )
    assert total == Usage(
        input_tokens=12,
        output_tokens=3,
        cache_read_tokens=3,
        cache_write_tokens=None,
        reasoning_tokens=None,
        server_tool_uses={"web_search_requests": 1},
    )
    assert total.total_tokens == 18
    assert sum_usage([None, None]) is None


def test_choices_are_indexed_by_request() -> None:
    responses = [
        Response(
            id=f"r{i}",
            model="m",
            choices=(Choice(content=(Text(text=str(i)),)),),
            usage=Usage(input_tokens=1, output_tokens=1),
        )
        for i in range(3)
    ]
    merged = merge_responses(responses)
    assert merged.id == "r0"
    assert [(c.index, c.content[0]) for c in merged.choices] == [
        (i, Text(text=str(i))) for i in range(3)
    ]
    assert merged.usage == Usage(input_tokens=3, output_tokens=3)


def test_only_a_whole_number_above_one_asks_for_several_choices() -> None:
    assert [wanted_choices({"n": v}) for v in (None, 1, 3, True, "3", 2.0)] == [1, 1, 3, 1, 1, 1]
