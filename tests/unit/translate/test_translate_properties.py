"""Property tests: same-wire round trips are the identity, and streaming equals non-streaming
for any chunking of a response."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from itertools import pairwise
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orcarouter.canonical import Usage
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.common import deep_merge, residual
from orcarouter.translate.usage import (
    usage_from_anthropic,
    usage_from_gemini,
    usage_from_openai,
    usage_to_anthropic,
    usage_to_gemini,
    usage_to_openai,
)
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    check_openai_chunk_invariants,
    openai_accumulate,
    response_essence,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(min_size=1, max_size=30)
ident = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(ident, json_values, max_size=3)


# ---- OpenAI messages -------------------------------------------------------------------------


@st.composite
def openai_content(draw: Any) -> Any:
    if draw(st.booleans()):
        return draw(text)
    part = st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, text),
        st.builds(
            lambda d: {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{d}"}},
            st.from_regex(r"[A-Za-z0-9+/]{4,12}", fullmatch=True),
        ),
        st.builds(
            lambda u: {"type": "image_url", "image_url": {"url": u, "detail": "low"}},
            st.just("https://x.test/a.png"),
        ),
    )
    return draw(st.lists(part, min_size=1, max_size=3))


@st.composite
def openai_assistant(draw: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    calls = draw(st.lists(st.tuples(ident, ident, arguments), max_size=3, unique_by=lambda c: c[0]))
    message["content"] = draw(text) if not calls or draw(st.booleans()) else None
    if draw(st.booleans()):
        message["reasoning_content"] = draw(text)
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for i, n, a in calls
        ]
    return message


@st.composite
def openai_conversation(draw: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append(
            {"role": draw(st.sampled_from(["system", "developer"])), "content": draw(text)}
        )
    for _ in range(draw(st.integers(1, 4))):
        messages.append({"role": "user", "content": draw(openai_content())})
        assistant = draw(openai_assistant())
        messages.append(assistant)
        for call in assistant.get("tool_calls", []):
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": draw(text)})
    body: dict[str, Any] = {"model": "gpt-x", "messages": messages}
    optional = {
        "temperature": st.floats(0, 2, allow_nan=False),
        "max_completion_tokens": st.integers(1, 10_000),
        "stop": st.one_of(text, st.lists(text, min_size=1, max_size=4)),
        "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
        "parallel_tool_calls": st.booleans(),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "user": ident,
        "x_vendor_field": json_values,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


@SETTINGS
@given(openai_conversation())
def test_openai_request_round_trip_is_identity(body: dict[str, Any]) -> None:
    assert oc.request_from_canonical(oc.request_to_canonical(body)).body == body


# ---- Anthropic messages ----------------------------------------------------------------------


@st.composite
def anthropic_conversation(draw: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 4))):
        user: list[dict[str, Any]] = []
        previous = messages[-1]["content"] if messages else []
        for block in previous if isinstance(previous, list) else []:
            if block["type"] == "tool_use":
                result: dict[str, Any] = {
                    "type": "tool_result",
                    "tool_use_id": block["id"],
                    "content": draw(text),
                }
                if draw(st.booleans()):
                    result["is_error"] = True
                user.append(result)
        user.append({"type": "text", "text": draw(text)})
        messages.append(
            {
                "role": "user",
                "content": user if user[:-1] or draw(st.booleans()) else user[0]["text"],
            }
        )
        assistant: list[dict[str, Any]] = []
        if draw(st.booleans()):
            assistant.append({"type": "thinking", "thinking": draw(text), "signature": draw(ident)})
        assistant.append({"type": "text", "text": draw(text)})
        for index in range(draw(st.integers(0, 2))):
            assistant.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{turn}_{index}",
                    "name": draw(ident),
                    "input": draw(arguments),
                }
            )
        messages.append({"role": "assistant", "content": assistant})
    body: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": draw(st.integers(1, 64_000)),
        "messages": messages,
    }
    if draw(st.booleans()):
        body["system"] = draw(
            st.one_of(
                text,
                st.lists(
                    st.builds(lambda t: {"type": "text", "text": t}, text), min_size=1, max_size=2
                ),
            )
        )
    if draw(st.booleans()):
        body["thinking"] = {"type": "enabled", "budget_tokens": draw(st.integers(1024, 9000))}
    if draw(st.booleans()):
        body["tool_choice"] = {
            "type": draw(st.sampled_from(["auto", "any"])),
            "disable_parallel_tool_use": draw(st.booleans()),
        }
    return body


@SETTINGS
@given(anthropic_conversation())
def test_anthropic_request_round_trip_is_identity(body: dict[str, Any]) -> None:
    rendered = am.request_from_canonical(am.request_to_canonical(body), default_max_tokens=1).body
    assert rendered == body


# ---- streaming equals non-streaming for any chunking -----------------------------------------


def _split(value: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(value) + 1) for c in cuts} | {0, len(value)})
    return [value[a:b] for a, b in pairwise(points) if value[a:b]]


@st.composite
def anthropic_response(draw: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if draw(st.booleans()):
        content.append({"type": "thinking", "thinking": draw(text), "signature": draw(ident)})
    if draw(st.booleans()):
        content.append({"type": "text", "text": draw(text)})
    tools = draw(st.integers(0, 3))
    for index in range(tools):
        content.append(
            {
                "type": "tool_use",
                "id": f"toolu_{index}",
                "name": draw(ident),
                "input": draw(arguments),
            }
        )
    if not content:
        content.append({"type": "text", "text": draw(text)})
    usage = {
        "input_tokens": draw(st.integers(0, 999)),
        "output_tokens": draw(st.integers(0, 999)),
        "cache_read_input_tokens": draw(st.integers(0, 99)),
        "cache_creation_input_tokens": 0,
    }
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": "tool_use" if tools else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_events(body: dict[str, Any], cuts: list[int]) -> list[dict[str, Any]]:
    """A valid Anthropic stream for ``body``, with text and JSON split at ``cuts``."""
    usage = body["usage"]
    start = {**body, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(body["content"]):
        kind = block["type"]
        shell = {
            "text": {"type": "text", "text": ""},
            "thinking": {"type": "thinking", "thinking": "", "signature": ""},
        }.get(kind, {**block, "input": {}})
        events.append({"type": "content_block_start", "index": index, "content_block": shell})
        if kind == "text":
            deltas = [{"type": "text_delta", "text": p} for p in _split(block["text"], cuts)]
        elif kind == "thinking":
            deltas = [
                {"type": "thinking_delta", "thinking": p} for p in _split(block["thinking"], cuts)
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _split(json.dumps(block["input"]), cuts)
            ]
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    return [*events, {"type": "message_stop"}]


@SETTINGS
@given(anthropic_response(), st.lists(st.integers(0, 200), max_size=6))
def test_anthropic_stream_equals_non_stream_in_both_wires(
    body: dict[str, Any], cuts: list[int]
) -> None:
    events = anthropic_events(body, cuts)
    decoder = am.AnthropicEventDecoder()
    canonical_events = [e for raw in events for e in decoder.feed(raw)]

    encoder = oc.OpenAIChunkEncoder(created=1)
    chunks = [c for e in canonical_events for c in encoder.feed(e)]
    check_openai_chunk_invariants(chunks)
    streamed = oc.response_to_canonical({**openai_accumulate(chunks), "object": "chat.completion"})
    expected = oc.response_to_canonical(
        oc.response_from_canonical(am.response_to_canonical(body), created=1)
    )
    assert response_essence(streamed) == response_essence(expected)

    again = am.AnthropicEventEncoder()
    replayed = [pair for e in canonical_events for pair in again.feed(e)]
    check_anthropic_event_invariants(replayed)
    assert anthropic_accumulate(replayed)["content"] == body["content"]


@st.composite
def openai_response(draw: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | text)}
    if draw(st.booleans()):
        message["reasoning_content"] = draw(text)
    calls = draw(st.lists(st.tuples(ident, arguments), max_size=3))
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for i, (n, a) in enumerate(calls)
        ]
    if message["content"] is None and not calls:
        message["content"] = draw(text)
    usage = {
        "prompt_tokens": draw(st.integers(10, 999)),
        "completion_tokens": draw(st.integers(0, 999)),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": usage,
    }


def openai_chunks(body: dict[str, Any], cuts: list[int]) -> list[dict[str, Any]]:
    """A valid OpenAI stream for ``body``, with text and arguments split at ``cuts``."""
    message, choice = body["choices"][0]["message"], body["choices"][0]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    out += [
        chunk({"reasoning_content": p})
        for p in _split(message.get("reasoning_content") or "", cuts)
    ]
    out += [chunk({"content": p}) for p in _split(message.get("content") or "", cuts)]
    for index, call in enumerate(message.get("tool_calls", [])):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        out.append(chunk({"tool_calls": [head]}))
        for part in _split(call["function"]["arguments"], cuts):
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
    out.append(chunk({}, choice["finish_reason"]))
    return [*out, {**chunk({}), "choices": [], "usage": body["usage"]}]


@SETTINGS
@given(openai_response(), st.lists(st.integers(0, 200), max_size=6))
def test_openai_stream_equals_non_stream_in_anthropic(
    body: dict[str, Any], cuts: list[int]
) -> None:
    decoder = oc.OpenAIChunkDecoder()
    canonical_events = [
        e for c in openai_chunks(body, cuts) for e in decoder.feed(c)
    ] + decoder.finish()
    encoder = am.AnthropicEventEncoder()
    events = [pair for e in canonical_events for pair in encoder.feed(e)]
    check_anthropic_event_invariants(events)
    streamed = am.response_to_canonical(anthropic_accumulate(events))
    expected = am.response_to_canonical(am.response_from_canonical(oc.response_to_canonical(body)))
    assert response_essence(streamed) == response_essence(expected)
    assert oc.response_from_canonical(oc.response_to_canonical(body)) == body


# ---- Residuals: what a wire sent beyond what the gateway renders -----------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.integers(-3, 3).map(float)  # floats equal to ints (and bools)
    | st.sampled_from(["", "a"])
)
nested = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
        | st.dictionaries(st.sampled_from("abc"), inner, max_size=2).map(MappingProxyType)
    ),
    max_leaves=10,
)
objects = st.dictionaries(st.sampled_from("abcd"), nested, max_size=4)


def _plain(value: Any) -> Any:
    """``value`` with every mapping a dict, keeping each scalar's type (``1 != True`` here)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return (type(value), value)


