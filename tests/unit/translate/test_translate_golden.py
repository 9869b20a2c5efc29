"""Golden tests named after the translation bugs of wire-formats.md §5 (one small test each)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orcarouter.canonical import (
    BlockDelta,
    BlockStart,
    BlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    ServerToolResult,
    StopReason,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ToolUse,
)
from orcarouter.translate import TranslationError
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.stop_reasons import stop_from_gemini
from tests.support.recordings import load_family
from tests.support.replay import anthropic_message_start
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    check_openai_chunk_invariants,
    json_events,
    openai_accumulate,
)

SIG = "EqQBCkYIBxgCKkB-signature"


def anthropic_sse(*events: dict[str, Any]) -> list[dict[str, Any]]:
    """A message_start + the given events + message_delta/stop, as decoded event dicts."""
    start = anthropic_message_start(input_tokens=10)
    stop = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30},
    }
    return [start, *events, stop, {"type": "message_stop"}]


def block(
    index: int, content_block: dict[str, Any], *deltas: dict[str, Any]
) -> list[dict[str, Any]]:
    """content_block_start, its deltas, content_block_stop."""
    out: list[dict[str, Any]] = [
        {"type": "content_block_start", "index": index, "content_block": content_block}
    ]
    out += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    return [*out, {"type": "content_block_stop", "index": index}]


def tool_block(index: int, tool_id: str, name: str, *parts: str) -> list[dict[str, Any]]:
    start = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return block(index, start, *({"type": "input_json_delta", "partial_json": p} for p in parts))


def anthropic_to_openai(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    decoder, encoder = am.AnthropicEventDecoder(), oc.OpenAIChunkEncoder(created=1)
    chunks = [c for e in events for ce in decoder.feed(e) for c in encoder.feed(ce)]
    check_openai_chunk_invariants(chunks)
    return chunks


def openai_to_anthropic(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    decoder, encoder = oc.OpenAIChunkDecoder(), am.AnthropicEventEncoder()
    events: list[StreamEvent] = [e for c in chunks for e in decoder.feed(c)] + decoder.finish()
    out = [pair for e in events for pair in encoder.feed(e)]
    check_anthropic_event_invariants(out)
    return out


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def call_delta(
    index: int, call_id: str | None = None, name: str | None = None, args: Any = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {}}
    if call_id is not None:
        call["id"], call["type"] = call_id, "function"
        call["function"]["name"] = name
    if args is not None:
        call["function"]["arguments"] = args
    return {"tool_calls": [call]}


# ---- LiteLLM ---------------------------------------------------------------------------------


def test_litellm_5231_parallel_tool_use_after_text_get_indexes_0_and_1() -> None:
    events = anthropic_sse(
        *block(0, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Checking."}),
        *tool_block(1, "toolu_a", "get_weather", '{"city":', '"Paris"}'),
        *tool_block(2, "toolu_b", "get_time", "{}"),
    )
    completion = openai_accumulate(anthropic_to_openai(events))
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [c["index"] for c in calls] == [0, 1]
    assert [c["id"] for c in calls] == ["toolu_a", "toolu_b"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_litellm_17254_web_search_result_json_never_becomes_arguments() -> None:
    events = anthropic_sse(
        *block(
            0,
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "input_json_delta", "partial_json": '{"query":"x"}'},
        ),
        *block(
            1,
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "input_json_delta", "partial_json": "{}"},
        ),
        *tool_block(2, "toolu_1", "lookup", '{"a":1}'),
    )
    completion = openai_accumulate(anthropic_to_openai(events))
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"a":1}']


def test_litellm_17737_web_search_results_survive_the_next_turn() -> None:
    response = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "Searching."},
            {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {"query": "q"},
            },
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_1",
                "content": [
                    {
                        "type": "web_search_result",
                        "url": "https://a",
                        "title": "A",
                        "encrypted_content": "E",
                    }
                ],
            },
            {"type": "text", "text": "Found it."},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 5},
    }
    openai_message = oc.response_from_canonical(am.response_to_canonical(response))["choices"][0][
        "message"
    ]
    follow_up = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            openai_message,
            {"role": "user", "content": "more"},
        ],
    }
    anthropic = am.request_from_canonical(
        oc.request_to_canonical(follow_up), default_max_tokens=1024
    ).body
    assert anthropic["messages"][1]["content"] == response["content"]


def test_litellm_15601_replayed_tool_turn_starts_with_signed_thinking() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "low",
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Need the tool.",
                "reasoning_details": [
                    {
                        "type": "reasoning.text",
                        "text": "Need the tool.",
                        "signature": SIG,
                        "format": "anthropic-claude-v1",
                        "index": 0,
                    }
                ],
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "w", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=8000)
    assistant = result.body["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": "Need the tool.", "signature": SIG}
    assert assistant[1]["type"] == "tool_use"
    assert result.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_openai_agents_1704_reasoning_items_are_not_dropped_on_replay() -> None:
    redacted = {
        "type": "reasoning.encrypted",
        "data": "opaque",
        "format": "anthropic-claude-v1",
        "index": 0,
    }
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "ok", "reasoning_details": [redacted]},
        ],
    }
    anthropic = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=10).body
    assert anthropic["messages"][1]["content"][0] == {"type": "redacted_thinking", "data": "opaque"}


def test_litellm_29518_openai_compatible_reasoning_becomes_a_thinking_block() -> None:
    vllm = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "qwen",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "4", "reasoning_content": "2+2"},
                "finish_reason": "stop",
            }
        ],
    }
    content = am.response_from_canonical(oc.response_to_canonical(vllm))["content"]
    assert content == [
        {"type": "thinking", "thinking": "2+2", "signature": ""},
        {"type": "text", "text": "4"},
    ]
    chunks = [
        chunk({"role": "assistant"}),
        chunk({"reasoning": "2+2"}),
        chunk({"content": "4"}),
        chunk({}, "stop"),
    ]
    snapshot = anthropic_accumulate(openai_to_anthropic(chunks))
    assert [b["type"] for b in snapshot["content"]] == ["thinking", "text"]
    assert snapshot["content"][0]["thinking"] == "2+2"


def test_litellm_32357_delta_types_match_blocks_and_one_message_start() -> None:
    encoder = am.AnthropicEventEncoder()
    events: list[StreamEvent] = [
        MessageStart(id="m", model="x"),
        MessageStart(id="m", model="x"),
        BlockStart(index=0, block=Thinking(thinking="")),
        BlockDelta(index=0, delta=TextDelta(text="misfiled")),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        BlockDelta(index=1, delta=TextDelta(text="answer")),
        BlockStop(index=1),
        MessageDelta(stop_reason=StopReason.END_TURN),
        MessageStop(),
    ]
    out = [pair for e in events for pair in encoder.feed(e)]
    check_anthropic_event_invariants(out)
    assert anthropic_accumulate(out)["content"][1]["text"] == "answer"


def test_litellm_pr_12463_structured_output_with_tools_keeps_tool_calls_and_stop() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [
            {"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}},
        },
    }
    anthropic = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=10).body
    # Native structured output: no synthetic json tool that the response side would have to undo.
    assert anthropic["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }
    assert [t["name"] for t in anthropic["tools"]] == ["t"]
    answer = {
        "id": "msg",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "text", "text": '{"a":1}'}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    choice = oc.response_from_canonical(am.response_to_canonical(answer))["choices"][0]
    assert choice["message"]["content"] == '{"a":1}' and choice["finish_reason"] == "stop"


def test_litellm_35663_ollama_tool_calls_index_0_dict_args_and_stop() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk(call_delta(0, "call_1", "a", {"x": 1})),
        chunk(call_delta(0, "call_2", "b", {"y": 2})),
        chunk({"content": ""}, "stop"),
    ]
    snapshot = anthropic_accumulate(openai_to_anthropic(chunks))
    assert [(b["id"], b["input"]) for b in snapshot["content"]] == [
        ("call_1", {"x": 1}),
        ("call_2", {"y": 2}),
    ]
    assert snapshot["stop_reason"] == "tool_use"


def test_litellm_pr_23342_usage_convention_is_explicit() -> None:
    anthropic_usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
        "output_tokens": 7,
    }
    response: dict[str, Any] = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage,
    }
    usage = oc.response_from_canonical(am.response_to_canonical(response))["usage"]
    assert usage["prompt_tokens"] == 115 and usage["total_tokens"] == 122
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 5}


def test_litellm_18926_thinking_kept_when_history_has_thinking() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "medium",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "reasoning_details": [
                    {
                        "type": "reasoning.text",
                        "text": "t",
                        "signature": SIG,
                        "format": "anthropic-claude-v1",
                        "index": 0,
                    }
                ],
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "r"},
        ],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=8000)
    assert result.body["thinking"]["type"] == "enabled" and "reasoning_effort" not in result.dropped


def test_litellm_18926_thinking_dropped_when_the_tool_turn_has_none() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "medium",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=8000)
    assert "thinking" not in result.body and "reasoning_effort" in result.dropped


def test_litellm_36559_only_leading_system_messages_are_hoisted() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "A"},
            {"role": "developer", "content": "B"},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "late"},
            {"role": "user", "content": "again"},
        ],
    }
    anthropic = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=10).body
    assert anthropic["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert [m["role"] for m in anthropic["messages"]] == ["user", "system", "user"]
    assert anthropic["messages"][1]["content"] == "late"


def test_litellm_30557_anthropic_tool_type_does_not_leak_into_parameters() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "custom", "name": "t", "description": "d", "input_schema": schema}],
    }
    openai = oc.request_from_canonical(am.request_to_canonical(body)).body
    assert openai["tools"] == [
        {"type": "function", "function": {"name": "t", "description": "d", "parameters": schema}}
    ]


def test_litellm_23047_thinking_between_server_tool_groups_keeps_its_place() -> None:
    content = [
        {"type": "thinking", "thinking": "a", "signature": SIG},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {"query": "1"},
        },
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "thinking", "thinking": "b", "signature": SIG},
        {"type": "text", "text": "done"},
    ]
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}],
    }
    openai = oc.request_from_canonical(am.request_to_canonical(body)).body
    back = am.request_from_canonical(oc.request_to_canonical(openai), default_max_tokens=5).body
    assert back["messages"][1]["content"] == content


def test_litellm_17473_sse_json_split_across_network_reads() -> None:
    stream = next(i for i in load_family("anthropic-messages") if i.is_stream)
    whole = json_events(stream.response_text or "")
    assert json_events(stream.response_text or "", chunk_size=7) == whole


def test_litellm_18137_web_fetch_result_survives_streaming() -> None:
    stream = next(i for i in load_family("anthropic-messages") if "web_fetch_tool_stream" in i.file)
    events = json_events(stream.response_text or "")
    decoder, encoder = am.AnthropicEventDecoder(), oc.OpenAIChunkEncoder(created=1)
    chunks = [c for e in events for ce in decoder.feed(e) for c in encoder.feed(ce)]
    message = openai_accumulate(chunks)["choices"][0]["message"]
    kinds = [d["type"] for d in message["reasoning_details"]]
    assert "orcarouter.server_tool_result" in kinds
    result = next(
        d for d in message["reasoning_details"] if d["type"] == "orcarouter.server_tool_result"
    )
    assert result["kind"] == "web_fetch_tool_result"


# ---- new-api ---------------------------------------------------------------------------------


def test_new_api_1283_and_pr_5229_text_thinking_and_two_tools() -> None:
    events = anthropic_sse(
        *block(
            0,
            {"type": "thinking", "thinking": "", "signature": ""},
            {"type": "thinking_delta", "thinking": "hmm"},
            {"type": "signature_delta", "signature": SIG},
        ),
        *block(1, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Two calls."}),
        *tool_block(2, "toolu_a", "a", "{}"),
        *tool_block(3, "toolu_b", "b", '{"k":', "2}"),
    )
    choice = openai_accumulate(anthropic_to_openai(events))["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls" and len(calls) == 2
    assert [c["index"] for c in calls] == [0, 1] and json.loads(
        calls[1]["function"]["arguments"]
    ) == {"k": 2}
    assert choice["message"]["content"] == "Two calls."


def test_new_api_5483_interleaved_openai_tool_deltas_give_contiguous_blocks() -> None:
    chunks = [
        chunk({"role": "assistant"}),
        chunk(call_delta(0, "call_a", "a", "")),
        chunk(call_delta(1, "call_b", "b", "")),
        chunk(call_delta(0, args='{"x":')),
        chunk(call_delta(1, args='{"y":2}')),
        chunk(call_delta(0, args="1}")),
        chunk({}, "tool_calls"),
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        },
    ]
    out = openai_to_anthropic(chunks)
    snapshot = anthropic_accumulate(out)
    assert [b["input"] for b in snapshot["content"]] == [{"x": 1}, {"y": 2}]
    assert snapshot["usage"]["output_tokens"] == 4 and snapshot["usage"]["input_tokens"] == 3


def test_new_api_5530_thinking_goes_to_reasoning_content_never_content() -> None:
    events = anthropic_sse(
        *block(
            0,
            {"type": "thinking", "thinking": "", "signature": ""},
            {"type": "thinking_delta", "thinking": "secret"},
        ),
        *block(1, {"type": "text", "text": ""}, {"type": "text_delta", "text": "public"}),
    )
    message = openai_accumulate(anthropic_to_openai(events))["choices"][0]["message"]
    assert message["content"] == "public" and message["reasoning_content"] == "secret"


def test_new_api_4806_reasoning_content_on_every_replayed_assistant_turn() -> None:
    turn: dict[str, Any] = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "t", "signature": SIG},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        ],
    }
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}],
    }
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "q"},
            turn,
            result,
            turn | {"content": [turn["content"][0], {**turn["content"][1], "id": "toolu_2"}]},
        ],
    }
    openai = oc.request_from_canonical(
        am.request_to_canonical(body), reasoning_fields=("reasoning_content",)
    ).body
    assistants = [m for m in openai["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in assistants] == ["t", "t"]
    assert all("reasoning_details" not in m for m in assistants)


def test_new_api_3124_top_p_clamped_and_temperature_dropped_with_thinking() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "high",
        "top_p": 0.5,
        "temperature": 0.3,
        "messages": [{"role": "user", "content": "x"}],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=10000)
    assert result.body["top_p"] == 0.95 and "temperature" not in result.body
    assert "temperature" in result.dropped and "top_p" in result.adjusted


def test_new_api_review_multiple_text_blocks_concatenate() -> None:
    response = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    assert (
        oc.response_from_canonical(am.response_to_canonical(response))["choices"][0]["message"][
            "content"
        ]
        == "one two"
    )


def test_new_api_review_tool_result_blocks_system_blocks_and_parallel_flag() -> None:
    body = {
        "model": "c",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "r1"}, {"type": "text", "text": "r2"}],
                    }
                ],
            },
        ],
    }
    openai = oc.request_from_canonical(am.request_to_canonical(body)).body
    assert openai["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
    }
    assert openai["messages"][-1]["content"] == [
        {"type": "text", "text": "r1"},
        {"type": "text", "text": "r2"},
    ]
    assert openai["parallel_tool_calls"] is False


# ---- Portkey ---------------------------------------------------------------------------------


def test_portkey_980_two_tool_results_become_one_user_message_results_first() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": "2"},
            {"role": "user", "content": "and?"},
        ],
    }
    messages = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=5).body[
        "messages"
    ]
    assert len(messages) == 3
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "tool_result", "text"]


def test_portkey_1275_streamed_tool_call_ids_and_names_appear_once() -> None:
    events = anthropic_sse(*tool_block(0, "toolu_a", "f", '{"a"', ":1}"))
    chunks = anthropic_to_openai(events)
    starts = [
        c
        for ch in chunks
        for choice in ch["choices"]
        for c in choice["delta"].get("tool_calls", [])
        if "id" in c
    ]
    assert (
        len(starts) == 1
        and openai_accumulate(chunks)["choices"][0]["message"]["tool_calls"][0]["id"] == "toolu_a"
    )


def test_portkey_pr_1104_empty_arguments_become_empty_object() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "r"},
        ],
    }
    messages = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=5).body[
        "messages"
    ]
    assert messages[1]["content"][0]["input"] == {}


def test_portkey_pr_1754_prompt_includes_cache_and_totals_add_up() -> None:
    chunks = anthropic_to_openai(
        [
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "type": "message",
                    "role": "assistant",
                    "model": "c",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 3,
                        "cache_read_input_tokens": 50,
                        "cache_creation_input_tokens": 7,
                        "output_tokens": 1,
                    },
                },
            },
            *block(0, {"type": "text", "text": ""}, {"type": "text_delta", "text": "hi"}),
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
            {"type": "message_stop"},
        ]
    )
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == 60 and usage["completion_tokens"] == 9
    assert usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"]


def test_portkey_pr_497_usage_chunk_comes_last_with_empty_choices() -> None:
    chunks = anthropic_to_openai(
        anthropic_sse(*block(0, {"type": "text", "text": ""}, {"type": "text_delta", "text": "x"}))
    )
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 40
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


# ---- cross-gateway ---------------------------------------------------------------------------


def test_genkit_5412_anthropic_cache_tokens_count_as_input_for_openai() -> None:
    body = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "total_tokens": 101,
        "prompt_tokens_details": {"cached_tokens": 80},
    }
    response = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": body,
    }
    usage = am.response_from_canonical(oc.response_to_canonical(response))["usage"]
    assert usage["input_tokens"] == 20 and usage["cache_read_input_tokens"] == 80


def test_anthropic_sdk_461_no_empty_text_blocks_are_sent() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi"}],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "r"},
        ],
    }
    messages = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=5).body[
        "messages"
    ]
    texts = [
        b
        for m in messages
        if isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "text"
    ]
    assert all(b["text"] for b in texts)


def test_rust_genai_pr_258_cache_counters_only_in_message_delta() -> None:
    decoder = am.AnthropicEventDecoder()
    events = [
        {
            "type": "message_start",
            "message": {"id": "m", "model": "c", "usage": {"input_tokens": 5, "output_tokens": 0}},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3, "cache_read_input_tokens": 40},
        },
    ]
    delta = [e for d in events for e in decoder.feed(d)][-1]
    assert isinstance(delta, MessageDelta) and delta.usage is not None
    assert (delta.usage.input_tokens, delta.usage.cache_read_tokens, delta.usage.output_tokens) == (
        5,
        40,
        3,
    )


def test_kimi_style_tool_ids_are_sanitised_consistently_for_anthropic() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "functions.Bash:0",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "functions.Bash:0", "content": "ok"},
        ],
    }
    messages = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=5).body[
        "messages"
    ]
    assert (
        messages[1]["content"][0]["id"]
        == messages[2]["content"][0]["tool_use_id"]
        == "functions_Bash_0"
    )


# ---- parameters without an equivalent (§4.9, §6.8) ------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"), [("n", 2), ("logprobs", True), ("modalities", ["text", "audio"])]
)
def test_shape_changing_params_are_refused_unless_drop_params(param: str, value: Any) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], param: value}
    canonical = oc.request_to_canonical(body)
    with pytest.raises(TranslationError) as error:
        am.request_from_canonical(canonical, default_max_tokens=5)
    assert error.value.param == param
    result = am.request_from_canonical(canonical, default_max_tokens=5, drop_params=True)
    assert param in result.dropped and param not in result.body


def test_sampling_only_params_are_dropped_and_reported() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "seed": 1,
        "presence_penalty": 1.0,
        "logit_bias": {"1": 2},
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=5)
    assert set(result.dropped) >= {"seed", "presence_penalty", "logit_bias"}


def test_missing_max_tokens_uses_the_callers_default() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert (
        am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=321).body[
            "max_tokens"
        ]
        == 321
    )


def test_thinking_with_forced_tool_choice_keeps_the_tool_and_drops_thinking() -> None:
    body = {
        "model": "m",
        "reasoning_effort": "high",
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "messages": [{"role": "user", "content": "x"}],
    }
    result = am.request_from_canonical(oc.request_to_canonical(body), default_max_tokens=10000)
    assert (
        result.body["tool_choice"] == {"type": "tool", "name": "f"}
        and "thinking" not in result.body
    )
    assert "reasoning_effort" in result.dropped


def test_gemini_stop_after_function_call_is_tool_use() -> None:
    assert stop_from_gemini("STOP", saw_function_call=True) is StopReason.TOOL_USE
    assert stop_from_gemini("STOP", saw_function_call=False) is StopReason.END_TURN
    assert stop_from_gemini("SAFETY", saw_function_call=True) is StopReason.CONTENT_FILTER


def test_server_tool_result_in_canonical_keeps_vendor_content() -> None:
    result = am.response_to_canonical(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "content": [
                {
                    "type": "web_search_tool_result",
                    "tool_use_id": "s",
                    "content": {
                        "type": "web_search_tool_result_error",
                        "error_code": "max_uses_exceeded",
                    },
                }
            ],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    block_ = result.choices[0].content[0]
    assert (
        isinstance(block_, ServerToolResult) and block_.content["error_code"] == "max_uses_exceeded"
    )


def test_tool_use_arguments_text_is_kept_exactly() -> None:
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{ "a" : 1 }'}}
    body = {"model": "m", "messages": [{"role": "assistant", "tool_calls": [call]}]}
    canonical = oc.request_to_canonical(body)
    tool = canonical.messages[0].content[0]
    assert isinstance(tool, ToolUse) and tool.input == {"a": 1} and tool.arguments == '{ "a" : 1 }'
    assert oc.request_from_canonical(canonical).body == body


def test_openai_stream_error_becomes_an_anthropic_error_event() -> None:
    decoder, encoder = oc.OpenAIChunkDecoder(), am.AnthropicEventEncoder()
    chunks = [
        chunk({"role": "assistant"}),
        {"error": {"message": "boom", "type": "overloaded_error"}},
    ]
    out = [pair for c in chunks for e in decoder.feed(c) for pair in encoder.feed(e)]
    assert out[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "boom"}},
    )


def test_input_json_delta_reaches_only_tool_blocks_in_canonical_stream() -> None:
    encoder = oc.OpenAIChunkEncoder(created=1)
    events: list[StreamEvent] = [
        MessageStart(id="m", model="x"),
        BlockStart(index=0, block=Text(text="")),
        BlockDelta(index=0, delta=InputJsonDelta(partial_json="{}")),
        BlockStop(index=0),
        MessageDelta(stop_reason=StopReason.END_TURN),
        MessageStop(),
    ]
    chunks = [c for e in events for c in encoder.feed(e)]
    assert all("tool_calls" not in ch["choices"][0]["delta"] for ch in chunks if ch["choices"])