@SETTINGS
@given(objects, objects)
@example({"c": [[False, None]]}, {"c": [[0, None]]})  # == says these lists are equal
@example({"c": [MappingProxyType({"a": 1.0})]}, {"c": [MappingProxyType({"a": 1})]})
def test_a_residual_merged_back_gives_the_original_types_included(
    original: dict[str, Any], rendered: dict[str, Any]
) -> None:
    rest = residual(original, rendered)
    merged = deep_merge(_plain_dicts(rendered), rest)
    assert _plain(merged) == _plain(original)


def _plain_dicts(value: Any) -> Any:
    """A deep copy of ``value`` with every mapping a dict (``deep_merge`` works in place)."""
    if isinstance(value, Mapping):
        return {k: _plain_dicts(v) for k, v in value.items()}
    return value


@SETTINGS
@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.none() | st.integers(0, 100),
    st.none() | st.integers(0, 100),
    st.none() | st.integers(0, 100),
    st.none() | st.dictionaries(st.sampled_from(["web_search_requests"]), st.integers(0, 9)),
)
def test_every_usage_reader_keeps_each_counter_beside_the_extras(
    input_tokens: int,
    output_tokens: int,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    server_tools: dict[str, int] | None,
) -> None:
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        server_tool_uses=server_tools,
    )
    for render, read in (
        (usage_to_openai, usage_from_openai),
        (usage_to_anthropic, usage_from_anthropic),
        (usage_to_gemini, usage_from_gemini),
    ):
        plain = read(render(usage))
        wire = {**render(usage), "vendor_counter": 7}  # something only that wire knows
        again = read(wire)
        assert render(again) == wire
        assert again.extra != plain.extra and replace(again, extra=plain.extra) == plain
